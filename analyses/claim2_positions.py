"""Claim 2 (SCIENCE.md section 6): RoPE raises the data-complexity threshold for ICL and
delays its onset, compared with one-hot absolute positions; checked under the correct RoPE
and under the published (non-rotation) RoPE.

Sweeps position type x K (``analyses/grids/claim2_positions.toml``) with ``mmicl sweep``,
then writes final icl / iwl (mean [min, max] over data seeds), the icl onset step (first
crossing of half the final rise, interpolated; mean over seeds that rise) and the smallest K
with mean icl >= 0.5 per position type to ``analyses/results/claim2_positions.md``.

    .venv/bin/python analyses/claim2_positions.py [--grid FILE] [--out DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from mmicl_interp.analyses.correlation import onset_step
from mmicl_interp.sweep import load_grid, make_executor, run_sweep

ROOT = Path(__file__).resolve().parents[1]
POS, K = "model.positions", "task.K"


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per (position type, K): final icl and iwl (mean, min, max) and the mean icl onset step."""
    acc = table[table["metric"] == "accuracy"]
    rows = []
    for (pos, k), part in acc.groupby([POS, K], sort=True):
        finals = {}
        onsets = []
        for _, run in part.groupby("run"):
            last = run[run["step"] == run["step"].max()].set_index("suite")["value"]
            for suite in ("icl", "iwl"):
                finals.setdefault(suite, []).append(float(last[suite]))
            icl = run[run["suite"] == "icl"].sort_values("step")
            onset = onset_step(icl["step"].to_numpy(), icl["value"].to_numpy())
            if not math.isnan(onset) and icl["value"].iloc[-1] >= 0.5:
                onsets.append(onset)
        row = {POS: pos, K: int(k), "onset": sum(onsets) / len(onsets) if onsets else math.nan}
        for suite, values in finals.items():
            row.update(
                {
                    f"{suite}_mean": sum(values) / len(values),
                    f"{suite}_min": min(values),
                    f"{suite}_max": max(values),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def thresholds(summary: pd.DataFrame, level: float = 0.5) -> dict[str, str]:
    """Smallest K with mean icl >= ``level``, per position type ('none' if never)."""
    out = {}
    for pos, part in summary.groupby(POS, sort=False):
        hit = part[part["icl_mean"] >= level]
        out[pos] = str(int(hit[K].min())) if len(hit) else f"none up to {int(part[K].max())}"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=str(ROOT / "analyses" / "grids" / "claim2_positions.toml"))
    parser.add_argument("--out", default=str(ROOT / "analyses" / "results"))
    parser.add_argument("--runs", default=None, help="sweep folder (default: checkpoints/<grid name>)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    grid = load_grid(args.grid)
    t0 = time.perf_counter()
    result = run_sweep(grid, args.runs, executor=make_executor("local", args.workers), progress=True)
    wall = time.perf_counter() - t0
    summary = summarise(result.table)
    steps = grid.points()[0].config.train.steps
    lines = [
        "# Claim 2: position encoding vs the data-complexity threshold and ICL onset",
        "",
        f"Final accuracy after {steps} steps, mean [min, max] over data seeds; icl onset = first "
        "crossing of half the final rise of icl accuracy (interpolated between eval steps; mean over "
        "seeds whose final icl >= 0.5). Command: `.venv/bin/python analyses/claim2_positions.py`; wall "
        f"time {wall / 60:.1f} min ({result.n_trained} runs trained, "
        f"{len(result.results) - result.n_trained} reused).",
        "",
        "| positions | K | icl | iwl | icl onset step |",
        "|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        onset = "-" if math.isnan(r["onset"]) else f"{r['onset']:.0f}"
        lines.append(
            f"| {r[POS]} | {r[K]} | {r['icl_mean']:.3f} [{r['icl_min']:.3f}, {r['icl_max']:.3f}] | "
            f"{r['iwl_mean']:.3f} [{r['iwl_min']:.3f}, {r['iwl_max']:.3f}] | {onset} |"
        )
    lines += [
        "",
        "Smallest K with mean icl >= 0.5: "
        + "; ".join(f"{pos} {k}" for pos, k in thresholds(summary).items())
        + ".",
        "",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claim2_positions.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
