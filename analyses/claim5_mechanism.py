"""Claim 5 (SCIENCE.md section 6), across runs: ICL runs on an induction head.

For every run of the unimodal claim sweeps (claims 1, 2 and 3; each trained first if it is
missing), at its last checkpoint: final icl accuracy, the best induction head (highest
induction strength ``ih`` on the icl suite, over all layers and heads) and its strength, and
the effect of mean-ablating that head on icl and iwl accuracy
(:func:`~mmicl_interp.analyses.ablation.ablate_heads`). Writes the correlation of final icl
with best induction strength across runs (Pearson and Spearman, 95% bootstrap interval over
runs), the icl drop vs iwl drop of the ablation, per sweep and for the runs that learned ICL
/ IWL, to ``analyses/results/claim5_mechanism.md``, every run's row to
``claim5_mechanism_runs.csv``, and a figure (HTML; PNG with kaleido).

    .venv/bin/python analyses/claim5_mechanism.py [--grid FILE ...] [--out DIR] [--workers N]
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from mmicl_interp.analyses.ablation import ablate_heads
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.correlation import correlation
from mmicl_interp.runs import Run, load_run
from mmicl_interp.sweep.summary import claim_parser, markdown_table, run_grids, write_results

ROOT = Path(__file__).resolve().parents[1]
GRID_DIR = ROOT / "analyses" / "grids"
GRIDS = [
    GRID_DIR / f"{name}.toml"
    for name in (
        "claim1_K",
        "claim1_B",
        "claim1_eps",
        "claim1_alpha",
        "claim2_positions",
        "claim3_heads",
        "claim3_layers",
        "claim3_heads_long",
    )
]
N_SEQS = 500
"""Sequences per suite for the measures and the ablation."""
LEARNED = 0.5
"""A run 'learned' ICL (IWL) when its final icl (iwl) accuracy is at least this."""


def run_row(run: Run, n_seqs: int = N_SEQS) -> dict:
    """One run at its last checkpoint: best induction head, its strength, and its ablation."""
    model = run.model()
    suites = run.suites(n_seqs)
    ih = attention_measures(model, suites["icl"], run.layout)["ih"]
    layer, head = divmod(int(ih.argmax()), ih.shape[1])
    ablation = ablate_heads(model, {s: suites[s] for s in ("icl", "iwl")}, [(layer, head)], "mean")
    acc = ablation[ablation["metric"] == "accuracy"].set_index("suite")
    return {
        "run": run.name,
        "step": run.steps[-1],
        "best_head": f"L{layer}H{head}",
        "best_ih": float(ih[layer, head]),
        "icl": float(acc.loc["icl", "clean"]),
        "iwl": float(acc.loc["iwl", "clean"]),
        "icl_ablated": float(acc.loc["icl", "ablated"]),
        "iwl_ablated": float(acc.loc["iwl", "ablated"]),
        "icl_drop": float(-acc.loc["icl", "delta"]),
        "iwl_drop": float(-acc.loc["iwl", "delta"]),
    }


def mean_spread(values: pd.Series) -> str:
    """``mean [min, max]`` of a column, or '-' when empty."""
    if values.empty:
        return "-"
    return f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]"


def main(argv: list[str] | None = None) -> None:
    args = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results").parse_args(argv)
    done = run_grids(args.grid, args.runs, args.workers)
    t0 = time.perf_counter()
    rows = []
    todo = [(g.name, pr.run_dir) for g, r in zip(done.grids, done.results, strict=True) for pr in r.results]
    for sweep, run_dir in tqdm(todo, desc="best induction head per run", unit="run"):
        rows.append({"sweep": sweep, **run_row(load_run(run_dir))})
    runs = pd.DataFrame(rows)
    analysis_s = time.perf_counter() - t0
    stats = {m: correlation(runs["best_ih"], runs["icl"], method=m, seed=0) for m in ("pearson", "spearman")}
    icl_runs = runs[runs["icl"] >= LEARNED]
    iwl_runs = runs[(runs["iwl"] >= LEARNED) & (runs["icl"] < LEARNED)]
    lines = [
        "# Claim 5: ICL accuracy vs induction strength across runs, and ablating the induction head",
        "",
        f"{len(runs)} runs from {len(done.grids)} sweeps ({', '.join(g.name for g in done.grids)}), each at "
        f"its last checkpoint, {N_SEQS} sequences per suite. Best induction head = highest ih on the icl "
        "suite over all heads; its ablation replaces its output by its mean over the suite's sequences. "
        f"Command: `.venv/bin/python analyses/claim5_mechanism.py`; sweeps: {done.timing()}; "
        f"per-run analysis: {analysis_s:.0f} s.",
        "",
        "## Final icl accuracy vs best induction strength",
        "",
    ]
    lines += markdown_table(
        ["statistic", "value", "95% CI (bootstrap over runs)", "runs"],
        [[m, f"{c.value:.3f}", f"[{c.lo:.3f}, {c.hi:.3f}]", c.n] for m, c in stats.items()],
    )
    lines += ["", "## Mean-ablating the best induction head: accuracy drop (clean - ablated)", ""]
    groups = [
        (f"learned ICL (icl >= {LEARNED})", icl_runs),
        (f"IWL only (iwl >= {LEARNED}, icl < {LEARNED})", iwl_runs),
    ]
    groups += [(f"sweep {name}", part) for name, part in runs.groupby("sweep", sort=False)]
    lines += markdown_table(
        ["runs", "n", "icl clean", "icl drop", "iwl clean", "iwl drop"],
        [
            [
                label,
                len(part),
                mean_spread(part["icl"]),
                mean_spread(part["icl_drop"]),
                mean_spread(part["iwl"]),
                mean_spread(part["iwl_drop"]),
            ]
            for label, part in groups
        ],
    )
    if len(icl_runs):
        larger = int((icl_runs["icl_drop"] > icl_runs["iwl_drop"]).sum())
        lines += [
            "",
            f"In {larger} of the {len(icl_runs)} runs that learned ICL, ablating the best induction head "
            "costs more icl than iwl accuracy.",
        ]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["final icl vs best induction strength", "ablating the best induction head"],
    )
    panels = ((1, "best_ih", "icl"), (2, "iwl_drop", "icl_drop"))
    for i, (sweep, part) in enumerate(runs.groupby("sweep", sort=False)):
        text = part["run"] + " (" + part["best_head"] + ")"
        colour = qualitative.D3[i % len(qualitative.D3)]
        for col, x, y in panels:
            fig.add_scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                name=sweep,
                legendgroup=sweep,
                marker=dict(color=colour),
                showlegend=col == 1,
                text=text,
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="best-head induction strength (ih)", row=1, col=1)
    fig.update_yaxes(title_text="final icl accuracy", row=1, col=1)
    fig.update_xaxes(title_text="iwl accuracy drop", row=1, col=2)
    fig.update_yaxes(title_text="icl accuracy drop", row=1, col=2)
    p = stats["pearson"]
    write_results(
        args.out,
        "claim5_mechanism",
        lines,
        fig,
        title=f"Claim 5 across {len(runs)} runs: Pearson r = {p.value:.2f} [{p.lo:.2f}, {p.hi:.2f}]",
        width=1300,
        height=500,
        png=not args.no_png,
        csv={"claim5_mechanism_runs.csv": runs},
    )


if __name__ == "__main__":
    main()
