"""Block lengths, the moving-block bootstrap, the context-label plateau and config hashing."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from mmicl_interp.analyses import stats as S
from mmicl_interp.analyses.correlation import bootstrap_indices
from mmicl_interp.config import RunConfig


def ar1(n: int, phi: float, rng: np.random.Generator, noise: np.ndarray | None = None) -> np.ndarray:
    """A stationary AR(1) series ``a_t = phi a_{t-1} + e_t``."""
    e = rng.normal(size=n) if noise is None else noise
    a = np.empty(n)
    a[0] = e[0] / math.sqrt(1 - phi**2)
    for t in range(1, n):
        a[t] = phi * a[t - 1] + e[t]
    return a


# --------------------------------------------------------------------------- autocorrelation
def test_autocorrelation_matches_a_direct_sum_and_handles_constants():
    a = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    c = a - a.mean()
    direct = [np.sum(c[: 5 - k] * c[k:]) / np.sum(c * c) for k in range(5)]
    assert S.autocorrelation(a) == pytest.approx(direct)
    assert S.autocorrelation(a, 2) == pytest.approx(direct[:3])
    flat = S.autocorrelation(np.full(6, 2.0), 3)
    assert flat[0] == 1.0 and np.isnan(flat[1:]).all()
    # an AR(1) with phi 0.8 over many points: rho(k) ~ 0.8^k
    rho = S.autocorrelation(ar1(20_000, 0.8, np.random.default_rng(0)), 3)
    assert rho == pytest.approx([1, 0.8, 0.64, 0.512], abs=0.03)


# --------------------------------------------------------------------------- block lengths
@pytest.mark.parametrize("rule", S.BLOCK_RULES)
def test_block_length_is_long_for_strong_ar1_and_short_for_white_noise(rule):
    rng = np.random.default_rng(1)
    strong = [S.block_length(ar1(100, 0.9, rng), rule=rule) for _ in range(10)]
    white = [S.block_length(rng.normal(size=100), rule=rule) for _ in range(10)]
    assert min(strong) > 2
    assert np.median(white) <= 2 and np.median(strong) > np.median(white) + 2
    if rule == "acf":  # the 2/sqrt(n) band: 1 or 2 on white noise
        assert max(white) <= 2


def test_acf_rule_is_the_first_lag_inside_the_white_noise_band():
    rng = np.random.default_rng(4)
    a = ar1(64, 0.8, rng)
    rho = S.autocorrelation(a)
    expected = next(k for k in range(1, 64) if abs(rho[k]) < 2 / math.sqrt(64))
    assert S.block_length(a) == expected > 1
    # several series: the largest block; a constant or very short series: 1
    b = rng.normal(size=64)
    assert S.block_length(a, b) == max(S.block_length(a), S.block_length(b))
    assert S.block_length(np.ones(30)) == 1 and S.block_length([1.0, 2.0, 3.0]) == 1
    # the cap: ceil(min(3 sqrt(n), n / 3))
    assert S.max_block(50) == 17 and S.max_block(400) == 60
    assert S.block_length(np.arange(50.0)) <= 17  # a trend never decorrelates: capped


def test_correlation_block_length_uses_the_influence_series():
    rng = np.random.default_rng(2)
    # independent AR(1) pairs: psi_t ~ u_t v_t has autocorrelation phi^(2k)
    strong = [S.correlation_block_length(ar1(80, 0.9, rng), ar1(80, 0.9, rng)) for _ in range(10)]
    white = [S.correlation_block_length(rng.normal(size=80), rng.normal(size=80)) for _ in range(10)]
    assert np.median(strong) > 2 and max(white) <= 2
    x, y = rng.normal(size=30), rng.normal(size=30)
    u, v = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    r = np.corrcoef(x, y)[0, 1]
    assert S.correlation_influence(x, y) == pytest.approx(u * v - r * (u * u + v * v) / 2)
    assert np.mean(S.correlation_influence(x, y)) == pytest.approx(
        0.0, abs=1e-12
    )  # mean uv = r, mean u^2 = 1
    # a perfect line: psi is 0, block 1
    assert S.correlation_block_length(x, 2 * x + 1) == 1
    assert S.correlation_block_length(x, y) == max(
        S.correlation_block_length(x, y, "pearson"), S.correlation_block_length(x, y, "spearman")
    )
    with pytest.raises(ValueError, match="rule"):
        S.block_length(x, rule="guess")


# --------------------------------------------------------------------------- block bootstrap
def test_block_one_is_the_iid_bootstrap():
    assert np.array_equal(S.block_bootstrap_indices(17, 1, 50, seed=3), bootstrap_indices(17, 50, seed=3))


def test_block_indices_are_runs_of_consecutive_checkpoints():
    idx = S.block_bootstrap_indices(20, 5, 300, seed=0)
    assert idx.shape == (300, 20) and idx.min() >= 0 and idx.max() <= 19
    blocks = idx.reshape(300, 4, 5)
    assert (np.diff(blocks, axis=2) == 1).all()  # each block is consecutive
    starts = blocks[:, :, 0].ravel()
    assert set(starts) == set(range(16))  # every one of the n - b + 1 blocks is drawn
    # n not a multiple of b: the last block is cut
    assert S.block_bootstrap_indices(7, 3, 4, seed=1).shape == (4, 7)
    for bad in (0, 21):
        with pytest.raises(ValueError, match="block"):
            S.block_bootstrap_indices(20, bad, 10)


def test_percentile_interval_matches_numpy_and_keeps_infinity():
    vals = np.random.default_rng(0).normal(size=101)
    assert S.percentile_interval(vals, 0.9) == pytest.approx(tuple(np.quantile(vals, [0.05, 0.95])))
    lo, hi = S.percentile_interval(np.array([1.0, 2.0, 3.0, np.inf]), 0.5)
    assert lo == pytest.approx(np.quantile([1, 2, 3, 4], 0.25)) and hi == math.inf
    assert all(math.isnan(v) for v in S.percentile_interval(np.array([np.nan])))


# --------------------------------------------------------------------------- context plateau
def test_icl_relative_to_the_context_label_plateau():
    # N = 8 exemplars, B = 2 copies: 4 context labels, plateau 0.25
    assert S.context_plateau(8, 2) == 0.25
    assert S.icl_relative(0.25, 8, 2) == 0.0 and S.icl_relative(1.0, 8, 2) == 1.0
    assert S.icl_relative(0.625, 8, 2) == pytest.approx(0.5)  # halfway from 0.25 to 1
    acc = pd.Series([0.0, 0.25, 0.5])
    assert S.icl_relative(acc, 8, 2).tolist() == pytest.approx([-1 / 3, 0.0, 1 / 3])
    assert S.plateau_from_config(RunConfig()) == pytest.approx(RunConfig().task.B / RunConfig().task.N)
    assert S.plateau_from_config("checkpoints/example") == 0.25  # N 8, B 2
    with pytest.raises(ValueError, match="1 <= B < N"):
        S.context_plateau(4, 4)


# --------------------------------------------------------------------------- config hashing
def test_config_hash_ignores_names_and_threads_but_not_semantics(tmp_path):
    base = RunConfig().to_dict()
    renamed = json.loads(json.dumps(base)) | {"name": "other"}
    renamed["train"]["threads"] = 4
    assert S.config_hash(base) == S.config_hash(renamed) == S.config_hash(RunConfig())
    seeded = json.loads(json.dumps(base))
    seeded["train"]["seed"] = 1
    assert S.config_hash(seeded) != S.config_hash(base)
    # defaults are filled in: a dict that omits them hashes as the full one
    assert S.config_hash({"task": {"K": base["task"]["K"]}}) == S.config_hash(base)
    # a manifest dict and a run directory hash as the config inside
    shutil.copy("checkpoints/example/manifest.json", tmp_path / "manifest.json")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert S.config_hash(tmp_path) == S.config_hash(manifest) == S.config_hash(manifest["config"])
    h = S.config_hash(base)
    assert len(h) == 16 and int(h, 16) >= 0


def test_dedupe_runs_and_tables_keep_the_first_of_each_config():
    a, b = RunConfig(), RunConfig()
    b.name = "copy"  # the same point under another name
    c = RunConfig()
    c.task.K = 64
    assert S.dedupe_runs([a, b, c]) == [a, c]
    named = [("x", a), ("y", b), ("z", c)]
    assert [n for n, _ in S.dedupe_runs(named, config_of=lambda r: r[1])] == ["x", "z"]
    table = pd.DataFrame({"run": ["y", "x", "y", "z"], "value": [1, 2, 3, 4]})
    out = S.dedupe_table(table, {"x": a, "y": b, "z": c})
    assert out["run"].tolist() == ["y", "y", "z"]  # y appears first in the table
    hashed = table.assign(config_hash=table["run"].map({"x": "h1", "y": "h1", "z": "h2"}))
    assert S.dedupe_table(hashed)["run"].tolist() == ["y", "y", "z"]
    with pytest.raises(ValueError, match="no config for runs"):
        S.dedupe_table(table, {"x": a})
    with pytest.raises(ValueError, match="config_hash column"):
        S.dedupe_table(table)


# --------------------------------------------------------------------------- trend over a window
def test_trend_change_is_the_fitted_rise_over_the_last_fifth():
    steps = np.arange(0, 101, 5.0)
    values = 0.3 + 0.002 * steps  # a straight line: the rise over the window [80, 100] is 0.04
    assert S.trend_change(steps, values) == pytest.approx(0.04)
    # steps before the window do not count, and the order of the evals does not matter
    values2 = values.copy()
    values2[steps < 80] = 0.0
    perm = np.random.default_rng(0).permutation(len(steps))
    assert S.trend_change(steps[perm], values2[perm]) == pytest.approx(0.04)
    # zero-mean noise around a flat line leaves a small trend, not its max - min
    rng = np.random.default_rng(1)
    flat = 0.5 + rng.choice([-0.02, 0.02], size=len(steps))
    assert S.trend_change(steps, flat) < np.ptp(flat[steps >= 80])


def test_trend_change_with_two_or_fewer_evals_in_the_window():
    assert S.trend_change([0, 80, 100], [0.0, 0.2, 0.5]) == pytest.approx(0.3)  # |last - first|
    assert math.isnan(S.trend_change([0, 50, 100], [0.0, 0.2, 0.5]))  # one eval in [80, 100]
    assert math.isnan(S.trend_change([], []))
    with pytest.raises(ValueError, match="one length"):
        S.trend_change([1, 2], [1.0])
