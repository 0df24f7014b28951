"""The fidelity claim's rules (mmicl_interp/sweep/published_claims.py) on hand-made per-run
tables, each checked against a hand computation (no training)."""

import math

import pandas as pd
import pytest

from mmicl_interp.sweep import published_claims as pcl
from mmicl_interp.sweep.claims import SubClaim

COMMON = dict(n_runs=6, n_unique_configs=6, n_seeds=3, steps=2000, command="c", wall_time_s=1.0)
T_975_2 = 4.302653  # t_{0.975} with 2 degrees of freedom


def _rows(sides, icl, iwl=None, K=2048, step=2000):
    rows = pd.DataFrame({"task.K": K, "seed": range(len(sides)), "side": sides, f"icl_{step}": icl})
    if iwl is not None:
        rows[f"iwl_{step}"] = iwl
    return rows


def test_variant_selects_one_mlp_init_and_readout_bias_whatever_the_bias_dtype():
    runs = pd.DataFrame(
        {
            "model.mlp_init": ["torch_default", "torch_default", "normal", "normal"],
            "model.readout_bias": [0, 1, 0, 1],
        }
    )
    assert pcl.variant(runs).index.tolist() == [0]  # published: torch_default, no read-out bias
    assert pcl.variant(runs, "normal", True).index.tolist() == [3]


def test_run_evidence_counts_runs_seeds_and_the_longest_run():
    runs = pd.DataFrame({"seed": [0, 1, 0, 1, 2], "last_step": [2000, 1500, 2000, 2000, 900]})
    ev = pcl.run_evidence(runs, "cmd")
    assert ev == dict(n_runs=5, n_unique_configs=5, n_seeds=3, steps=2000, command="cmd")


@pytest.mark.parametrize(
    "hits,n,verdict",
    [(3, 3, "supported"), (2, 2, "weak"), (2, 3, "weak"), (0, 3, "not supported"), (0, 0, "not tested")],
)
def test_side_verdict_needs_every_seed_of_at_least_three(hits, n, verdict):
    assert pcl.side_verdict(hits, n) == verdict


def test_side_subclaim_reports_the_mean_final_icl_with_the_seeds_range():
    rows = _rows(["IWL", "IWL", "neither"], [0.1, 0.2, 0.6], iwl=[0.8, 0.7, 0.3])
    sub = pcl.side_subclaim("F1", rows, 2048, "IWL", COMMON)
    assert sub.verdict == "weak" and sub.effect == pytest.approx(0.3)  # (0.1 + 0.2 + 0.6) / 3
    assert sub.interval == [0.1, 0.6]
    assert sub.text == "`published` memorises at K = 2048 by step 2000, as the published code does"
    assert sub.notes == "2 of 3 seeds IWL; final iwl 0.600 (0.300-0.800)"
    assert sub.interval_kind == "range over 3 seeds (min-max), not a confidence interval"


def test_side_subclaim_falls_back_to_the_last_icl_column_and_guards_an_empty_arm():
    rows = _rows(["ICL", "ICL", "ICL"], [0.1, 0.1, 0.1], step=500)
    rows["icl_1000"] = [0.9, 0.8, 1.0]  # no icl_2000: the runs stopped earlier; no iwl_2000 either
    sub = pcl.side_subclaim("F2", rows, 4096, "ICL", COMMON)
    assert sub.verdict == "supported" and sub.effect == pytest.approx(0.9) and sub.notes == ""
    assert "learns in context at K = 4096" in sub.text
    empty = pcl.side_subclaim("F2", rows.iloc[:0], 4096, "ICL", COMMON)
    assert empty.verdict == "not tested" and empty.effect is None and empty.interval is None


def test_undone_subclaim_pairs_the_arms_by_seed():
    base = pd.Series([0.1, 0.2, 0.3], index=[0, 1, 2])
    arm = pd.Series([0.9, 0.5, 0.9, 0.4], index=[2, 0, 1, 7])  # seed 7 has no partner
    sub = pcl.undone_subclaim("F3", "claim", base, arm, COMMON, min_effect=0.1)
    d = [0.5 - 0.1, 0.9 - 0.2, 0.9 - 0.3]  # seed by seed
    m = sum(d) / 3
    half = T_975_2 * math.sqrt(sum((x - m) ** 2 for x in d) / 2) / math.sqrt(3)
    assert sub.effect == pytest.approx(m) and sub.interval == pytest.approx([m - half, m + half])
    assert sub.notes == "per-seed differences +0.400, +0.700, +0.600"
    assert sub.effect_label == "final icl at K = 2048, variant minus `published`, paired by seed"
    assert sub.verdict == "supported"  # lower bound m - half > 0 and m > min_effect
    small = pcl.undone_subclaim("F4", "claim", base, base + 0.01, COMMON, min_effect=0.1)
    assert small.verdict != "supported"  # an effect of 0.01 is below min_effect 0.1


def test_final_icl_takes_one_k_indexed_by_seed():
    rows = pd.DataFrame({"task.K": [2048, 4096, 2048], "seed": [1, 0, 0], "icl_2000": [0.5, 0.9, 0.1]})
    assert pcl.final_icl(rows, 2048).to_dict() == {1: 0.5, 0: 0.1}
    assert pcl.final_icl(rows, 8192).empty


@pytest.mark.parametrize(
    "cells,n,verdict",
    [
        ({(2048.0, 4096.0)}, 3, "supported"),
        ({(2048.0, 4096.0)}, 2, "weak"),  # too few seeds
        ({(1024.0, 2048.0)}, 3, "not supported"),  # half-open cells that touch do not overlap
        ({(4096.0, 8192.0), (0.0, 2048.0)}, 3, "not supported"),
        ({(2048.0, 4096.0), (1024.0, 2048.0)}, 3, "weak"),
        ({(1024.0, 4096.0)}, 3, "weak"),  # overlaps without being the published cell
    ],
)
def test_cell_verdict_compares_the_seeds_cells_with_the_reference_cell(cells, n, verdict):
    assert pcl.cell_verdict(cells, (2048, 4096), n) == verdict


def test_boundary_subclaims_read_the_reference_cell_they_are_given_and_skip_p2_without_rope():
    onehot = pd.DataFrame(
        [{"task.K": k, "seed": s, "icl": v} for k, v in ((256, 0.1), (512, 0.9)) for s in range(3)]
    )
    subs = pcl.boundary_subclaims(onehot, pd.DataFrame(), COMMON, ref=(256, 512))
    assert [s.id for s in subs] == ["P1-pub"]
    assert subs[0].verdict == "supported" and subs[0].interval == [256.0, 512.0]
    # 0.5 lies half way from 0.1 to 0.9: log-interpolated, K = 256 * 2 ** 0.5
    assert subs[0].effect == pytest.approx(256 * math.sqrt(2))
    assert pcl.boundary_subclaims(onehot, pd.DataFrame(), COMMON)[0].verdict == "not supported"
    rope = onehot.assign(**{"task.K": onehot["task.K"] * 2})
    p2 = pcl.boundary_subclaims(onehot, rope, COMMON)[1]
    assert p2.id == "P2-pub" and p2.n_runs == 6 + 6 and p2.effect == pytest.approx(2.0)


def test_verdict_lines_and_report_lines_set_each_verdict_under_its_heading():
    sub = SubClaim("F9", "a claim", "weak", 0.5, "lbl", [0.25, 0.75], "range", notes="n.", **COMMON)
    (line,) = pcl.verdict_lines([sub])
    assert line == "- F9 (**weak**): a claim; lbl: 0.500 [0.250, 0.750] (range). n."
    lines = pcl.report_lines("cmd", "1 run", ["TABLE"], ["REF"], [sub], ["EMBED"])
    assert lines[2] == "Command: `cmd` (1 run)."
    assert lines.index("TABLE") < lines.index("REF") < lines.index("### Verdicts") < lines.index(line)
    assert lines[-1] == "EMBED" and lines[-3] == "## The input embedding's init (default config, d_embed 32)"
