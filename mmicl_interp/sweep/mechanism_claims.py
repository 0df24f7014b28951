"""Claim 5's sub-claims, report and ``--from-results`` (``analyses/claim5_mechanism.py``): the
builders behind the script's verdict rules, with their "not tested" guards.

What is measured (:mod:`mmicl_interp.sweep.head_ablation`): for every run of the unimodal claim
sweeps (claims 1, 2 and 3), at its last checkpoint, the final icl accuracy, the best induction
head (highest induction strength ``ih`` on the icl suite, over all layers and heads) and its
strength, and the icl and iwl accuracy drop (clean minus ablated) when that head is mean-ablated
(:func:`~mmicl_interp.analyses.ablation.ablate_heads`), and when every head with ``ih >=
IH_THRESHOLD`` is mean-ablated jointly (:func:`~mmicl_interp.analyses.ablation.heads_above`: the
circuit can be spread over several heads in multi-head and deeper models). Runs of the same
config in two sweeps count once in the statistics (the unique runs, by config hash).

For claim 4's stage-2 runs (frozen and unfrozen decoder) and each one's stage-1 run of its seed:
the best induction head of both (stage 1 on the unimodal icl suite, stage 2 on the multimodal
one), and the stage-2 model's multimodal icl and iwl drop when the *stage-1* run's best head,
and all its heads with ``ih >= IH_THRESHOLD``, are mean-ablated, and, as a control, a
non-induction head of the same layer (:func:`~mmicl_interp.sweep.head_ablation.control_head`;
only where the stage-1 decoder has several heads per layer).

The sub-claims and their intervals (the script sets the learned level and the smallest effect):

- 5a (:func:`correlation_subclaim`): Pearson r of final icl vs best-head ``ih`` over the unique
  runs, BCa bootstrap interval;
- 5b (:func:`best_head_subclaim`) and 5d (:func:`joint_subclaim`): per run that learned ICL, icl
  drop minus iwl drop of the best head (5b) or of the joint ablation in multi-head or deeper
  runs (5d), paired t interval over runs;
- 5c (:func:`multimodal_subclaim`): in the stage-2 runs that learned multimodal ICL from a
  stage-1 run that learned ICL, multimodal icl drop minus iwl drop with the stage-1 head
  ablated; 5e (:func:`control_subclaim`): icl drop of that head minus that of the control head.
  The seed is the unit (a seed's runs share a stage-1 decoder and its head): per seed the mean
  over its runs (:func:`per_seed_mean`), t interval over seeds.

Ranges in the notes are min-max ranges over runs, labelled as such, not intervals.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mmicl_interp.analyses.correlation import Correlation, correlation
from mmicl_interp.analyses.stats import bca_interval
from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep.head_ablation import (
    IH_THRESHOLD,
    N_SEQS,
    ablation_tables,
    carry_steps,
    many_heads,
    mm_evidence,
    mm_learners,
    pearson_r,
    read_tables,
    stage1_heads,
)
from mmicl_interp.sweep.summary import GridsResult, from_results_path, markdown_table

Judge = Callable[[pd.DataFrame, pd.DataFrame, str, "float | None", pd.DataFrame], list[C.SubClaim]]
"""A claim-5 judge: ``(runs, unique runs, command, wall time, stage-2 rows)`` -> sub-claims."""


def evidence(runs: pd.DataFrame, unique: pd.DataFrame, command: str, wall: float | None) -> dict:
    """The evidence fields of a sub-claim judged on the unimodal runs: all runs, the unique
    ones, the command, the compute time and the longest run's last step (None without runs)."""
    common = dict(n_runs=len(runs), n_unique_configs=len(unique), command=command, wall_time_s=wall)
    common["steps"] = int(unique["step"].max()) if len(unique) else None
    return common


def per_seed_mean(rows: pd.DataFrame, minuend: str, subtrahend: str) -> pd.Series:
    """Per seed, the mean over its rows of ``rows[minuend] - rows[subtrahend]`` (a within-run,
    paired difference): one value per seed for a t interval over seeds."""
    return (rows[minuend] - rows[subtrahend]).groupby(rows["seed"]).mean()


def correlation_subclaim(unique: pd.DataFrame, min_effect: float, common: dict) -> C.SubClaim:
    """5a: final icl tracks best induction strength, Pearson r over the unique runs with a BCa
    bootstrap interval (:func:`~mmicl_interp.sweep.head_ablation.pearson_r`)."""
    r = bca_interval(unique["best_ih"], unique["icl"], statistic=pearson_r, paired=True, unit="unique runs")
    return C.SubClaim(
        "5a",
        "final icl tracks best induction strength across runs",
        C.verdict(r.estimate, r.bounds, min_effect=min_effect),
        r.estimate,
        "Pearson r, final icl vs best-head ih, unique runs",
        r.bounds,
        r.kind,
        notes="across runs at their last checkpoint; per-run across-checkpoint correlations with "
        "block-bootstrap intervals are in claim 2's per-run table",
        **common,
    )


def best_head_subclaim(learners: pd.DataFrame, min_effect: float, common: dict) -> C.SubClaim:
    """5b: mean-ablating the best head costs the ``learners`` (runs that learned ICL) icl, not
    iwl: per run icl drop minus iwl drop, paired t over runs."""
    drop = C.judge_difference(learners["iwl_drop"], learners["icl_drop"], min_effect=min_effect, unit="runs")
    multi = learners[learners["n_heads"] > 1]
    multi_text = (
        f"in multi-head learners ({len(multi)}) one head costs {multi['icl_drop'].mean():.3f} icl on average"
        if len(multi)
        else "no multi-head learners"
    )
    return drop.subclaim(
        "5b",
        "mean-ablating the best induction head costs icl, not iwl",
        f"icl drop minus iwl drop, runs that learned ICL ({len(learners)})",
        f"one head at a time; per run icl drop minus iwl drop (a paired difference); {multi_text}; "
        "see 5d for joint ablations",
        **common,
    )


def joint_subclaim(learners: pd.DataFrame, min_effect: float, common: dict) -> C.SubClaim:
    """5d: mean-ablating all heads with ih >= IH_THRESHOLD together, in the ``learners`` with more
    than one head in total (:func:`~mmicl_interp.sweep.head_ablation.many_heads`): per run icl drop
    minus iwl drop, paired t over runs; "not tested" without such a learner."""
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
    judged = C.judge_difference(
        many["iwl_joint_drop"], many["icl_joint_drop"], min_effect=min_effect, unit="runs"
    )
    return judged.subclaim(
        "5d",
        text,
        f"icl drop minus iwl drop, all heads with ih >= {IH_THRESHOLD} ablated together "
        f"({len(many)} multi-head or deeper learners)",
        f"{many['n_joint'].mean():.1f} heads per run on average; icl drop "
        f"{C.range_text(many['icl_joint_drop'])}, best head alone {C.range_text(many['icl_drop'])}",
        **common,
    )


def multimodal_subclaim(
    mm: pd.DataFrame, command: str, wall: float | None, *, learned: float, min_effect: float
) -> C.SubClaim:
    """5c: in the stage-2 runs that learned multimodal ICL from a stage-1 run that learned ICL
    (:func:`~mmicl_interp.sweep.head_ablation.mm_learners` at ``learned``), ablating the stage-1
    run's best induction head costs multimodal icl, not iwl: :func:`per_seed_mean` of icl drop
    minus iwl drop, t over seeds. "Not tested", saying why, without such runs."""
    claim = "uni- and multimodal ICL run on the same induction circuit"
    both = mm_learners(mm, learned)
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
    judged = C.judge_mean(per_seed_mean(both, "icl_drop", "iwl_drop"), min_effect=min_effect)
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


def control_subclaim(
    mm: pd.DataFrame, command: str, wall: float | None, *, learned: float, min_effect: float
) -> C.SubClaim:
    """5e: the stage-1 induction head, not any head of its layer, carries multimodal ICL: in the
    5c learners, :func:`per_seed_mean` of the icl drop of the stage-1 best head minus that of the
    control head, t over seeds. Needs multi-head stage-1 runs: with one head per layer there is no
    control head (and the joint ablation is the single-head one), so it is "not tested" there,
    with the reason."""
    claim = "the stage-1 induction head, not any head of its layer, carries multimodal ICL (control head)"
    both = mm_learners(mm, learned)
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
    judged = C.judge_mean(per_seed_mean(with_control, "icl_drop", "icl_control_drop"), min_effect=min_effect)
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


def report_lines(
    runs: pd.DataFrame, mm: pd.DataFrame, done: GridsResult, analysis_s: float, learned: float, source: str
) -> tuple[list[str], Correlation]:
    """Claim 5's Markdown report of the per-run rows ``runs`` (from the sweeps ``done``) and the
    stage-2 rows ``mm`` (from claim 4's table ``source``): the correlation of final icl with best
    induction strength over the unique runs (Pearson and Spearman, bootstrap interval), then
    :func:`~mmicl_interp.sweep.head_ablation.ablation_tables` (runs that learned ICL: icl >=
    ``learned``; IWL only: iwl >= ``learned`` > icl). Returns the lines and the Pearson r."""
    unique = runs.drop_duplicates("config_hash")
    stats = {
        m: correlation(unique["best_ih"], unique["icl"], method=m, seed=0) for m in ("pearson", "spearman")
    }
    icl_runs = unique[unique["icl"] >= learned]
    iwl_runs = unique[(unique["iwl"] >= learned) & (unique["icl"] < learned)]
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
    lines += ablation_tables(runs, icl_runs, iwl_runs, many_heads(icl_runs), mm, learned, source)
    return lines, stats["pearson"]


def rejudge(args: argparse.Namespace, key: str, title: str, script: str, csvs: tuple[str, str], judge: Judge):
    """``--from-results``: section ``key`` of claims.json re-judged by ``judge`` from the runs' CSV
    (``csvs[0]``, or the one ``--from-results`` names) and the stage-2 CSV ``csvs[1]`` beside it
    (:func:`~mmicl_interp.sweep.head_ablation.read_tables`), alone; the wall time and each
    sub-claim's steps come from the section as the full run wrote it."""
    runs_csv, mm_csv = csvs
    csv = from_results_path(args, runs_csv)
    runs, mm = read_tables(csv, mm_csv)
    path, command = Path(args.out) / "claims.json", C.command_line(script)
    old = C.read_claims(path)["claims"].get(key, {})
    subs = judge(runs, runs.drop_duplicates("config_hash"), command, old.get("wall_time_s"), mm)
    carry_steps(subs, old)  # the steps of the runs behind each, as the full run wrote them
    name = csv.name + (f" and {mm_csv}" if len(mm) else "")
    C.rejudge_section(path, C.Section(key, title, subs, command), name)
    print(f"re-judged section {key} of {path} from {name}")


__all__ = [
    "Judge",
    "best_head_subclaim",
    "control_subclaim",
    "correlation_subclaim",
    "evidence",
    "joint_subclaim",
    "multimodal_subclaim",
    "per_seed_mean",
    "rejudge",
    "report_lines",
]
