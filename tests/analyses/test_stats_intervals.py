"""Intervals over seeds: t, paired t, paired log ratio, BCa and the labelled range, each checked
against a computation written out here (mean, sd, n and a t-table value), not by the same code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mmicl_interp.analyses import stats as S

# two-sided 95% Student-t quantiles t_{0.975, df} from a printed t table
T_TABLE = {1: 12.706205, 2: 4.302653, 4: 2.776445, 9: 2.262157}


def _by_hand(values: list[float], t: float) -> tuple[float, float, float]:
    """mean -+ t * sd / sqrt(n) with sd = sqrt(sum (x - mean)^2 / (n - 1)), written out."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_t_table(df):
    assert S.t_quantile(0.95, df) == pytest.approx(T_TABLE[df], abs=1e-6)


def test_t_interval_of_a_mean_over_five_seeds_matches_the_formula():
    values = [0.81, 0.86, 0.79, 0.90, 0.84]
    iv = S.t_interval(values)
    mean, lo, hi = _by_hand(values, T_TABLE[4])
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((mean, lo, hi), abs=1e-6)  # the table has 6 decimals
    assert iv.kind == "95% t over 5 seeds" and iv.n == 5
    effect, a, b = iv  # unpacks like the old (effect, lo, hi) tuples
    assert (effect, a, b) == (iv.estimate, iv.lo, iv.hi)


def test_paired_t_interval_uses_the_per_seed_differences():
    # the icl onsets of claim 2 at K = 8192 (one-hot and correct RoPE), seeds 0-4, in steps
    onehot = pd.Series([388.4615, 352.4590, 360.1190, 330.6818, 331.2909], index=[0, 1, 2, 3, 4])
    rope = pd.Series([418.0555, 460.7143, 361.0000, 387.5000, 452.3437], index=[0, 1, 2, 3, 4])
    iv = S.paired_t_interval(onehot, rope)
    d = [r - o for r, o in zip(rope, onehot, strict=True)]  # +30, +108, +1, +57, +121
    mean, lo, hi = _by_hand(d, T_TABLE[4])
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((mean, lo, hi), abs=1e-4)  # steps
    assert iv.kind == "95% paired t over 5 seeds"
    assert iv.lo < 0 < iv.hi  # the reviewer's point: a +63-step delay whose interval holds 0
    # the unpaired intervals would differ: pairing is by seed, not by position of arrival
    shuffled = pd.Series(rope.to_numpy()[::-1], index=[0, 1, 2, 3, 4])
    assert S.paired_t_interval(onehot, shuffled).lo != pytest.approx(iv.lo)


def test_paired_values_match_on_the_seed_and_drop_missing_pairs():
    a = pd.Series({0: 1.0, 1: 2.0, 2: math.nan, 4: 9.0})
    b = pd.Series({1: 5.0, 0: 3.0, 2: 7.0, 3: 1.0})
    x, y, keys = S.paired_values(a, b)
    assert keys == [0, 1] and list(x) == [1.0, 2.0] and list(y) == [3.0, 5.0]
    iv = S.paired_t_interval(a, b)
    assert iv.n == 2 and iv.estimate == pytest.approx(2.5)
    mean, lo, hi = _by_hand([2.0, 3.0], T_TABLE[1])
    assert (iv.lo, iv.hi) == pytest.approx((lo, hi))
    with pytest.raises(ValueError, match="one length"):
        S.paired_values([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="repeats"):
        S.paired_values(pd.Series([1.0, 2.0], index=[0, 0]), pd.Series([1.0], index=[0]))


def test_paired_log_ratio_is_the_exponentiated_t_interval_of_the_log_ratios():
    num = {0: 600.0, 1: 640.0, 2: 580.0}
    den = {0: 170.0, 1: 180.0, 2: 175.0}
    iv = S.paired_log_ratio_interval(num, den)
    logs = [math.log(num[s] / den[s]) for s in (0, 1, 2)]
    mean, lo, hi = _by_hand(logs, T_TABLE[2])
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((math.exp(mean), math.exp(lo), math.exp(hi)))
    geometric = (600 / 170 * 640 / 180 * 580 / 175) ** (1 / 3)
    assert iv.estimate == pytest.approx(geometric)
    assert iv.kind == "95% paired t of the log ratio over 3 seeds"
    with pytest.raises(ValueError, match="positive"):
        S.paired_log_ratio_interval({0: 1.0}, {0: 0.0})


def test_degenerate_samples():
    one = S.t_interval([0.4])
    assert one.estimate == 0.4 and math.isnan(one.lo) and math.isnan(one.hi) and one.n == 1
    none = S.t_interval([math.nan])
    assert math.isnan(none.estimate) and none.n == 0
    same = S.paired_t_interval([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])  # every seed +0.3
    assert (same.estimate, same.lo, same.hi) == pytest.approx((0.3, 0.3, 0.3))
    with pytest.raises(ValueError, match="finite"):
        S.t_interval([1.0, math.inf])
    with pytest.raises(ValueError, match="ci"):
        S.t_interval([1.0, 2.0], ci=1.5)


def test_a_range_is_labelled_as_a_range_not_a_confidence_interval():
    iv = S.range_interval([0.862, 0.946, 0.90])
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((0.9026666, 0.862, 0.946))
    assert iv.kind == "range over 3 seeds (min-max), not a confidence interval"
    assert "confidence interval" not in S.t_interval([1.0, 2.0]).kind


def test_bca_interval_is_scipys_bca_and_falls_back_where_bca_is_undefined():
    import inspect

    from scipy import stats as sps

    x = np.random.default_rng(3).exponential(size=80)
    iv = S.bca_interval(x, n_resamples=2000, seed=7)
    seeding = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    ref = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=2000, **{seeding: np.random.default_rng(7)})
    assert (iv.lo, iv.hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert iv.estimate == pytest.approx(x.mean()) and iv.kind == "95% BCa bootstrap over 80 runs"
    # a skewed sample: BCa moves the interval toward the long tail, unlike mean -+ symmetric
    assert iv.hi - iv.estimate > iv.estimate - iv.lo
    y = x + np.random.default_rng(4).normal(size=80)
    paired = S.bca_interval(x, y, paired=True, n_resamples=2000)
    assert paired.estimate == pytest.approx((y - x).mean()) and paired.kind.endswith("(paired)")
    flat = S.bca_interval(np.full(10, 0.5), n_resamples=500)
    assert (flat.lo, flat.hi) == (0.5, 0.5) and "BCa undefined" in flat.kind
    few = S.bca_interval([1.0, 2.0])
    assert math.isnan(few.lo)
