"""The head-clamping experiment's shared pieces (mmicl_interp.sweep.clamping): a run's onsets
and final values from a hand-built score table, and the report's formatting."""

import math

import pandas as pd
import pytest

from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.sweep.claims import Judgement
from mmicl_interp.sweep.clamping import (
    arm_rows,
    fmt_range,
    judge_delays,
    run_row,
    seed_differences,
    verdict_rows,
)

STEPS = [0, 100, 200, 300]


def _scores() -> pd.DataFrame:
    """One run: icl accuracy, ih and prev_token_label per head (layer 0 is the clamped one)."""
    rows = []
    curves = {
        ("accuracy", None, None): [0.2, 0.3, 0.7, 1.0],
        ("ih", 0, 0): [0.0, 0.5, 0.8, 0.9],  # stronger, but in the clamped layer: not the induction head
        ("ih", 1, 0): [0.0, 0.0, 0.2, 0.4],
        ("ih", 1, 1): [0.0, 0.1, 0.1, 0.1],
        ("prev_token_label", 0, 0): [0.3, 0.9, 1.0, 1.0],
        ("prev_token_label", 1, 0): [0.1, 0.1, 0.1, 0.1],
    }
    for (metric, layer, head), values in curves.items():
        for step, value in zip(STEPS, values, strict=True):
            rows.append(
                dict(run="r", step=step, suite="icl", metric=metric, layer=layer, head=head, value=value)
            )
    return tidy_table(rows)


def test_run_row_takes_onsets_after_the_clamped_layer_by_hand():
    row = run_row(_scores(), clamp_layer=0)
    # icl: half its rise is 0.2 + 0.4 = 0.6, crossed between 100 (0.3) and 200 (0.7)
    assert row["icl_onset"] == pytest.approx(100 + 100 * 0.3 / 0.4)
    assert row["icl_resolution"] == 100
    # absolute 0.5: between 100 (0.3) and 200 (0.7)
    assert row["steps_to_icl_half"] == pytest.approx(100 + 100 * 0.2 / 0.4)
    # the induction head: layer 1 head 0 (final 0.4); half its rise, 0.2, reached at 200
    assert row["induction_layer"] == 1 and row["induction_onset"] == pytest.approx(200)
    assert row["final_ih"] == pytest.approx(0.4)
    # the previous-token head (layer 0): half of 0.3 -> 1.0 is 0.65, between 0 and 100
    assert row["prev_token_onset"] == pytest.approx(100 * 0.35 / 0.6)
    assert row["prev_token_label_l0_first"] == 0.3 and row["prev_token_label_l0_final"] == 1.0
    assert row["first_icl"] == 0.2 and row["final_icl"] == 1.0 and row["last_step"] == 300
    # with no layer after the clamped one, no induction head
    late = run_row(_scores(), clamp_layer=1)
    assert math.isnan(late["induction_onset"]) and math.isnan(late["final_ih"])


def test_fmt_range_is_mean_min_max_of_the_values_present():
    assert fmt_range(pd.Series([1.0, math.nan, 2.0, 6.0])) == "3 [1, 6]"
    assert fmt_range(pd.Series([0.25, 0.5]), 3) == "0.375 [0.250, 0.500]"
    assert fmt_range(pd.Series([math.nan])) == "n/a"


def _runs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arm": ["none", "none", "clamp", "clamp"],
            "seed": [0, 1, 0, 1],
            "onset": [300.0, 280.0, 200.0, math.nan],
            "final": [0.5, 0.7, 0.9, 0.8],
        }
    )


def test_arm_rows_give_each_arm_in_order_with_its_ranges():
    assert arm_rows(_runs(), "arm", {"onset": 0, "final": 2}) == [
        ["none", "2", "290 [280, 300]", "0.60 [0.50, 0.70]"],
        ["clamp", "2", "200 [200, 200]", "0.85 [0.80, 0.90]"],
    ]


def test_seed_differences_subtract_the_other_arm_seed_by_seed():
    runs = _runs().assign(steps=[150.0, 90.0, 170.0, 60.0])
    rows = seed_differences(runs, "arm", "none", "clamp", ["onset", "steps"])
    assert rows == [["0", "+100", "-20"], ["1", "n/a", "+30"]]


def test_judge_delays_pair_the_arms_by_seed_against_the_coarsest_spacing():
    runs = pd.DataFrame(
        {
            "arm": ["none"] * 3 + ["clamp"] * 3,
            "seed": [0, 1, 2, 2, 1, 0],  # the clamped rows in another order: paired by seed, not by row
            "onset": [400.0, 380.0, 420.0, 150.0, 110.0, 100.0],
            "res": [25.0, 50.0, math.nan, 25.0, 25.0, 25.0],
            "none_res": [math.nan] * 6,
        }
    )
    verdicts = judge_delays(runs, "arm", "clamp", "none", {"onset": "res"})
    j, spacing = verdicts["onset"]
    d = [400 - 100, 380 - 110, 420 - 150]  # control minus clamped, seed by seed
    m = sum(d) / 3
    half = 4.302653 * math.sqrt(sum((x - m) ** 2 for x in d) / 2) / math.sqrt(3)  # t_{0.975, 2}
    assert spacing == 50.0  # the largest finite spacing
    assert j.effect == pytest.approx(m) and j.interval == pytest.approx([m - half, m + half])
    assert j.verdict == "supported"  # m - half is about 233 steps, well past the 50-step spacing
    # no known spacing: NaN, and the delay rule cannot support
    j, spacing = judge_delays(runs, "arm", "clamp", "none", {"onset": "none_res"})["onset"]
    assert math.isnan(spacing) and j.verdict != "supported"


def test_verdict_rows_give_signed_whole_steps_and_n_a_for_what_is_missing():
    verdicts = {
        "a": (Judgement("supported", 263.4, [231.2, 295.6], "k", "rule a"), 25.0),
        "b": (Judgement("not tested", None, None, "k", "rule b"), math.nan),
        "c": (Judgement("inside noise", -12.6, [-40.0, 14.8], "k"), 100.0),
    }
    rows = verdict_rows(verdicts, {"a": "A", "b": "B", "c": "C"})
    assert rows == [
        ["A", "+263", "[+231, +296]", "25", "supported", "rule a"],
        ["B", "n/a", "n/a", "nan", "not tested", "rule b"],
        ["C", "-13", "[-40, +15]", "100", "inside noise", ""],
    ]
