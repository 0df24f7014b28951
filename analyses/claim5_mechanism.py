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

Sub-claim 5c (uni- and multimodal ICL share the induction circuit) reads claim 4's runs
(``--multimodal``: ``multimodal_asymmetry_runs.csv``, the runs under ``--runs``; run
``analyses/multimodal_asymmetry.py`` first, else 5c is "not tested"): for every stage-2 run
(frozen and unfrozen decoder) and its seed's stage-1 run, the best induction head of each
(stage 1 on the unimodal icl suite, stage 2 on the multimodal one), and the multimodal icl and
iwl drop when the *stage-1* run's best induction head, and all its heads with ``ih >=
IH_THRESHOLD``, are mean-ablated in the stage-2 model, and, as a control (5e), a non-induction
head of the same layer (:func:`control_head`; only where the stage-1 decoder has several heads
per layer: with one head the joint ablation is the single-head one and no control head exists,
so 5e is "not tested" there, with the reason). Rows: ``claim5_multimodal_runs.csv``.

Intervals: 5a, a BCa bootstrap over the unique runs; 5b and 5d, paired t over runs (icl and iwl
drop of the same run); 5c and 5e, t over seeds of each seed's mean (the runs of one seed share a
stage-1 decoder). Ranges in the notes are labelled as ranges. ``--from-results`` re-judges
section 5 from ``claim5_mechanism_runs.csv`` and ``claim5_multimodal_runs.csv`` alone.

    .venv/bin/python analyses/claim5_mechanism.py [--grid FILE ...] [--out DIR] [--workers N]
        [--multimodal CSV]
    .venv/bin/python analyses/claim5_mechanism.py --from-results [CSV]
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from mmicl_interp.analyses.correlation import correlation
from mmicl_interp.analyses.stats import bca_interval
from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.head_ablation import (  # noqa: F401  (control_head, N_SEQS: the tests use them here)
    IH_THRESHOLD,
    N_SEQS,
    ablation_tables,
    carry_steps,
    control_head,
    many_heads,
    mechanism_figure,
    mm_evidence,
    mm_learners,
    multimodal_rows,
    pearson_r,
    read_tables,
    stage1_heads,
    sweep_rows,
)
from mmicl_interp.sweep.summary import from_results_path, markdown_table

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [
    ROOT / "analyses" / "grids" / f"{name}.toml"
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
LEARNED = 0.5
"""A run 'learned' ICL (IWL) when its final icl (iwl) accuracy is at least this."""
TITLE = "Mechanism across runs"
RUNS_CSV = "claim5_mechanism_runs.csv"
MM_CSV = "claim5_multimodal_runs.csv"


def multimodal_subclaim(mm: pd.DataFrame, command: str, wall: float) -> C.SubClaim:
    """5c: in the stage-2 runs that learned multimodal ICL from a stage-1 run that learned ICL,
    ablating the stage-1 run's best induction head costs multimodal icl, not iwl. The seed is the
    unit (the runs of one seed share a stage-1 decoder and its head): per seed the mean over its
    runs of icl drop minus iwl drop (a within-run, paired difference), then a t interval over seeds."""
    claim = "uni- and multimodal ICL run on the same induction circuit"
    both = mm_learners(mm, LEARNED)
    if both.empty:
        return C.SubClaim(
            "5c",
            claim,
            "not tested",
            command=command,
            notes="no claim-4 stage-2 run with its stage-1 run that both learned ICL (run "
            "analyses/multimodal_asymmetry.py first)"
            if mm.empty
            else f"none of the {len(mm)} stage-2 runs learned multimodal ICL from a stage-1 ICL learner",
        )
    per_seed = (both["icl_drop"] - both["iwl_drop"]).groupby(both["seed"]).mean()
    judged = C.judge_mean(per_seed, min_effect=0.1)
    # the joint ablation is a separate result only where it ablates more than the best head
    repeats = (
        bool((both["joint_heads"] == both["stage1_best_head"]).all())
        if {"joint_heads", "stage1_best_head"} <= set(both.columns)
        else False
    )
    joint_text = (
        f"; its heads with ih >= {IH_THRESHOLD} together {C.range_text(both['icl_joint_drop'])}"
        if not repeats
        else f"; the stage-1 heads with ih >= {IH_THRESHOLD} are that one head in every run, so the joint "
        "ablation repeats it (no separate test)"
    )
    return judged.subclaim(
        "5c",
        claim,
        f"multimodal icl drop minus iwl drop, the stage-1 run's best induction head ablated in the stage-2 "
        f"model ({len(both)} runs that learned multimodal ICL; per seed the mean of its runs)",
        f"same best head in stage 1 and stage 2 in {int(both['same_head'].sum())} of {len(both)}; "
        f"multimodal icl drop with the stage-1 head ablated {C.range_text(both['icl_drop'])}{joint_text}; "
        f"the same head costs the stage-1 run {C.range_text(both['stage1_icl_drop'])} unimodal icl",
        **mm_evidence(mm, command, wall),
    )


def control_subclaim(mm: pd.DataFrame, command: str, wall: float) -> C.SubClaim:
    """5e: the stage-1 induction head, not any head of its layer, carries multimodal ICL: the
    stage-2 model's multimodal icl drop when the stage-1 best induction head is ablated minus the
    drop when a non-induction head of the same layer (the control, :func:`control_head`) is
    ablated, per seed (mean over its runs), t interval over seeds. Needs multi-head stage-1 runs:
    with one head per layer there is no control head, and the joint ablation of the heads with ih
    >= IH_THRESHOLD is the single-head one, so it is "not tested" there, with the reason."""
    claim = "the stage-1 induction head, not any head of its layer, carries multimodal ICL (control head)"
    both = mm_learners(mm, LEARNED)
    if both.empty:
        return C.SubClaim(
            "5e", claim, "not tested", command=command, notes="no stage-2 ICL learners (see 5c)"
        )
    heads = stage1_heads(both)
    with_control = both[
        (heads > 1) & both.get("icl_control_drop", pd.Series(math.nan, index=both.index)).notna()
    ]
    if with_control.empty:
        one = int((heads == 1).sum())
        return C.SubClaim(
            "5e",
            claim,
            "not tested",
            command=command,
            notes=f"the stage-1 decoder has one head per layer in {one} of {len(both)} runs: ablating its "
            "induction head removes the whole attention layer, no other head of that layer exists as a "
            f"control, and its heads with ih >= {IH_THRESHOLD} are that one head (the joint ablation "
            "repeats 5c), so this test cannot fail here; it needs multi-head stage-1 runs "
            "(multimodal_asymmetry.py with a multi-head mm_stage1), where a non-induction head of the "
            "same layer is ablated as the control",
        )
    diff = with_control["icl_drop"] - with_control["icl_control_drop"]
    per_seed = diff.groupby(with_control["seed"]).mean()
    judged = C.judge_mean(per_seed, min_effect=0.1)
    return judged.subclaim(
        "5e",
        claim,
        f"multimodal icl drop, stage-1 induction head minus a non-induction head of the same layer "
        f"({len(with_control)} runs; per seed the mean of its runs)",
        f"induction head {C.range_text(with_control['icl_drop'])}, control head "
        f"{C.range_text(with_control['icl_control_drop'])}; iwl drop of the control "
        f"{C.range_text(with_control['iwl_control_drop'])}",
        **mm_evidence(with_control, command, wall),
    )


def subclaims(
    runs: pd.DataFrame, unique: pd.DataFrame, command: str, wall: float, mm: pd.DataFrame | None = None
) -> list[C.SubClaim]:
    """5a: icl tracks induction strength across runs (Pearson r over the unique runs, BCa
    bootstrap); 5b: ablating the best head costs icl, not iwl (per run icl drop minus iwl drop,
    paired t over runs); 5c: the stage-1 induction head carries multimodal ICL (``mm``:
    :func:`multimodal_rows`); 5d: ablating every induction head together costs icl in multi-head
    and deeper learners; 5e: the stage-1 induction head against a control head of its layer."""
    common = dict(n_runs=len(runs), n_unique_configs=len(unique), command=command, wall_time_s=wall)
    common["steps"] = int(unique["step"].max()) if len(unique) else None
    r = bca_interval(unique["best_ih"], unique["icl"], statistic=pearson_r, paired=True, unit="unique runs")
    learners = unique[unique["icl"] >= LEARNED]
    drop = C.judge_difference(learners["iwl_drop"], learners["icl_drop"], min_effect=0.1, unit="runs")
    multi = learners[learners["n_heads"] > 1]
    multi_text = (
        f"in multi-head learners ({len(multi)}) one head costs {multi['icl_drop'].mean():.3f} icl on average"
        if len(multi)
        else "no multi-head learners"
    )
    mm = pd.DataFrame() if mm is None else mm
    return [
        C.SubClaim(
            "5a",
            "final icl tracks best induction strength across runs",
            C.verdict(r.estimate, r.bounds, min_effect=0.3),
            r.estimate,
            "Pearson r, final icl vs best-head ih, unique runs",
            r.bounds,
            r.kind,
            notes="across runs at their last checkpoint; per-run across-checkpoint correlations with "
            "block-bootstrap intervals are in claim 2's per-run table",
            **common,
        ),
        drop.subclaim(
            "5b",
            "mean-ablating the best induction head costs icl, not iwl",
            f"icl drop minus iwl drop, runs that learned ICL ({len(learners)})",
            f"one head at a time; per run icl drop minus iwl drop (a paired difference); {multi_text}; "
            "see 5d for joint ablations",
            **common,
        ),
        joint_subclaim(learners, common),
        multimodal_subclaim(mm, command, wall),
        control_subclaim(mm, command, wall),
    ]


def joint_subclaim(learners: pd.DataFrame, common: dict) -> C.SubClaim:
    """5d: mean-ablating all heads with ih >= IH_THRESHOLD together, in the learners with more
    than one head in total (several heads or layers): per run icl drop minus iwl drop, paired t
    over runs."""
    many = many_heads(learners)
    text = "jointly ablating every induction head costs icl in multi-head and deeper models"
    if many.empty:
        return C.SubClaim(
            "5d",
            text,
            "not tested",
            command=common["command"],
            notes="no multi-head or deeper run learned ICL",
        )
    judged = C.judge_difference(many["iwl_joint_drop"], many["icl_joint_drop"], min_effect=0.1, unit="runs")
    return judged.subclaim(
        "5d",
        text,
        f"icl drop minus iwl drop, all heads with ih >= {IH_THRESHOLD} ablated together "
        f"({len(many)} multi-head or deeper learners)",
        f"{many['n_joint'].mean():.1f} heads per run on average; icl drop "
        f"{C.range_text(many['icl_joint_drop'])}, best head alone {C.range_text(many['icl_drop'])}",
        **common,
    )


def from_results(args) -> None:
    """``--from-results``: section 5 of claims.json re-judged from ``claim5_mechanism_runs.csv``
    (and ``claim5_multimodal_runs.csv`` beside it, for 5c and 5e) alone."""
    csv = from_results_path(args, RUNS_CSV)
    runs, mm = read_tables(csv, MM_CSV)
    path, command = Path(args.out) / "claims.json", C.command_line("claim5_mechanism")
    old = C.read_claims(path)["claims"].get("5", {})
    subs = subclaims(runs, runs.drop_duplicates("config_hash"), command, old.get("wall_time_s"), mm)
    carry_steps(subs, old)  # the steps of the runs behind each, as the full run wrote them
    name = csv.name + (f" and {MM_CSV}" if len(mm) else "")
    C.rejudge_section(path, C.Section("5", TITLE, subs, command), name)
    print(f"re-judged section 5 of {path} from {name}")


def report(done, args, command: str) -> Outcome:
    t0 = time.perf_counter()
    runs = sweep_rows(done)
    mm = multimodal_rows(Path(args.multimodal), Path(args.runs) if args.runs else ROOT / "checkpoints")
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
    lines += ablation_tables(runs, icl_runs, iwl_runs, many_heads(icl_runs), mm, LEARNED, args.multimodal)
    p = stats["pearson"]
    return Outcome(
        lines,
        mechanism_figure(runs),
        f"Claim 5 across {len(runs)} runs: Pearson r = {p.value:.2f} [{p.lo:.2f}, {p.hi:.2f}]",
        lambda wall: subclaims(runs, unique, command, wall, mm),
        csv={RUNS_CSV: runs, **({MM_CSV: mm} if len(mm) else {})},
        width=1300,
        height=500,
        wall_s=time.perf_counter() - t0,
    )


OPTIONS = [
    (
        "--multimodal",
        dict(
            default=str(ROOT / "analyses" / "results" / "multimodal_asymmetry_runs.csv"),
            help="claim 4's per-run table, for 5c (default: %(default)s); its runs are read from --runs",
        ),
    )
]

SCRIPT = ClaimScript(
    "claim5_mechanism", "5", TITLE, __doc__, GRIDS, report, rejudge=from_results, options=OPTIONS
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
