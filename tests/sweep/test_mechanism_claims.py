"""Claim 5's sub-claims, report and --from-results (mmicl_interp.sweep.mechanism_claims), each
effect and interval checked against a hand or scipy computation on small tables."""

import json
import math
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmicl_interp.sweep.claims import Section, SubClaim, write_section
from mmicl_interp.sweep.mechanism_claims import (
    best_head_subclaim,
    control_subclaim,
    correlation_subclaim,
    evidence,
    joint_subclaim,
    multimodal_subclaim,
    per_seed_mean,
    rejudge,
    report_lines,
)


def _t_interval(values) -> list[float]:
    """The 95% t interval of the mean, from scipy."""
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [x.mean() - half, x.mean() + half]


def _assert_mean_and_t(sub: SubClaim, values) -> None:
    """``sub``'s effect and interval are the mean of ``values`` and its 95% t interval."""
    assert sub.effect == pytest.approx(np.mean(values)) and sub.interval == pytest.approx(_t_interval(values))


def _runs() -> pd.DataFrame:
    """Six unimodal runs: four learned ICL (two with 2 heads), two did not."""
    return pd.DataFrame(
        {
            "run": list("abcdef"),
            "config_hash": list("abcdef"),
            "sweep": ["s1", "s1", "s1", "s2", "s2", "s2"],
            "step": [100, 100, 200, 200, 50, 50],
            "n_heads": [1, 1, 2, 2, 1, 1],
            "n_layers": [2, 2, 2, 2, 2, 2],
            "best_head": ["L1H0"] * 6,
            "best_ih": [0.9, 0.8, 0.7, 0.95, 0.05, 0.1],
            "icl": [0.95, 0.9, 0.8, 0.99, 0.1, 0.2],
            "iwl": [0.5, 0.4, 0.6, 0.3, 0.9, 0.3],
            "icl_drop": [0.8, 0.7, 0.3, 0.5, 0.0, 0.0],
            "iwl_drop": [0.0, 0.1, 0.05, 0.0, 0.0, 0.01],
            "n_joint": [1, 1, 2, 3, 0, 0],
            "icl_joint_drop": [0.8, 0.7, 0.6, 0.9, 0.0, 0.0],
            "iwl_joint_drop": [0.0, 0.1, 0.1, 0.05, 0.0, 0.0],
        }
    )


def _mm(**columns) -> pd.DataFrame:
    """Stage-2 rows: two seeds, two runs each, all learners, multi-head stage 1 with a control."""
    rows = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1],
            "steps": [10, 10, 20, 20],
            "icl": [0.9, 0.8, 0.95, 0.7],
            "stage1_icl": [0.99] * 4,
            "icl_drop": [0.6, 0.4, 0.7, 0.5],
            "iwl_drop": [0.0, 0.1, 0.05, 0.0],
            "same_head": [True, False, True, True],
            "stage1_best_head": ["L1H0"] * 4,
            "joint_heads": ["L1H0", "L1H0,L1H1", "L1H0", "L1H0"],
            "icl_joint_drop": [0.6, 0.5, 0.7, 0.5],
            "stage1_icl_drop": [0.8] * 4,
            "stage1_n_heads": [2] * 4,
            "icl_control_drop": [0.0, 0.1, 0.05, 0.02],
            "iwl_control_drop": [0.0] * 4,
        }
    )
    return rows.assign(**columns)


def test_per_seed_mean_is_the_mean_of_each_seeds_within_run_differences():
    rows = pd.DataFrame({"seed": [3, 3, 5], "a": [1.0, 0.5, 0.2], "b": [0.0, 0.25, 0.4]})
    means = per_seed_mean(rows, "a", "b")
    assert dict(means) == pytest.approx({3: (1.0 + 0.25) / 2, 5: -0.2})


def test_evidence_counts_runs_and_unique_runs_and_takes_the_last_step():
    runs = _runs()
    assert evidence(pd.concat([runs, runs]), runs, "cmd", 4.0) == dict(
        n_runs=12, n_unique_configs=6, command="cmd", wall_time_s=4.0, steps=200
    )
    assert evidence(runs.iloc[:0], runs.iloc[:0], "cmd", None)["steps"] is None


def test_correlation_subclaim_is_pearson_r_over_the_unique_runs():
    unique = _runs()
    sub = correlation_subclaim(unique, 0.3, evidence(unique, unique, "cmd", 1.0))
    assert sub.id == "5a" and sub.effect == pytest.approx(np.corrcoef(unique["best_ih"], unique["icl"])[0, 1])
    assert sub.interval[0] <= sub.effect <= sub.interval[1] and "BCa" in sub.interval_kind
    assert sub.verdict == "supported"
    # the same runs, icl unrelated to ih: the interval holds 0 and the verdict is not supported
    flat = unique.assign(icl=[0.5, 0.1, 0.9, 0.2, 0.8, 0.4])
    assert correlation_subclaim(flat, 0.3, {}).verdict != "supported"


def test_best_head_subclaim_is_the_paired_t_of_icl_minus_iwl_drop_over_learners():
    learners = _runs().iloc[:4]
    sub = best_head_subclaim(learners, 0.1, {"command": "cmd"})
    diff = learners["icl_drop"] - learners["iwl_drop"]
    _assert_mean_and_t(sub, diff)
    assert sub.verdict == "supported" and "runs that learned ICL (4)" in sub.effect_label
    assert "in multi-head learners (2) one head costs 0.400 icl" in sub.notes
    assert "no multi-head learners" in best_head_subclaim(learners.iloc[:2], 0.1, {}).notes
    # a drop difference below min_effect is not supported
    assert best_head_subclaim(learners, 2.0, {}).verdict != "supported"


def test_joint_subclaim_judges_only_the_multi_head_or_deeper_learners():
    learners = _runs().iloc[:4]
    sub = joint_subclaim(learners, 0.1, {"command": "cmd"})
    many = learners.iloc[2:]  # the 2-head runs
    diff = many["icl_joint_drop"] - many["iwl_joint_drop"]
    _assert_mean_and_t(sub, diff)
    assert "(2 multi-head or deeper learners)" in sub.effect_label and "2.5 heads per run" in sub.notes
    single = joint_subclaim(learners.iloc[:2], 0.1, {"command": "cmd"})
    assert single.verdict == "not tested" and single.command == "cmd" and single.effect is None


def test_multimodal_subclaim_takes_the_seed_as_the_unit():
    mm = _mm()
    sub = multimodal_subclaim(mm, "cmd", 2.0, learned=0.5, min_effect=0.1)
    per_seed = [((0.6 - 0.0) + (0.4 - 0.1)) / 2, ((0.7 - 0.05) + (0.5 - 0.0)) / 2]
    _assert_mean_and_t(sub, per_seed)
    assert (sub.n_runs, sub.n_seeds, sub.steps, sub.wall_time_s) == (4, 2, 20, 2.0)
    assert "same best head in stage 1 and stage 2 in 3 of 4" in sub.notes and "together" in sub.notes
    # the joint heads are the best head in every run: the joint ablation is said to repeat it
    assert (
        "repeats it"
        in multimodal_subclaim(_mm(joint_heads="L1H0"), "cmd", 2.0, learned=0.5, min_effect=0.1).notes
    )
    # a higher learned level leaves no learner: not tested, saying why
    none = multimodal_subclaim(mm, "cmd", 2.0, learned=0.99, min_effect=0.1)
    assert none.verdict == "not tested" and "none of the 4 stage-2 runs" in none.notes
    empty = multimodal_subclaim(pd.DataFrame(), "cmd", 2.0, learned=0.5, min_effect=0.1)
    assert empty.verdict == "not tested" and "run analyses/multimodal_asymmetry.py first" in empty.notes


def test_control_subclaim_compares_the_induction_head_with_the_control_per_seed():
    mm = _mm()
    sub = control_subclaim(mm, "cmd", 2.0, learned=0.5, min_effect=0.1)
    per_seed = [((0.6 - 0.0) + (0.4 - 0.1)) / 2, ((0.7 - 0.05) + (0.5 - 0.02)) / 2]
    _assert_mean_and_t(sub, per_seed)
    # one seed's control row missing: that run is left out, the other seed's pair stays
    part = control_subclaim(
        _mm(icl_control_drop=[0.0, math.nan, 0.05, 0.02]), "cmd", 2.0, learned=0.5, min_effect=0.1
    )
    assert part.n_runs == 3 and part.effect == pytest.approx(
        np.mean([0.6, ((0.7 - 0.05) + (0.5 - 0.02)) / 2])
    )
    one = control_subclaim(_mm(stage1_n_heads=1), "cmd", 2.0, learned=0.5, min_effect=0.1)
    assert one.verdict == "not tested" and "one head per layer in 4 of 4 runs" in one.notes
    none = control_subclaim(mm, "cmd", 2.0, learned=0.99, min_effect=0.1)
    assert none.verdict == "not tested" and "see 5c" in none.notes


def test_report_lines_give_the_correlations_over_unique_runs_and_the_ablation_tables():
    runs = _runs()
    repeated = pd.concat([runs, runs.iloc[:1].assign(sweep="s2")], ignore_index=True)  # run a in two sweeps
    done = types.SimpleNamespace(grids=[types.SimpleNamespace(name="s1"), types.SimpleNamespace(name="s2")])
    done.timing = lambda: "TIMING"
    lines, pearson = report_lines(repeated, pd.DataFrame(), done, 3.0, 0.5, "mm.csv")
    assert pearson.value == pytest.approx(np.corrcoef(runs["best_ih"], runs["icl"])[0, 1])
    text = "\n".join(lines)
    assert "7 runs from 2 sweeps (s1, s2)" in text and "1 of the 7 runs repeat" in text
    assert "count 6 unique runs" in text and "sweeps: TIMING; per-run analysis: 3 s" in text
    spearman = stats.spearmanr(runs["best_ih"], runs["icl"]).statistic
    assert f"| pearson | {pearson.value:.3f} |" in text and f"| spearman | {spearman:.3f} |" in text
    assert "| learned ICL (icl >= 0.5) | 4 |" in text  # the unique learners, not the repeated row
    assert "Not run: no claim-4 stage-2 runs found (mm.csv)" in text


def test_rejudge_reads_both_csvs_and_keeps_the_full_runs_wall_time_and_steps(tmp_path, capsys):
    _runs().to_csv(tmp_path / "runs.csv", index=False)
    _mm().to_csv(tmp_path / "mm.csv", index=False)
    old = [SubClaim("5a", "a", "supported", steps=777), SubClaim("5c", "c", "supported", steps=888)]
    write_section(tmp_path / "claims.json", Section("5", "t", old, "full cmd", 60.0))
    seen = {}

    def judge(runs, unique, command, wall, mm):
        seen.update(runs=len(runs), unique=len(unique), wall=wall, mm=len(mm), command=command)
        return [SubClaim("5a", "a", "weak", steps=1), SubClaim("5c", "c", "weak")]

    args = types.SimpleNamespace(from_results="", out=str(tmp_path))
    rejudge(args, "5", "Mechanism", "claim5_mechanism", ("runs.csv", "mm.csv"), judge)
    assert seen == dict(
        runs=6, unique=6, wall=60.0, mm=4, command=".venv/bin/python analyses/claim5_mechanism.py"
    )
    section = json.loads((tmp_path / "claims.json").read_text())["claims"]["5"]
    assert [(s["id"], s["verdict"], s["steps"]) for s in section["subclaims"]] == [
        ("5a", "weak", 777),
        ("5c", "weak", 888),
    ]
    assert "judged from runs.csv and mm.csv (--from-results)" in section["subclaims"][0]["notes"]
    assert "from runs.csv and mm.csv" in capsys.readouterr().out
    (tmp_path / "mm.csv").unlink()  # without the stage-2 table: judged on the runs alone
    rejudge(args, "5", "Mechanism", "claim5_mechanism", ("runs.csv", "mm.csv"), judge)
    assert seen["mm"] == 0 and "from runs.csv\n" in capsys.readouterr().out
