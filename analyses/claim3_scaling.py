"""Claim 3 (SCIENCE.md section 6): more heads (and less so more layers) shift learning toward
IWL; bigger models need stronger statistical cues (a larger K) for ICL.

Two K sweeps of the default config (K in {128, 192, 256, 352, 512}, 3000 steps), five seeds
each (task, model and data seeds together): the number of heads in {1, 2, 4, 8} at 2
layers (``grids/claim3_heads.toml``; every head keeps the default width d_head = 57, so more
heads is a wider model) and the number of layers in {2, 3, 4} with one head
(``grids/claim3_layers.toml``); and, as a follow-up, 1 vs 8 heads at K = 2048 for 3000
steps (``grids/claim3_heads_long.toml``: is a plateau at 1000 steps a threshold or a delay?).
Writes the threshold K (smallest K whose mean final icl accuracy reaches 0.5) per model
size with a seed-bootstrap interval on the crossing, the final icl / iwl per (size, K) and the
follow-up's steps to icl 0.5 to ``analyses/results/claim3_scaling.md``, one figure (HTML; PNG
with kaleido), and the verdicts to section "3" of ``analyses/results/claims.json``: the
crossing K of the largest size over the smallest's, with a conservative interval; overlapping
intervals read "inside noise".

    .venv/bin/python analyses/claim3_scaling.py [--grid FILE ...] [--out DIR] [--workers N]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pandas as pd
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from mmicl_interp.analyses.correlation import crossing_step
from mmicl_interp.sweep.claims import (
    SEED_KEYS,
    Section,
    SubClaim,
    command_line,
    n_seeds,
    n_unique_configs,
    ratio_interval,
    verdict,
    write_section,
)
from mmicl_interp.sweep.summary import (
    claim_parser,
    final_values,
    format_threshold,
    format_threshold_interval,
    markdown_table,
    run_grids,
    short,
    spread_trace,
    swept_keys,
    threshold,
    threshold_bootstrap,
    wide,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / f"claim3_{part}.toml" for part in ("heads", "layers", "heads_long")]
K = "task.K"


def follow_up(table: pd.DataFrame, size: str, steps: int) -> list[str]:
    """A fixed-K grid (no K axis): final icl / iwl and the step icl first reaches 0.5, per size."""
    summary = wide(final_values(table, [size], suites=("icl", "iwl")), [size]).set_index(size)
    icl = table[(table["suite"] == "icl") & (table["metric"] == "accuracy")]
    reach = {}
    for value, part in icl.groupby(size):
        hits = [crossing_step(run["step"], run["value"], 0.5) for _, run in part.groupby("run")]
        reach[value] = ", ".join("never" if math.isnan(h) else f"{h:.0f}" for h in hits)
    rows = [[v, summary.loc[v, "icl"], summary.loc[v, "iwl"], reach[v]] for v in summary.index]
    header = [short(size), f"icl after {steps} steps", "iwl", "step icl reaches 0.5 (per seed)"]
    return markdown_table(header, rows)


SIZE_TEXT = {
    "model.n_heads": "more heads shift learning toward IWL (raise the K threshold)",
    "model.n_layers": "more layers shift learning toward IWL (raise the K threshold)",
}


SMALL_SHIFT = 1.5
"""A crossing-K ratio below this is called a small shift in the notes."""


def size_subclaim(
    sid: str, size: str, boot: pd.DataFrame, common: dict, largest: float, icl: pd.DataFrame | None = None
) -> SubClaim:
    """The crossing K of the largest ``size`` over the smallest's, with a conservative interval.

    ``icl`` (mean final icl per size and K, one column per K) adds to the notes the swept K
    around the crossings and the K where the sizes differ most, since the seed interval does
    not cover the spacing of the K grid."""
    boot = boot.set_index(size).sort_index()
    small, big = boot.index[0], boot.index[-1]
    effect, lo, hi = ratio_interval(boot.loc[big], boot.loc[small])
    cells = "; ".join(
        f"{short(size)} {v}: {format_threshold_interval(r, largest)}" for v, r in boot.iterrows()
    )
    if icl is not None and not icl.empty:
        spread = icl.max() - icl.min()
        k = spread.idxmax()
        trend = " -> ".join(f"{icl.loc[v, k]:.3f}" for v in icl.index)
        ks = ", ".join(str(int(x)) for x in icl.columns)
        cells += (
            f"; {'a small shift' if effect < SMALL_SHIFT else 'a shift'} ({effect:.2f}x), log-interpolated "
            f"between the swept K ({ks}): the interval covers seeds, not the grid spacing; at K = {k} icl "
            f"goes {trend} from {short(size)} {icl.index[0]} to {icl.index[-1]}"
        )
    return SubClaim(
        sid,
        SIZE_TEXT.get(size, f"larger {short(size)} raises the K threshold"),
        verdict(effect, [lo, hi], null=1.0, n_seeds=common["n_seeds"]),
        effect,
        f"crossing K, {short(size)} = {big} / {small}",
        [lo, hi],
        "conservative: ratio of the 95% seed-bootstrap bounds",
        notes=f"crossing K [95% seed bootstrap]: {cells}",
        **common,
    )


def main(argv: list[str] | None = None) -> None:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results").parse_args(argv)
    done = run_grids(args.grid, args.runs, args.workers)
    subs: list[SubClaim] = []
    command = command_line("claim3_scaling", argv)
    lines = [
        "# Claim 3: model scaling vs the data-complexity threshold",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point. "
        "Threshold K = smallest K whose mean final icl reaches 0.5 ('> K' when none of the swept K "
        "did); crossing K = where mean icl crosses 0.5 between that K and the one before, "
        "interpolated on log K. Command: `.venv/bin/python analyses/claim3_scaling.py`; "
        f"wall time {done.timing()}.",
    ]
    k_grids = [
        (g, r) for g, r in zip(done.grids, done.results, strict=True) if K in swept_keys(r.table, SEED_KEYS)
    ]
    fig = make_subplots(
        rows=1,
        cols=2 * len(k_grids),
        subplot_titles=[f"{g.name}: {suite}" for g, _ in k_grids for suite in ("icl", "iwl")],
    )
    for grid, result in zip(done.grids, done.results, strict=True):
        size = next(k for k in swept_keys(result.table, SEED_KEYS) if k != K)
        if (grid, result) not in k_grids:
            fixed = ", ".join(f"{short(k)} = {v}" for k, v in grid.fixed.items() if k.startswith("task."))
            steps = grid.points()[0].config.train.steps
            where = f" at {fixed}" if fixed else ""
            lines += ["", f"## {short(size)}, {steps} steps{where} ({grid.name})", ""]
            lines += follow_up(result.table, size, steps)
            continue
        gi = k_grids.index((grid, result))
        summary = final_values(result.table, [size, K])
        found = threshold(summary, K, by=[size])
        crossing = threshold(summary, K, by=[size], interpolate=True)
        largest = summary[K].max()
        boot = threshold_bootstrap(result.table, K, by=[size])
        boot_text = {r[size]: format_threshold_interval(r, largest) for _, r in boot.iterrows()}
        lines += ["", f"## {short(size)} ({grid.name})", ""]
        lines += markdown_table(
            [short(size), "threshold K", "crossing K (log-interpolated)", "crossing K [95% seed bootstrap]"],
            [
                [v, format_threshold(t, largest), format_threshold(crossing[v], largest), boot_text[v]]
                for v, t in found.items()
            ],
        )
        common = dict(
            n_runs=len(result.results),
            n_unique_configs=n_unique_configs([r.run_dir for r in result.results]),
            n_seeds=n_seeds(result.table),
            steps=grid.points()[0].config.train.steps,
            command=command,
        )
        icl_rows = summary[summary["suite"] == "icl"]
        icl_means = icl_rows.pivot(index=size, columns=K, values="mean").sort_index()
        subs.append(size_subclaim(f"3{'abcdefgh'[len(subs)]}", size, boot, common, largest, icl_means))
        lines += [""]
        table = wide(summary, [size, K])
        lines += markdown_table(
            [short(size), "K", "icl", "iwl"],
            [[r[size], r[K], r["icl"], r["iwl"]] for _, r in table.iterrows()],
        )
        values = sorted(summary[size].unique())
        colours = sample_colorscale("Viridis", [i / max(len(values) - 1, 1) for i in range(len(values))])
        for value, colour in zip(values, colours, strict=True):
            for si, suite in enumerate(("icl", "iwl")):
                rows = summary[(summary[size] == value) & (summary["suite"] == suite)]
                fig.add_trace(
                    spread_trace(
                        rows, K, f"{short(size)}={value}", line=dict(color=colour), showlegend=si == 0
                    ),
                    row=1,
                    col=2 * gi + si + 1,
                )
    fig.update_xaxes(type="log", title_text="K")
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot"))
    write_results(
        args.out,
        "claim3_scaling",
        lines,
        fig,
        title="Claim 3: final icl and iwl vs K by heads and by layers (error bars: min/max over seeds)",
        width=1500,
        png=not args.no_png,
    )
    wall = done.compute_s(time.perf_counter() - t0)  # recorded training time + analysis
    for sc in subs:
        sc.wall_time_s = wall
    write_section(
        Path(args.out) / "claims.json",
        Section("3", "Scaling: more heads (less so layers) shift toward IWL", subs, command, wall),
    )


if __name__ == "__main__":
    main()
