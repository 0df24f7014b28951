"""Claim 5 (SCIENCE.md section 6), across runs: ICL runs on an induction head.

For every run of the unimodal claim sweeps (claims 1, 2 and 3; each trained first if it is
missing), at its last checkpoint: final icl accuracy, the best induction head (highest
induction strength ``ih`` on the icl suite, over all layers and heads) and its strength, and
the effect of mean-ablating that head on icl and iwl accuracy
(:func:`~mmicl_interp.analyses.ablation.ablate_heads`), and of mean-ablating jointly every
head with ``ih >= IH_THRESHOLD`` (:func:`~mmicl_interp.analyses.ablation.heads_above`; the
circuit can be spread over several heads in multi-head and deeper models). Writes the correlation of final icl
with best induction strength across runs (Pearson and Spearman, 95% bootstrap interval over
runs), the icl drop vs iwl drop of the ablation, per sweep and for the runs that learned ICL
/ IWL, to ``analyses/results/claim5_mechanism.md``, every run's row to
``claim5_mechanism_runs.csv``, a figure (HTML; PNG with kaleido), and the verdicts to section
"5" of ``analyses/results/claims.json``. Runs of the same config in two sweeps count once in
the statistics (:func:`~mmicl_interp.analyses.stats.dedupe_runs`).

    .venv/bin/python analyses/claim5_mechanism.py [--grid FILE ...] [--out DIR] [--workers N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from mmicl_interp.analyses.ablation import ablate_heads, format_heads, heads_above
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.correlation import correlation
from mmicl_interp.analyses.stats import config_hash
from mmicl_interp.runs import Run, load_run
from mmicl_interp.sweep.claims import (
    Section,
    SubClaim,
    bootstrap_difference,
    command_line,
    verdict,
    write_section,
)
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
IH_THRESHOLD = 0.1
"""Heads with induction strength at least this are ablated together (the joint ablation)."""
LEARNED = 0.5
"""A run 'learned' ICL (IWL) when its final icl (iwl) accuracy is at least this."""


def run_row(run: Run, n_seqs: int = N_SEQS) -> dict:
    """One run at its last checkpoint: best induction head, its strength, and its ablation."""
    model = run.model()
    suites = run.suites(n_seqs)
    ih = attention_measures(model, suites["icl"], run.layout)["ih"]
    layer, head = divmod(int(ih.argmax()), ih.shape[1])
    two = {s: suites[s] for s in ("icl", "iwl")}
    ablation = ablate_heads(model, two, [(layer, head)], "mean")
    acc = ablation[ablation["metric"] == "accuracy"].set_index("suite")
    joint_heads = heads_above(ih, IH_THRESHOLD)
    joint = ablate_heads(model, two, joint_heads, "mean")
    joint = joint[joint["metric"] == "accuracy"].set_index("suite")
    return {
        "run": run.name,
        "config_hash": config_hash(run.config),
        "n_heads": run.config.model.n_heads,
        "n_layers": run.config.model.n_layers,
        "step": run.steps[-1],
        "best_head": f"L{layer}H{head}",
        "best_ih": float(ih[layer, head]),
        "icl": float(acc.loc["icl", "clean"]),
        "iwl": float(acc.loc["iwl", "clean"]),
        "icl_ablated": float(acc.loc["icl", "value"]),
        "iwl_ablated": float(acc.loc["iwl", "value"]),
        "icl_drop": float(-acc.loc["icl", "delta"]),
        "iwl_drop": float(-acc.loc["iwl", "delta"]),
        "joint_heads": format_heads(joint_heads),
        "n_joint": len(joint_heads),
        "icl_joint_drop": float(-joint.loc["icl", "delta"]),
        "iwl_joint_drop": float(-joint.loc["iwl", "delta"]),
    }


def mean_spread(values: pd.Series) -> str:
    """``mean [min, max]`` of a column, or '-' when empty."""
    if values.empty:
        return "-"
    return f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]"


def subclaims(runs: pd.DataFrame, unique: pd.DataFrame, command: str, wall: float) -> list[SubClaim]:
    """5a: icl tracks induction strength across runs; 5b: ablating the best head costs icl, not
    iwl; 5c: the part not run here; 5d: ablating every induction head together costs icl in
    multi-head and deeper learners."""
    common = dict(n_runs=len(runs), n_unique_configs=len(unique), command=command, wall_time_s=wall)
    common["steps"] = int(unique["step"].max()) if len(unique) else None
    p = correlation(unique["best_ih"], unique["icl"], method="pearson", seed=0)
    learners = unique[unique["icl"] >= LEARNED]
    diff, lo, hi = bootstrap_difference(learners["iwl_drop"], learners["icl_drop"])
    multi = learners[learners["n_heads"] > 1]
    multi_text = (
        f"in multi-head learners ({len(multi)}) one head costs {multi['icl_drop'].mean():.3f} icl on average"
        if len(multi)
        else "no multi-head learners"
    )
    return [
        SubClaim(
            "5a",
            "final icl tracks best induction strength across runs",
            verdict(p.value, [p.lo, p.hi], min_effect=0.3),
            p.value,
            "Pearson r, final icl vs best-head ih, unique runs",
            [p.lo, p.hi],
            "95% bootstrap over runs",
            notes="across runs at their last checkpoint; per-run across-checkpoint correlations with "
            "block-bootstrap intervals are in claim 2's per-run table",
            **common,
        ),
        SubClaim(
            "5b",
            "mean-ablating the best induction head costs icl, not iwl",
            verdict(diff, [lo, hi], min_effect=0.1),
            diff,
            f"icl drop minus iwl drop, runs that learned ICL ({len(learners)})",
            [lo, hi],
            "95% bootstrap over runs",
            notes=f"one head at a time; {multi_text}; see 5d for joint ablations",
            **common,
        ),
        joint_subclaim(learners, common),
        SubClaim(
            "5c",
            "uni- and multimodal ICL run on the same induction circuit",
            "not tested",
            command=command,
            notes="this script reads the unimodal sweeps only",
        ),
    ]


def many_heads(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose model has more heads than the 2-layer, 1-head default (n_heads > 1 or n_layers > 2)."""
    return runs[runs["n_heads"] * runs["n_layers"] > 2]


def joint_subclaim(learners: pd.DataFrame, common: dict) -> SubClaim:
    """5d: mean-ablating all heads with ih >= IH_THRESHOLD together, in the learners with more
    than one head in total (several heads or layers): icl drop minus iwl drop."""
    many = many_heads(learners)
    if many.empty:
        return SubClaim(
            "5d",
            "jointly ablating every induction head costs icl in multi-head and deeper models",
            "not tested",
            command=common["command"],
            notes="no multi-head or deeper run learned ICL in these sweeps",
        )
    diff, lo, hi = bootstrap_difference(many["iwl_joint_drop"], many["icl_joint_drop"])
    return SubClaim(
        "5d",
        "jointly ablating every induction head costs icl in multi-head and deeper models",
        verdict(diff, [lo, hi], min_effect=0.1),
        diff,
        f"icl drop minus iwl drop, all heads with ih >= {IH_THRESHOLD} ablated together "
        f"({len(many)} multi-head or deeper learners)",
        [lo, hi],
        "95% bootstrap over runs",
        notes=f"{many['n_joint'].mean():.1f} heads per run on average; icl drop "
        f"{mean_spread(many['icl_joint_drop'])}, best head alone {mean_spread(many['icl_drop'])}",
        **common,
    )


def main(argv: list[str] | None = None) -> None:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results").parse_args(argv)
    done = run_grids(args.grid, args.runs, args.workers)
    t0 = time.perf_counter()
    rows = []
    todo = [(g.name, pr.run_dir) for g, r in zip(done.grids, done.results, strict=True) for pr in r.results]
    for sweep, run_dir in tqdm(todo, desc="best induction head per run", unit="run"):
        rows.append({"sweep": sweep, **run_row(load_run(run_dir))})
    runs = pd.DataFrame(rows)
    analysis_s = time.perf_counter() - t0
    unique = runs.drop_duplicates("config_hash")
    stats = {
        m: correlation(unique["best_ih"], unique["icl"], method=m, seed=0) for m in ("pearson", "spearman")
    }
    icl_runs = unique[unique["icl"] >= LEARNED]
    iwl_runs = unique[(unique["iwl"] >= LEARNED) & (unique["icl"] < LEARNED)]
    lines = [
        "# Claim 5: ICL accuracy vs induction strength across runs, and ablating the induction head",
        "",
        f"{len(runs)} runs from {len(done.grids)} sweeps ({', '.join(g.name for g in done.grids)}), each at "
        f"its last checkpoint, {N_SEQS} sequences per suite. Best induction head = highest ih on the icl "
        "suite over all heads; its ablation replaces its output by its mean over the suite's sequences. "
        f"Command: `.venv/bin/python analyses/claim5_mechanism.py`; sweeps: {done.timing()}; "
        f"per-run analysis: {analysis_s:.0f} s. {len(runs) - len(unique)} of the {len(runs)} runs repeat "
        f"the config of an earlier one (same config hash); the statistics count {len(unique)} unique runs.",
        "",
        "## Final icl accuracy vs best induction strength",
        "",
    ]
    lines += markdown_table(
        ["statistic", "value", "95% CI (bootstrap over unique runs)", "runs"],
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
    lines += [
        "",
        f"## Mean-ablating every head with ih >= {IH_THRESHOLD} together: accuracy drop (clean - ablated)",
        "",
    ]
    lines += markdown_table(
        ["runs", "n", "heads per run", "icl drop (joint)", "icl drop (best head)", "iwl drop (joint)"],
        [
            [
                label,
                len(part),
                f"{part['n_joint'].mean():.1f}" if len(part) else "-",
                mean_spread(part["icl_joint_drop"]),
                mean_spread(part["icl_drop"]),
                mean_spread(part["iwl_joint_drop"]),
            ]
            for label, part in [*groups, ("multi-head or deeper, learned ICL", many_heads(icl_runs))]
        ],
    )
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
    command = command_line("claim5_mechanism", argv)
    wall = time.perf_counter() - t0
    write_section(
        Path(args.out) / "claims.json",
        Section("5", "Mechanism across runs", subclaims(runs, unique, command, wall), command, wall),
    )


if __name__ == "__main__":
    main()
