"""Correlations, bootstrap intervals, onsets and phases on hand-made curves of known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmicl_interp.analyses.correlation import (
    NO_ONSET,
    Correlation,
    Onset,
    best_head,
    bootstrap_indices,
    correlation,
    crossing_step,
    format_correlation,
    head_table,
    ih_icl_correlation,
    lead_lag,
    model_curve,
    onset,
    onset_step,
    pearson,
    phases,
    select_run,
    spearman,
)
from mmicl_interp.analyses.stats import correlation_block_length

STEPS = [0, 100, 200, 300, 400, 500, 600, 700, 800]


def ramp(start: float, end: float, lo: int, hi: int, steps=STEPS) -> np.ndarray:
    """A curve flat at ``start`` until step ``lo``, linear to ``end`` at step ``hi``, then flat."""
    s = np.asarray(steps, float)
    return start + (end - start) * np.clip((s - lo) / (hi - lo), 0.0, 1.0)


def make_scores(run: str = "r", steps=STEPS, icl=None, heads=None, extra_suites=True) -> pd.DataFrame:
    """A tidy table: icl accuracy (plus test/iwl) and per-head curves {(layer, head): {metric: values}}."""
    icl = ramp(0.1, 0.9, 300, 500, steps) if icl is None else icl
    heads = heads or {
        (0, 0): {"prev_token_label": ramp(0.1, 0.9, 100, 300, steps), "ih": np.full(len(steps), 0.05)},
        (0, 1): {"prev_token_label": ramp(0.1, 0.3, 100, 300, steps), "ih": ramp(0.0, 0.1, 0, 800, steps)},
        (1, 0): {"prev_token_label": np.full(len(steps), 0.1), "ih": ramp(0.0, 0.6, 200, 400, steps)},
    }
    rows = []
    for i, step in enumerate(steps):
        rows.append(
            dict(run=run, step=step, suite="icl", metric="accuracy", layer=None, head=None, value=icl[i])
        )
        if extra_suites:
            rows.append(
                dict(run=run, step=step, suite="iwl", metric="accuracy", layer=None, head=None, value=0.2)
            )
            rows.append(
                dict(run=run, step=step, suite="icl", metric="loss", layer=None, head=None, value=2 - icl[i])
            )
        for (layer, head), curves in heads.items():
            for metric, values in curves.items():
                rows.append(
                    dict(
                        run=run,
                        step=step,
                        suite="icl",
                        metric=metric,
                        layer=layer,
                        head=head,
                        value=values[i],
                    )
                )
    df = pd.DataFrame(rows)
    return df.astype({"layer": "Int64", "head": "Int64", "value": float})


# --------------------------------------------------------------------------- correlations
def test_pearson_and_spearman_known_values():
    x = np.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    # monotone but not linear: Spearman is exactly 1, Pearson below 1
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert 0.85 < pearson(x, x**3) < 0.95
    # a symmetric parabola is uncorrelated with x
    assert pearson(np.arange(-3.0, 4.0), np.arange(-3.0, 4.0) ** 2) == pytest.approx(0.0, abs=1e-12)
    # ties get average ranks: ranks of y are [1.5, 1.5, 3, 4]
    assert spearman([1, 2, 3, 4], [5, 5, 6, 7]) == pytest.approx(
        np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3, 4])[0, 1]
    )


def test_pearson_matches_numpy_on_noisy_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])


@pytest.mark.parametrize(
    "x, y",
    [([1, 2], [3, 4]), ([1.0], [2.0]), ([], []), ([1, 2, 3, 4], [5, 5, 5, 5]), ([0.1] * 5, [1, 2, 3, 4, 5])],
    ids=["two-points", "one-point", "empty", "constant-y", "constant-x"],
)
def test_degenerate_inputs_give_nan(x, y):
    assert math.isnan(pearson(x, y))
    assert math.isnan(spearman(x, y))
    res = correlation(x, y, n_boot=50)
    assert math.isnan(res.value) and math.isnan(res.lo) and math.isnan(res.hi)
    assert res.n == len(x)


def test_nan_pairs_are_dropped():
    x = [1.0, 2.0, np.nan, 4.0, 5.0]
    y = [2.0, 4.0, 6.0, np.nan, 10.0]
    res = correlation(x, y, n_boot=100)
    assert res.n == 3 and res.value == pytest.approx(1.0)


def test_bootstrap_interval_brackets_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 30)
    y = x + rng.normal(scale=0.3, size=30)
    a = correlation(x, y, n_boot=500, seed=7)
    b = correlation(x, y, n_boot=500, seed=7)
    c = correlation(x, y, n_boot=500, seed=8)
    assert a == b  # same seed, same interval
    assert (a.lo, a.hi) != (c.lo, c.hi)
    assert a.lo < a.value < a.hi
    assert -1 <= a.lo and a.hi <= 1
    # a perfect line has a degenerate interval at 1
    perfect = correlation(x, 3 * x, n_boot=200, method="spearman")
    assert perfect.value == pytest.approx(1.0) and perfect.lo == pytest.approx(1.0)
    # narrower ci, narrower interval
    narrow = correlation(x, y, n_boot=500, seed=7, ci=0.5)
    assert a.lo <= narrow.lo <= narrow.hi <= a.hi


def test_bootstrap_indices_and_argument_errors():
    idx = bootstrap_indices(5, 4, seed=1)
    assert idx.shape == (4, 5) and idx.min() >= 0 and idx.max() < 5
    with pytest.raises(ValueError, match="method"):
        correlation([1, 2, 3], [1, 2, 3], method="kendall")
    with pytest.raises(ValueError, match="n_boot"):
        correlation([1, 2, 3], [1, 2, 3], n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        correlation([1, 2, 3], [1, 2, 3], ci=1.5)
    with pytest.raises(ValueError, match="same length"):
        pearson([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------- onsets
def test_onset_interpolated_and_first_checkpoint():
    steps = [0, 100, 200, 300, 400]
    values = [0.0, 0.0, 0.2, 0.8, 1.0]  # half rise 0.5 crossed between 200 (0.2) and 300 (0.8)
    assert onset_step(steps, values) == pytest.approx(250.0)
    assert onset_step(steps, values, interpolate=False) == 300
    assert onset_step(steps, values, frac=0.2) == pytest.approx(200.0)
    # unsorted input is sorted by step first
    assert onset_step(steps[::-1], values[::-1]) == pytest.approx(250.0)
    # an exact hit on a checkpoint is that checkpoint
    assert onset_step([0, 10, 20, 30], [0, 0.5, 0.7, 1.0]) == pytest.approx(10.0)


def test_onset_of_known_ramp():
    # linear from 0.1 at step 300 to 0.9 at step 500: half of the rise at step 400
    assert onset_step(STEPS, ramp(0.1, 0.9, 300, 500)) == pytest.approx(400.0)
    # first crossing counts even if the curve dips back later
    assert onset_step([0, 1, 2, 3, 4], [0, 0.8, 0.2, 0.4, 1.0]) == pytest.approx(0.625)


@pytest.mark.parametrize(
    "values",
    [[0.5, 0.5, 0.5, 0.5], [1.0, 0.8, 0.2, 0.0], [0.0, 1.0]],
    ids=["constant", "falling", "two-points"],
)
def test_onset_nan_without_rise_or_points(values):
    assert math.isnan(onset_step(list(range(len(values))), values))


def test_onset_min_rise_and_errors():
    assert math.isnan(onset_step([0, 1, 2], [0.0, 0.01, 0.02], min_rise=0.05))
    with pytest.raises(ValueError, match="frac"):
        onset_step([0, 1, 2], [0, 1, 2], frac=0)
    with pytest.raises(ValueError, match="same length"):
        onset_step([0, 1, 2], [0, 1])


# --------------------------------------------------------------------------- tidy tables
def test_table_helpers_and_best_head():
    scores = make_scores()
    table = head_table(scores, "ih")
    assert list(table.columns) == [(0, 0), (0, 1), (1, 0)]
    assert list(table.index) == STEPS
    assert best_head(scores, "ih") == (1, 0)
    assert best_head(scores, "prev_token_label") == (0, 0)
    acc = model_curve(scores, "accuracy", suite="icl")
    assert acc.loc[800] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="'nope'.*metrics: accuracy, ih, loss, prev_token_label"):
        head_table(scores, "nope")


def test_scores_validation():
    with pytest.raises(ValueError, match="empty"):
        ih_icl_correlation(make_scores().iloc[:0])
    with pytest.raises(ValueError, match="lacks columns"):
        phases(make_scores().drop(columns="suite"))
    with pytest.raises(ValueError, match="DataFrame"):
        phases([1, 2, 3])
    both = pd.concat([make_scores("a"), make_scores("b")])
    with pytest.raises(ValueError, match="several"):
        select_run(both)
    with pytest.raises(ValueError, match="not in the table"):
        select_run(both, "c")


def test_ih_icl_correlation_per_head_and_best():
    scores = make_scores()
    out = ih_icl_correlation(scores, n_boot=200)
    assert list(out.columns) == [
        "run", "layer", "head", "best", "pearson", "pearson_lo", "pearson_hi",
        "spearman", "spearman_lo", "spearman_hi", "n", "block",
    ]  # fmt: skip
    assert len(out) == 3 and (out["n"] == len(STEPS)).all()
    best = out[out["best"]]
    assert len(best) == 1 and (int(best["layer"].iloc[0]), int(best["head"].iloc[0])) == (1, 0)
    b = best.iloc[0]
    # ih rises 200->400, accuracy 300->500: strongly, not perfectly, correlated
    assert 0.8 < b["pearson"] < 1.0 and b["pearson_lo"] <= b["pearson"] <= b["pearson_hi"]
    assert b["spearman"] > 0.8
    # L0H0's ih is constant: NaN, not a crash
    flat = out[(out["layer"] == 0) & (out["head"] == 0)].iloc[0]
    assert math.isnan(flat["pearson"]) and math.isnan(flat["spearman_lo"])
    # a head that equals the accuracy curve correlates perfectly
    perfect = make_scores(heads={(0, 0): {"ih": ramp(0.1, 0.9, 300, 500)}})
    row = ih_icl_correlation(perfect, n_boot=100).iloc[0]
    assert row["pearson"] == pytest.approx(1.0) and row["spearman"] == pytest.approx(1.0)


def test_ih_icl_correlation_several_runs_and_missing_steps():
    a = make_scores("a")
    b = make_scores("b")
    b = b[~((b["metric"] == "accuracy") & (b["step"] == 800))]  # accuracy missing at one checkpoint
    out = ih_icl_correlation(pd.concat([a, b]), n_boot=50)
    assert list(out["run"].unique()) == ["a", "b"]
    assert (out.loc[out["run"] == "b", "n"] == len(STEPS) - 1).all()
    with pytest.raises(ValueError, match="'ih'"):
        ih_icl_correlation(make_scores(heads={(0, 0): {"tila": np.ones(len(STEPS))}}))


def test_phases_onsets_and_leads():
    out = phases(make_scores())
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["prev_token_layer"], row["prev_token_head"]) == (0, 0)
    assert (row["induction_layer"], row["induction_head"]) == (1, 0)
    assert row["prev_token_onset"] == pytest.approx(200.0)  # ramp 100 -> 300
    assert row["induction_onset"] == pytest.approx(300.0)  # ramp 200 -> 400
    assert row["icl_onset"] == pytest.approx(400.0)  # ramp 300 -> 500
    assert row["lead_prev_token_over_induction"] == pytest.approx(100.0)
    assert row["lead_induction_over_icl"] == pytest.approx(100.0)
    assert row["lead_prev_token_over_icl"] == pytest.approx(200.0)


def test_phases_degenerate_and_missing_measures():
    # accuracy never rises: icl onset NaN; no prev-token measure: NA head, NaN onset
    scores = make_scores(icl=np.full(len(STEPS), 0.3), heads={(1, 0): {"ih": ramp(0.0, 0.6, 200, 400)}})
    row = phases(scores).iloc[0]
    assert pd.isna(row["prev_token_layer"]) and math.isnan(row["prev_token_onset"])
    assert row["induction_onset"] == pytest.approx(300.0)
    assert math.isnan(row["icl_onset"]) and math.isnan(row["lead_induction_over_icl"])
    # two checkpoints only: everything NaN, no error
    short = make_scores(
        steps=[0, 100],
        icl=np.array([0.1, 0.9]),
        heads={(0, 0): {"ih": np.array([0.0, 1.0]), "prev_token_label": np.array([0.0, 1.0])}},
    )
    row = phases(short).iloc[0]
    assert all(math.isnan(row[c]) for c in ("prev_token_onset", "induction_onset", "icl_onset"))
    # a lag is negative: induction after accuracy
    late = make_scores(
        heads={(1, 0): {"ih": ramp(0.0, 0.6, 500, 700), "prev_token_label": ramp(0, 1, 0, 200)}}
    )
    assert phases(late).iloc[0]["lead_induction_over_icl"] == pytest.approx(-200.0)


def test_crossing_step_uses_an_absolute_level_so_runs_of_different_heights_compare():
    steps = [0, 100, 200, 300]
    low, high = [0.0, 0.3, 0.45, 0.6], [0.0, 0.3, 0.9, 1.0]
    # half of its own rise: the low run looks earlier; the same level 0.5: it is later
    assert onset_step(steps, low) == pytest.approx(100.0) and onset_step(steps, high) == pytest.approx(
        133.33, 1e-3
    )
    assert crossing_step(steps, low, 0.5) == pytest.approx(233.33, 1e-3)
    assert crossing_step(steps, high, 0.5) == pytest.approx(133.33, 1e-3)
    assert crossing_step(steps, high, 0.5, interpolate=False) == 200
    assert crossing_step(steps, low, 0.8) != crossing_step(steps, low, 0.8)  # NaN: never reached
    assert crossing_step(steps, [0.6, 0.7, 0.8, 0.9], 0.5) == 0.0  # already there at the start


# --------------------------------------------------------------------------- block bootstrap
def _ar1(e: np.ndarray, phi: float) -> np.ndarray:
    a = np.empty(len(e))
    a[0] = e[0] / math.sqrt(1 - phi**2)
    for t in range(1, len(e)):
        a[t] = phi * a[t - 1] + e[t]
    return a


def test_block_one_is_the_iid_percentile_bootstrap():
    rng = np.random.default_rng(5)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    idx = np.random.default_rng(11).integers(0, 25, size=(400, 25))  # i.i.d. resamples, by hand
    boot = [np.corrcoef(x[i], y[i])[0, 1] for i in idx]
    res = correlation(x, y, n_boot=400, seed=11, block=1)
    assert (res.lo, res.hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert res.block == 1 and res == correlation(x, y, n_boot=400, seed=11)  # block 1 is the default
    assert res.method == "pearson" and correlation(x, y, method="spearman", n_boot=10).method == "spearman"


def test_auto_block_widens_the_interval_of_autocorrelated_curves():
    rng = np.random.default_rng(8)
    e = rng.normal(size=80)
    x = _ar1(e, 0.9)
    y = _ar1(0.6 * e + 0.8 * rng.normal(size=80), 0.9)
    iid = correlation(x, y, n_boot=1000, seed=0)
    auto = correlation(x, y, n_boot=1000, seed=0, block="auto")
    assert auto.block == correlation_block_length(x, y) > 1
    assert auto.value == iid.value and auto.hi - auto.lo > 1.3 * (iid.hi - iid.lo)
    fixed = correlation(x, y, n_boot=50, block=500)  # a block longer than the curve is cut to it
    assert fixed.block == 80
    with pytest.raises(ValueError, match="block must be"):
        correlation(x, y, block=0)
    with pytest.raises(ValueError, match="block must be"):
        correlation(x, y, block="long")
    with pytest.raises(ValueError, match="block_rule"):
        correlation(x, y, block="auto", block_rule="guess")


def test_block_bootstrap_covers_the_true_correlation_of_ar1_pairs():
    """x, y: AR(1) with the same phi and innovations of correlation 0.5, so corr(x_t, y_t) = 0.5."""
    rho, reps = 0.5, 80
    rng = np.random.default_rng(0)
    coverage = {}
    for phi, n in ((0.6, 100), (0.85, 150)):
        hits = {"auto": 0, 1: 0}
        for rep in range(reps):
            e1 = rng.normal(size=n)
            e2 = rho * e1 + math.sqrt(1 - rho**2) * rng.normal(size=n)
            x, y = _ar1(e1, phi), _ar1(e2, phi)
            for block in hits:
                res = correlation(x, y, n_boot=200, seed=rep, block=block)
                hits[block] += res.lo <= rho <= res.hi
        coverage[phi] = {b: h / reps for b, h in hits.items()}
    # moderate autocorrelation: near the nominal 95% (the percentile interval of r runs a
    # little short even for independent points); strong: the i.i.d. bootstrap undercovers badly
    assert coverage[0.6]["auto"] >= 0.8 and coverage[0.6]["auto"] >= coverage[0.6][1]  # measured 0.85, 0.78
    assert coverage[0.85]["auto"] >= coverage[0.85][1] + 0.1


def test_ih_icl_correlation_reports_the_block_on_the_shipped_run():
    scores = pd.read_parquet("checkpoints/example/analysis.parquet")
    out = ih_icl_correlation(scores)
    best = out[out["best"]].iloc[0]
    assert (best["layer"], best["head"], best["n"]) == (1, 0, 50)
    # block 5 from the acf rule; the issue's [0.73, 0.99] vs the i.i.d. [0.942, 0.980]
    assert best["block"] == 5
    assert (best["pearson_lo"], best["pearson_hi"]) == pytest.approx((0.73, 0.99), abs=0.005)
    iid = ih_icl_correlation(scores, block=1)
    iid_best = iid[iid["best"]].iloc[0]
    assert (iid_best["pearson_lo"], iid_best["pearson_hi"]) == pytest.approx((0.942, 0.980), abs=0.001)
    assert (iid["block"] == 1).all()
    assert format_correlation(best) == "Pearson r 0.966 [0.73, 0.99], moving-block bootstrap, block 5"
    assert format_correlation(best, "spearman").startswith("Spearman rho 0.984 [")
    assert format_correlation(iid_best) == "Pearson r 0.966 [0.94, 0.98], i.i.d. bootstrap"
    assert format_correlation(Correlation(0.5, 0.1, 0.8, 20, 3)) == (
        "Pearson r 0.500 [0.10, 0.80], moving-block bootstrap, block 3"
    )
    assert "undefined" in format_correlation(correlation([1, 2], [3, 4]))


# --------------------------------------------------------------------------- plateau onsets
def test_plateau_onset_is_the_first_checkpoint_above_plateau_plus_margin():
    steps = [0, 10, 20, 40, 80, 160]
    values = [0.10, 0.12, 0.11, 0.14, 0.30, 0.90]  # plateau median(0.10, 0.12, 0.11) = 0.11
    got = onset(steps, values, rule="plateau", margin=0.05)
    assert got == Onset(80.0, 40.0)  # 0.30 > 0.16 first at step 80, between checkpoints 40 and 80
    assert onset(steps, values, rule="plateau", margin=0.02).step == 40.0  # 0.14 > 0.13
    assert onset(steps, values, rule="plateau", plateau=0.0, margin=0.05) == Onset(0.0, 10.0)  # at once
    assert onset(steps, values, rule="plateau", n_plateau=1, margin=0.005).step == 10.0  # 0.12 > 0.105
    # min_rise: nothing formed, no onset
    assert onset(steps, values, rule="plateau", min_rise=0.8) == NO_ONSET
    flat = [0.2, 0.21, 0.2, 0.22, 0.21, 0.2]
    assert math.isnan(onset(steps, flat, rule="plateau").step)
    with pytest.raises(ValueError, match="rule"):
        onset(steps, values, rule="knee")


def test_half_rise_onset_has_the_checkpoint_spacing_as_resolution_and_min_rise():
    steps = [0, 100, 200, 300, 400]
    values = [0.0, 0.0, 0.2, 0.8, 1.0]
    assert onset(steps, values) == Onset(250.0, 100.0)  # crossing between 200 and 300
    assert onset(steps, values).step == onset_step(steps, values)
    log_steps = [0, 1, 2, 4, 8, 16, 32]
    ramp_log = [0.0, 0.0, 0.0, 0.1, 0.3, 0.9, 1.0]  # half rise 0.5 crossed between 8 and 16
    assert onset(log_steps, ramp_log) == Onset(pytest.approx(8 + 8 * 0.2 / 0.6), 8.0)
    small = [0.0, 0.0, 0.01, 0.02, 0.03]
    assert onset_step(steps, small) == pytest.approx(250.0)  # onset_step: any rise counts
    assert onset(steps, small, min_rise=0.05) == NO_ONSET  # a rise of 0.03 < min_rise: nothing formed
    assert onset(steps, small, min_rise=0.03).step == pytest.approx(250.0)  # "at least" min_rise


def test_lead_lag_is_unresolved_below_the_checkpoint_resolution():
    assert lead_lag(Onset(100.0, 50.0), Onset(300.0, 100.0)) == (200.0, 100.0, "lead")
    assert lead_lag(Onset(300.0, 100.0), Onset(100.0, 50.0)) == (-200.0, 100.0, "lag")
    assert lead_lag(Onset(100.0, 50.0), Onset(160.0, 100.0)) == (60.0, 100.0, "unresolved")
    assert lead_lag(Onset(100.0, 50.0), Onset(150.0, 50.0)).verdict == "lead"  # exactly one spacing
    assert lead_lag(NO_ONSET, Onset(1.0, 1.0)).verdict is None


def test_phases_report_resolutions_verdicts_and_skip_curves_that_do_not_rise():
    row = phases(make_scores()).iloc[0]
    # 100-step checkpoints: every onset to 100 steps; 100-step leads are resolved
    assert (row["prev_token_resolution"], row["induction_resolution"], row["icl_resolution"]) == (
        100,
        100,
        100,
    )
    assert row["lead_prev_token_over_induction_verdict"] == "lead"
    assert row["lead_prev_token_over_icl_verdict"] == "lead"
    close = make_scores(
        heads={(1, 0): {"ih": ramp(0.0, 0.6, 260, 460), "prev_token_label": ramp(0.1, 0.9, 300, 500)}}
    )
    row = phases(close).iloc[0]
    assert row["lead_induction_over_icl"] == pytest.approx(40.0)
    assert row["lead_induction_over_icl_verdict"] == "unresolved"
    # induction strength that rises by only 0.03: no onset with the default min_rise 0.05
    weak = make_scores(
        heads={(1, 0): {"ih": ramp(0.0, 0.03, 200, 400), "prev_token_label": ramp(0, 1, 0, 200)}}
    )
    row = phases(weak).iloc[0]
    assert math.isnan(row["induction_onset"]) and pd.isna(row["lead_induction_over_icl_verdict"])
    assert phases(weak, min_rise=0.0).iloc[0]["induction_onset"] == pytest.approx(300.0)
    # leaving the plateau: ih ramps from 0 at step 200 to 0.6 at 400, first above 0.05 at 300
    plateau = phases(make_scores(), rule="plateau").iloc[0]
    assert plateau["induction_onset"] == 300.0 and plateau["icl_onset"] == 400.0
