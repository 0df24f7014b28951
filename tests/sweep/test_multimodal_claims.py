"""Claim 4's sub-claim builders (mmicl_interp.sweep.multimodal_claims), each effect and interval
checked against a hand or scipy computation on small per-run tables."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mmicl_interp.sweep.multimodal import ARMS
from mmicl_interp.sweep.multimodal_claims import (
    K2Claim,
    encoder_subclaim,
    k2_subclaims,
    size_families,
    size_subclaim,
)


def _paired_t(base, other) -> list[float]:
    """The 95% paired t interval of ``other - base`` (aligned per seed), from scipy."""
    d = np.asarray(other, dtype=float) - np.asarray(base, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return [d.mean() - half, d.mean() + half]


def _k2_table() -> pd.DataFrame:
    icl = {"stage2": ([0.3, 0.9], [0.9, 0.95, 0.92]), "early": ([0.02, 0.6], [0.03, 0.05, 0.04])}
    icl["unfrozen"] = ([0.2, 0.7], [0.30, 0.33, 0.31])
    rows = []
    for arm, (at_high, at_low) in icl.items():
        for seed, v in enumerate(at_low):
            rows.append(dict(arm=ARMS[arm], K2=32, seed=seed, icl=v, icl_m2_only=v - 0.01))
        for k2, v in zip((128, 512), at_high, strict=True):
            rows.append(dict(arm=ARMS[arm], K2=k2, seed=0, icl=v, icl_m2_only=v))
    return pd.DataFrame(rows)


CLAIMS = (
    K2Claim("4a", "stage 2 wins", "early", "stage2", "stage 2 minus early", "a note", suffices=True),
    K2Claim("4d", "random", "random", "stage2", "stage 2 minus random"),
    K2Claim("4g", "unfrozen suffices", "early", "unfrozen", "unfrozen minus early", suffices=True),
)


def test_k2_subclaims_pair_the_arms_by_seed_at_the_smallest_k2():
    table = _k2_table()
    subs = {s.id: s for s in k2_subclaims(table, [512, 32, 128], {}, "cmd", claims=CLAIMS, min_effect=0.2)}
    assert list(subs) == ["4a", "4d", "4g"]
    a = subs["4a"]
    stage2, early = [0.9, 0.95, 0.92], [0.03, 0.05, 0.04]
    assert a.effect == pytest.approx(np.mean(stage2) - np.mean(early))
    assert a.interval == pytest.approx(_paired_t(early, stage2)) and a.verdict == "supported"
    assert a.effect_label == "multimodal icl at K2 = 32, stage 2 minus early"
    assert a.notes.startswith("a note; icl >= 0.5 from K2 = 32 (stage 2), 512 (early fusion)")
    assert "the same difference on icl_m2_only: " + f"{a.effect:.3f}" in a.notes  # both shifted by 0.01
    assert (a.n_runs, a.n_seeds) == (6, 3)
    # an arm not run: not tested, naming it
    assert subs["4d"].verdict == "not tested" and "arm random not run" in subs["4d"].notes
    # unfrozen beats early by 0.27 but stays below 0.5 at K2 = 32: weak, and said why
    g = subs["4g"]
    assert (
        g.effect == pytest.approx(np.mean([0.30, 0.33, 0.31]) - 0.04)
        and g.verdict == "weak"
        and "does not suffice" in g.notes
    )
    # the same claim without "suffices": supported
    plain = k2_subclaims(table, [32], {}, "cmd", claims=[CLAIMS[2]._replace(suffices=False)], min_effect=0.2)
    assert plain[0].verdict == "supported" and "does not suffice" not in plain[0].notes
    empty = k2_subclaims(table.iloc[:0], [32], {}, "cmd", claims=CLAIMS, min_effect=0.2)
    assert [s.verdict for s in empty] == ["not tested"] * 3


def _sizes(spec: dict) -> pd.DataFrame:
    """Size-sweep rows: {size: (n_params, stage-1 icl, [icl per seed])}."""
    return pd.DataFrame(
        [
            dict(size=z, seed=s, K2=32, n_params=n, stage1_icl=s1, icl=v, icl_m2_only=v - 0.02)
            for z, (n, s1, icl) in spec.items()
            for s, v in enumerate(icl)
        ]
    )


def test_size_subclaim_is_largest_minus_smallest_and_weak_when_not_monotone():
    small, mid, large = [0.3, 0.35, 0.32], [0.9, 0.95, 0.93], [0.6, 0.66, 0.62]
    rows = _sizes({"l2_h1": (100, 0.9, small), "l3_h2": (200, 0.9, mid), "l4_h4": (300, 0.9, large)})
    sub = size_subclaim(rows, {}, "cmd", min_effect=0.1)
    assert sub.effect == pytest.approx(np.mean(large) - np.mean(small))
    assert sub.interval == pytest.approx(_paired_t(small, large))
    assert sub.verdict == "weak" and "not monotone in size" in sub.notes  # l3_h2 beats l4_h4
    assert sub.n_runs == 2 * 9 and "l2_h1 (100) 0.323 / 0.303" in sub.notes
    rows = _sizes({"l2_h1": (100, 0.9, small), "l4_h4": (300, 0.9, large)})
    assert size_subclaim(rows, {}, "cmd", min_effect=0.1).verdict == "supported"
    one = size_subclaim(_sizes({"l2_h1": (100, 0.4, small)}), {}, "cmd", "4h", min_effect=0.1)
    assert one.id == "4h" and one.verdict == "not tested" and "one size only" in one.notes
    assert "l2_h1 (0.400)" in one.notes
    # the larger decoder never learned ICL in stage 1: left out, one size left, not tested
    stuck = _sizes({"l2_h1": (100, 0.9, small), "l4_h4": (300, 0.49, large)})
    out = size_subclaim(stuck, {}, "cmd", min_effect=0.1)
    assert out.verdict == "not tested" and "l4_h4 (0.490)" in out.notes


def test_size_families_judge_the_shipped_width_and_the_learned_embedding_apart():
    rows = _sizes(
        {
            "l2_h1": (100, 0.9, [0.5, 0.52, 0.51]),
            "l4_h4": (300, 0.9, [0.9, 0.94, 0.92]),
            "d32_l2_h1": (200, 0.9, [0.2, 0.25, 0.22]),
            "d64_l3_h2": (500, 0.9, [0.3, 0.32, 0.31]),
        }
    )
    fixed, wide = size_families(rows, {}, "cmd", min_effect=0.1)
    assert (fixed.id, wide.id) == ("4b", "4h")
    assert (
        fixed.effect == pytest.approx(np.mean([0.9, 0.94, 0.92]) - np.mean([0.5, 0.52, 0.51]))
        and "l4_h4 minus l2_h1" in fixed.effect_label
    )
    assert (
        wide.effect == pytest.approx(np.mean([0.3, 0.32, 0.31]) - np.mean([0.2, 0.25, 0.22]))
        and "d64_l3_h2 minus d32_l2_h1" in wide.effect_label
    )
    assert fixed.text.endswith("at a fixed width (more layers and heads)") and "growing width" in wide.text
    assert fixed.notes.startswith("the shipped width") and wide.notes.startswith("widened through")
    none = size_families(rows.iloc[:0], {}, "cmd", min_effect=0.1)
    assert [s.verdict for s in none] == ["not tested", "not tested"]


def _encoders(acc: dict) -> pd.DataFrame:
    """Encoder-sweep rows: {encoder steps: (encoder accuracy, [icl_m2_only per seed])}."""
    return pd.DataFrame(
        [
            dict(encoder_steps=n, seed=s, K2=32, encoder_acc=a, icl=v + 0.01, icl_m2_only=v)
            for n, (a, values) in acc.items()
            for s, v in enumerate(values)
        ]
    )


def test_encoder_subclaim_is_strongest_minus_weakest_encoder_on_icl_m2_only():
    weak, mid, strong = [0.3, 0.35, 0.31], [0.5, 0.6, 0.55], [0.9, 0.92, 0.95]
    enc = _encoders({500: (0.99, strong), 10: (0.1, weak), 40: (0.5, mid)})
    sub = encoder_subclaim(enc, {}, "cmd", min_effect=0.1)
    assert sub.effect == pytest.approx(np.mean(strong) - np.mean(weak))
    assert sub.interval == pytest.approx(_paired_t(weak, strong)) and sub.verdict == "supported"
    assert "encoder of 500 minus 10 pretraining steps" in sub.effect_label and sub.n_runs == 12
    rho = stats.spearmanr(enc["encoder_acc"], enc["icl_m2_only"]).statistic
    assert f"encoder accuracy vs icl_m2_only: {rho:.3f}" in sub.notes
    narrow = encoder_subclaim(_encoders({10: (0.5, weak), 500: (0.6, strong)}), {}, "cmd", min_effect=0.1)
    assert narrow.verdict == "not tested" and "span only 0.500 to 0.600" in narrow.notes
    looser = encoder_subclaim(
        _encoders({10: (0.5, weak), 500: (0.6, strong)}), {}, "cmd", min_effect=0.1, min_span=0.05
    )
    assert looser.verdict == "supported"
    one = encoder_subclaim(_encoders({10: (0.5, weak)}), {}, "cmd", min_effect=0.1)
    assert one.verdict == "not tested" and "encoder sweep" in one.notes
