"""Claim 1 (SCIENCE.md section 6): ICL needs data complexity; small K gives IWL.

Sweeps K (``analyses/grids/claim1_K.toml``: the default config, K from 2^5 to 2^13, two
seeds of the training data stream, ``train.seed``) with
``mmicl sweep``, then writes final icl / iwl accuracy vs K (mean and spread over seeds) and
the smallest K at which icl crosses 0.5 to ``analyses/results/claim1_K.md`` and a plotly
figure to ``analyses/results/claim1_K.html``.

    .venv/bin/python analyses/claim1_data_complexity.py [--grid FILE] [--out DIR] [--workers N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.sweep import load_grid, make_executor, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def summarise(table: pd.DataFrame, key: str = "task.K") -> pd.DataFrame:
    """Final accuracy per (K, suite): mean, min and max over the seeds of each K."""
    acc = table[table["metric"] == "accuracy"]
    last = acc[acc["step"] == acc.groupby("run")["step"].transform("max")]
    last = last[last["suite"].isin(["icl", "iwl", "icl_flip", "test"])]
    grouped = last.groupby([key, "suite"])["value"]
    out = grouped.agg(["mean", "min", "max", "count"]).reset_index()
    return out.sort_values([key, "suite"], ignore_index=True)


def crossing(summary: pd.DataFrame, key: str = "task.K", suite: str = "icl", level: float = 0.5) -> str:
    """The smallest swept value whose mean accuracy on ``suite`` reaches ``level``."""
    rows = summary[(summary["suite"] == suite) & (summary["mean"] >= level)]
    return str(int(rows[key].min())) if len(rows) else "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=str(ROOT / "analyses" / "grids" / "claim1_K.toml"))
    parser.add_argument("--out", default=str(ROOT / "analyses" / "results"))
    parser.add_argument("--runs", default=None, help="sweep folder (default: checkpoints/<grid name>)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    grid = load_grid(args.grid)
    t0 = time.perf_counter()
    result = run_sweep(grid, args.runs, executor=make_executor("local", args.workers), progress=True)
    wall = time.perf_counter() - t0
    summary = summarise(result.table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wide = summary.pivot_table(index="task.K", columns="suite", values=["mean", "min", "max"])
    lines = [
        "# Claim 1: data complexity (K)",
        "",
        f"Final accuracy after {grid.points()[0].config.train.steps} steps, mean [min, max] over "
        f"{int(summary['count'].max())} seeds; chance 1/32 = 0.031. Command: "
        f"`.venv/bin/python analyses/claim1_data_complexity.py`; wall time {wall / 60:.1f} min "
        f"({result.n_trained} runs trained, {len(result.results) - result.n_trained} reused).",
        "",
        "| K | icl | iwl | icl_flip |",
        "|---|---|---|---|",
    ]
    for k in wide.index:
        cells = [
            f"{wide.loc[k, ('mean', s)]:.3f} [{wide.loc[k, ('min', s)]:.3f}, {wide.loc[k, ('max', s)]:.3f}]"
            for s in ("icl", "iwl", "icl_flip")
        ]
        lines.append(f"| {int(k)} | " + " | ".join(cells) + " |")
    lines += ["", f"Smallest K with mean icl >= 0.5: {crossing(summary)}.", ""]
    (out / "claim1_K.md").write_text("\n".join(lines))
    fig = go.Figure()
    for suite, colour in (("icl", "#1f77b4"), ("iwl", "#d62728")):
        part = summary[summary["suite"] == suite]
        fig.add_trace(
            go.Scatter(
                x=part["task.K"],
                y=part["mean"],
                name=suite,
                mode="lines+markers",
                line=dict(color=colour),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=part["max"] - part["mean"],
                    arrayminus=part["mean"] - part["min"],
                ),
            )
        )
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot"))
    fig.update_layout(
        title="Claim 1: icl and iwl vs class diversity K",
        xaxis_title="K",
        xaxis_type="log",
        yaxis_title="final accuracy",
        template="plotly_white",
    )
    fig.write_html(out / "claim1_K.html", include_plotlyjs=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
