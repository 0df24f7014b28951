"""Claim 5's shared pieces (mmicl_interp.sweep.head_ablation): the data selections over the
per-run tables, the vectorised Pearson statistic, the --from-results reading and the figure,
each against a hand computation. The per-run ablations themselves are checked against plain
hooks in the claim-5 miniatures (tests/test_claim_scripts.py)."""

import math

import numpy as np
import pandas as pd
import pytest

from mmicl_interp.config import load_config
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.head_ablation import (
    carry_steps,
    many_heads,
    mechanism_figure,
    mm_evidence,
    mm_learners,
    pearson_r,
    read_tables,
    stage1_heads,
)


def test_pearson_r_matches_numpy_corrcoef_row_by_row_and_is_nan_for_a_constant_sample():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 12)), rng.normal(size=(5, 12))
    y[0] = 2 * x[0] + 0.1 * y[0]  # one strongly correlated row
    r = pearson_r(x, y, axis=-1)
    assert r.shape == (5,)
    for i in range(5):
        assert r[i] == pytest.approx(np.corrcoef(x[i], y[i])[0, 1], abs=1e-12)
    assert r[0] > 0.9
    # along another axis: the columns
    assert pearson_r(x.T, y.T, axis=0) == pytest.approx(r, abs=1e-12)
    # one pair of samples, as bca_interval's point estimate calls it
    assert float(pearson_r(x[1], y[1])) == pytest.approx(np.corrcoef(x[1], y[1])[0, 1], abs=1e-12)
    with np.errstate(invalid="ignore"):
        assert math.isnan(float(pearson_r(np.ones(4), np.arange(4.0))))


def test_many_heads_keeps_the_runs_with_more_heads_than_two_layers_of_one():
    runs = pd.DataFrame({"run": list("abcd"), "n_heads": [1, 2, 1, 4], "n_layers": [2, 2, 3, 1]})
    assert list(many_heads(runs)["run"]) == ["b", "c", "d"]


def test_mm_learners_needs_both_the_stage2_and_its_stage1_run_to_have_learned_icl():
    mm = pd.DataFrame({"icl": [0.9, 0.4, 0.9, 0.5], "stage1_icl": [0.9, 0.9, 0.3, 0.5]})
    assert list(mm_learners(mm, 0.5).index) == [0, 3]  # the threshold is inclusive
    assert mm_learners(pd.DataFrame(), 0.5).empty


def test_mm_evidence_counts_rows_as_runs_and_takes_the_largest_budget():
    mm = pd.DataFrame({"seed": [0, 0, 1], "steps": [40, 60, 50]})
    assert mm_evidence(mm, "cmd", 2.5) == dict(
        n_runs=3, n_unique_configs=3, n_seeds=2, steps=60, command="cmd", wall_time_s=2.5
    )
    assert mm_evidence(mm.drop(columns="steps"), "cmd", None)["steps"] is None


def test_stage1_heads_reads_the_column_or_the_shipped_stage1_config():
    mm = pd.DataFrame({"seed": [0, 1], "stage1_n_heads": [2, 4]})
    assert list(stage1_heads(mm)) == [2, 4]
    old = pd.DataFrame({"seed": [0, 1]}, index=[3, 7])
    heads = stage1_heads(old)
    assert list(heads.index) == [3, 7] and set(heads) == {load_config("mm_stage1").model.n_heads}


def test_read_tables_reads_the_stage2_table_beside_the_runs_and_keeps_head_names(tmp_path):
    (tmp_path / "runs.csv").write_text("run,control_head,icl\nNA,,0.5\nb,L1H1,\n")
    runs, mm = read_tables(tmp_path / "runs.csv", "mm.csv")
    assert list(runs["run"]) == ["NA", "b"]  # only an empty cell is missing
    assert list(runs["control_head"]) == ["", "L1H1"] and math.isnan(runs["icl"][1])
    assert mm.empty
    (tmp_path / "mm.csv").write_text("run,control_head,icl_control_drop\nx,,\n")
    _, mm = read_tables(tmp_path / "runs.csv", "mm.csv")
    assert list(mm["control_head"]) == [""] and math.isnan(mm["icl_control_drop"][0])


def test_carry_steps_takes_the_steps_of_the_same_id_where_the_old_section_has_them():
    subs = [SubClaim("5a", "a", "not tested", steps=10), SubClaim("5b", "b", "not tested", steps=10)]
    subs.append(SubClaim("5c", "c", "not tested"))
    old = {"subclaims": [{"id": "5a", "steps": 3000}, {"id": "5c", "steps": None}, {"id": "5z", "steps": 1}]}
    carry_steps(subs, old)
    assert [s.steps for s in subs] == [3000, 10, None]  # 5c: the old section says None
    carry_steps(subs, {})
    assert [s.steps for s in subs] == [3000, 10, None]


def test_mechanism_figure_has_one_trace_per_sweep_and_panel_with_one_legend_entry():
    runs = pd.DataFrame(
        {
            "sweep": ["s1", "s1", "s2"],
            "run": ["a", "b", "c"],
            "best_head": ["L1H0", "L1H1", "L0H0"],
            "best_ih": [0.1, 0.2, 0.3],
            "icl": [0.4, 0.5, 0.6],
            "iwl_drop": [0.0, 0.1, 0.2],
            "icl_drop": [0.3, 0.2, 0.1],
        }
    )
    fig = mechanism_figure(runs)
    assert [(t.name, t.xaxis, t.showlegend) for t in fig.data] == [
        ("s1", "x", True),
        ("s1", "x2", False),
        ("s2", "x", True),
        ("s2", "x2", False),
    ]
    assert list(fig.data[0].x) == [0.1, 0.2] and list(fig.data[0].y) == [0.4, 0.5]
    assert list(fig.data[1].x) == [0.0, 0.1] and list(fig.data[1].y) == [0.3, 0.2]
    assert list(fig.data[0].text) == ["a (L1H0)", "b (L1H1)"]
    assert fig.data[0].marker.color == fig.data[1].marker.color != fig.data[2].marker.color
