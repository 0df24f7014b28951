"""Generic statistics a skeptical reviewer asks for (DESIGN.md "Statistics a reviewer accepts").

Reusable from notebooks; :mod:`~mmicl_interp.analyses.correlation` and
:mod:`~mmicl_interp.sweep.summary` build on it.

**Autocorrelation** of a series ``a`` of length ``n`` at lag ``k`` (:func:`autocorrelation`):
``rho(k) = sum_{t<n-k} (a_t - mean a)(a_{t+k} - mean a) / sum_t (a_t - mean a)^2``.

**Moving-block bootstrap** (Kunsch 1989; :func:`block_bootstrap_indices`): the checkpoints of
one run are a time series, so a resample is built from blocks of ``b`` *consecutive*
indices. The ``n - b + 1`` overlapping blocks ``{i, ..., i + b - 1}`` are drawn uniformly
with replacement, ``ceil(n / b)`` of them, concatenated and cut to ``n`` indices. With
``b = 1`` this is exactly the i.i.d. bootstrap (same draws as ``rng.integers(0, n, (n_boot,
n))``). Blocks keep the dependence within ``b`` checkpoints, so the interval widens when
the series are autocorrelated. The endpoints of the series are drawn a little less often
than the middle (in fewer blocks); the circular variant is not used because joining the
end of training to its start would invent a jump. Coverage is approximate: on simulated
AR(1) pairs (true correlation 0.5, 80 repeats) the 95% interval with the ``acf`` block
covered 0.85 of the time at ``phi = 0.6``, n = 100 (i.i.d.: 0.78) and 0.80 at ``phi =
0.85``, n = 150 (i.i.d.: 0.58); the percentile interval of ``r`` runs short even for
independent points (about 0.90 on white noise, n = 60).

**Block length** (:func:`block_length`), for a series (or several: the largest is taken),
with ``b_max = max(1, ceil(min(3 sqrt(n), n / 3)))``:

- ``rule="acf"`` (default): the smallest lag ``k >= 1`` at which the autocorrelation is no
  longer significant, ``|rho(k)| < 2 / sqrt(n)`` (the usual white-noise band); ``b = k``.
  White noise gives 1 (sometimes 2); an AR(1) series with coefficient ``phi`` gives about
  ``log(2 / sqrt(n)) / log(phi)``.
- ``rule="politis-white"``: Politis & White (2004) with the correction of Patton, Politis
  & White (2009), for the circular/moving-block bootstrap. With autocovariances ``R(k)``
  (divided by ``n``), ``m`` the smallest lag after which ``K_n = max(5, ceil(sqrt(log10
  n)))`` consecutive autocorrelations lie within ``2 sqrt(log10(n) / n)``, ``M = 2 m``
  (at least 2, at most ``ceil(sqrt n) + K_n``) and the flat-top window ``lambda(t) = 1``
  for ``|t| <= 1/2``, ``2 (1 - |t|)`` for ``1/2 < |t| <= 1``:
  ``G = sum_{|k|<=M} lambda(k/M) |k| R(k)``, ``g = sum_{|k|<=M} lambda(k/M) R(k)``,
  ``b = (2 G^2 / ((4/3) g^2))^(1/3) n^(1/3)``, rounded up.

**Block length of a correlation** (:func:`correlation_block_length`): the rule is applied
to the series that drives the variance of the estimate, the influence (linearisation)
series of Pearson's ``r``: with ``u``, ``v`` the standardised curves (ranks first for
Spearman), ``psi_t = u_t v_t - r (u_t^2 + v_t^2) / 2``; ``var(r) ~ long-run variance of
psi / n``. The raw training curves are trends (their autocorrelation stays high for many
lags) but their co-movement around the fit decorrelates faster; the influence series
measures exactly that. A constant ``psi`` (a perfect correlation) gives block 1. By
default the larger of the Pearson and the Spearman block is used for both. On the shipped
example run (L1H0 ``ih`` vs icl accuracy, 50 checkpoints) the acf rule gives 5 (Pearson
5, Spearman 3), Politis-White 6.

**Context-label plateau** (:func:`context_plateau`, :func:`icl_relative`): a model that has
only learnt "answer with one of the labels in the context" is right ``1 / (N / B)`` of the
time (N exemplars, B copies of each class: ``N / B`` distinct context labels), well above
chance ``1 / L``. ICL relative to that plateau is ``(acc - p) / (1 - p)`` with
``p = 1 / (N / B) = B / N``: 0 at the plateau, 1 at perfect, negative below it.

**Trend change over a window** (:func:`~mmicl_interp.train.plateau.trend_change`, defined in
``train`` because the trainer needs it, re-exported here; used by the training plateau stop
``train.stop_plateau`` and by the claims' "still moving" check, so both apply one test): the
least-squares slope ``b`` of the values against step over the evals at steps >= ``(1 - tail)
* last``, times the window's length, ``|b| (s_last - s_first)``; with fewer than 3 evals in the
window, ``|y_last - y_first|``. The trend, not max - min: the eval noise of an accuracy near
0.1 on 1000 sequences alone is about 0.01, so max - min would never call a run settled.

**Intervals over seeds** (:class:`Interval`, each with a ``kind`` that says what it is). With
3-5 seeds a percentile bootstrap runs short (it can only reshuffle the few values seen), so a
mean over ``n`` seeds gets the Student-t interval (:func:`t_interval`)
``mean +- t_{(1+ci)/2, n-1} sd / sqrt(n)`` (``sd`` with ``n - 1``). Two arms that share seeds
(the grids vary task, model and training seed together as ``seed``, so seed ``s`` of one arm
sees the same task and data stream as seed ``s`` of the other) are compared by the paired t
interval (:func:`paired_t_interval`): the t interval of the per-seed differences ``d_s = b_s -
a_s``. A ratio of two positive quantities matched by seed (e.g. two crossing K) is the paired t
interval of ``log(num_s / den_s)``, exponentiated (:func:`paired_log_ratio_interval`; its
estimate is the geometric mean of the per-seed ratios). :func:`bca_interval` is the BCa
bootstrap of :func:`scipy.stats.bootstrap`, for statistics over many runs (a correlation, a
mean over hundreds of runs), not for 3-5 seeds. :func:`range_interval` is the min-max over
seeds, labelled as a range, never as a confidence interval.

**Configuration hash** (:func:`config_hash`, :func:`dedupe_runs`, :func:`dedupe_table`): runs
trained from the same configuration are repeats of one point, not independent evidence
(two sweeps can share a grid point). The hash is the SHA-256 (first 16 hex digits) of the
config as JSON with sorted keys, compact separators, after filling defaults
(``RunConfig.from_dict``) and dropping the fields that do not change what is trained
(:data:`NON_SEMANTIC_FIELDS`: the run name, run id, output paths, the torch thread count,
the device and torch.compile, none of which change what is learned beyond float rounding).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from mmicl_interp.config import EXECUTION_FIELDS
from mmicl_interp.train.plateau import trend_change

BlockRule = Literal["acf", "politis-white"]
BLOCK_RULES: tuple[str, ...] = ("acf", "politis-white")
NON_SEMANTIC_FIELDS: tuple[str, ...] = (
    "name",
    "run_id",
    "out",
    "output",
    "output_dir",
    "train.threads",
    *(f"train.{name}" for name in EXECUTION_FIELDS),
)
"""Config fields (dotted paths) left out of :func:`config_hash`: names, ids, output paths, threads."""

T = TypeVar("T")


# --------------------------------------------------------------------------- autocorrelation
def _series(name: str, a) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (drop NaN checkpoints first)")
    return arr


def _is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or float(np.ptp(a)) <= 1e-12 * max(1.0, float(np.abs(a).max()))


def autocorrelation(a: Float[np.ndarray, " n"] | Sequence[float], max_lag: int | None = None) -> np.ndarray:
    """``rho(0..max_lag)`` of a series (``rho(0) = 1``); all NaN beyond lag 0 for a constant series.

    ``max_lag`` defaults to ``n - 1``.
    """
    a = _series("series", a)
    n = len(a)
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    if n == 0:
        return np.zeros(0)
    c = a - a.mean()
    den = float((c * c).sum())
    if _is_constant(a):
        return np.concatenate([[1.0], np.full(max_lag, np.nan)])
    return np.array([float((c[: n - k] * c[k:]).sum()) / den for k in range(max_lag + 1)])


def max_block(n: int) -> int:
    """The cap on a block length for ``n`` points: ``max(1, ceil(min(3 sqrt(n), n / 3)))``."""
    return max(1, math.ceil(min(3 * math.sqrt(n), n / 3)))


def _acf_rule(a: np.ndarray) -> int:
    n = len(a)
    rho = autocorrelation(a)
    band = 2 / math.sqrt(n)
    cap = max_block(n)
    for k in range(1, min(cap, n - 1) + 1):
        if abs(rho[k]) < band:
            return k
    return cap


def _flat_top(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(t <= 0.5, 1.0, np.where(t <= 1.0, 2 * (1 - t), 0.0))


def _politis_white_rule(a: np.ndarray) -> int:
    n = len(a)
    c = a - a.mean()
    cov = np.array([float((c[: n - k] * c[k:]).sum()) / n for k in range(n)])
    rho = cov / cov[0]
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = math.ceil(math.sqrt(n)) + k_n
    band = 2 * math.sqrt(math.log10(n) / n)
    m = m_max
    for lag in range(m_max + 1):
        window = rho[lag + 1 : lag + k_n + 1]
        if window.size and np.all(np.abs(window) < band):
            m = lag
            break
    big_m = min(2 * max(m, 1), m_max, n - 1)
    k = np.arange(-big_m, big_m + 1)
    lam = _flat_top(k / big_m)
    r = cov[np.abs(k)]
    g = float((lam * r).sum())
    big_g = float((lam * np.abs(k) * r).sum())
    if g <= 0:
        return 1
    b = (2 * big_g**2 / ((4 / 3) * g**2)) ** (1 / 3) * n ** (1 / 3)
    return int(min(max(1, math.ceil(b)), max_block(n)))


def block_length(*series: Float[np.ndarray, " n"] | Sequence[float], rule: BlockRule = "acf") -> int:
    """Block length for a moving-block bootstrap of one or more equal-length series.

    The rule (module docstring) is applied to each series and the largest block is kept.
    Constant series and series of fewer than 4 points give 1.
    """
    if rule not in BLOCK_RULES:
        raise ValueError(f"rule must be one of {', '.join(BLOCK_RULES)}; got {rule!r}")
    if not series:
        raise ValueError("block_length needs at least one series")
    arrays = [_series(f"series {i}", s) for i, s in enumerate(series)]
    if len({len(a) for a in arrays}) > 1:
        raise ValueError(f"series must have the same length, got {[len(a) for a in arrays]}")
    best = 1
    for a in arrays:
        if len(a) < 4 or _is_constant(a):
            continue
        best = max(best, _acf_rule(a) if rule == "acf" else _politis_white_rule(a))
    return best


def _ranks(a: np.ndarray) -> np.ndarray:
    return pd.Series(a).rank(method="average").to_numpy(float)


def correlation_influence(
    x: Float[np.ndarray, " n"] | Sequence[float],
    y: Float[np.ndarray, " n"] | Sequence[float],
    method: Literal["pearson", "spearman"] = "pearson",
) -> np.ndarray:
    """``psi_t = u_t v_t - r (u_t^2 + v_t^2) / 2`` for standardised ``u``, ``v`` (ranks for Spearman).

    The influence series of Pearson's ``r``: ``r - rho ~ mean(psi)``. All zeros when either
    curve is constant (no correlation to resample).
    """
    x, y = _series("x", x), _series("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if method == "spearman":
        x, y = _ranks(x), _ranks(y)
    elif method != "pearson":
        raise ValueError(f"method must be one of pearson, spearman; got {method!r}")
    if _is_constant(x) or _is_constant(y):
        return np.zeros_like(x)
    u = (x - x.mean()) / x.std()
    v = (y - y.mean()) / y.std()
    r = float((u * v).mean())
    return u * v - r * (u * u + v * v) / 2


def correlation_block_length(
    x: Float[np.ndarray, " n"] | Sequence[float],
    y: Float[np.ndarray, " n"] | Sequence[float],
    method: Literal["pearson", "spearman", "both"] = "both",
    rule: BlockRule = "acf",
) -> int:
    """Block length for bootstrapping the correlation of two curves: ``rule`` on its influence series.

    ``method="both"`` (default) takes the larger of the Pearson and Spearman blocks, so the
    two statistics of a pair are resampled alike (conservatively: a longer block).
    """
    methods = ("pearson", "spearman") if method == "both" else (method,)
    return block_length(*(correlation_influence(x, y, m) for m in methods), rule=rule)


def block_bootstrap_indices(
    n: int, block: int, n_boot: int = 2000, seed: int = 0
) -> Int[np.ndarray, "n_boot n"]:
    """``[n_boot, n]`` moving-block bootstrap indices (blocks of ``block`` consecutive indices).

    ``block = 1`` gives the same draws as ``default_rng(seed).integers(0, n, (n_boot, n))``.
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(block, (int, np.integer)) or not 1 <= block <= n:
        raise ValueError(f"block must be an integer in [1, n={n}], got {block!r}")
    n_blocks = math.ceil(n / block)
    starts = np.random.default_rng(seed).integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, n_blocks * block)
    return idx[:, :n]


def percentile_interval(stats: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """The ``(1 - ci)/2`` and ``(1 + ci)/2`` quantiles of the finite (or infinite) values; NaN if none.

    ``+inf`` counts as larger than every value (e.g. "never reached"), so a bound may be inf.
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    stats = np.asarray(stats, dtype=float)
    stats = np.sort(stats[~np.isnan(stats)])
    if stats.size == 0:
        return math.nan, math.nan
    out = []
    for q in ((1 - ci) / 2, (1 + ci) / 2):  # numpy's "linear" quantile, with inf kept as inf
        pos = q * (stats.size - 1)
        i, j, t = math.floor(pos), math.ceil(pos), pos - math.floor(pos)
        a, b = stats[i], stats[j]
        out.append(float(a if t == 0 or a == b else (b if np.isinf(b) else a + t * (b - a))))
    return out[0], out[1]


# --------------------------------------------------------------------------- intervals over seeds
@dataclass(frozen=True)
class Interval:
    """An estimate with its ``[lo, hi]`` and a truthful label of how the interval was made
    (``kind``: "95% paired t over 5 seeds", "range over 3 seeds (min-max), not a confidence
    interval", ...). ``n``: the independent units behind it (seeds, or runs)."""

    estimate: float
    lo: float
    hi: float
    kind: str
    n: int

    @property
    def bounds(self) -> list[float]:
        """``[lo, hi]``."""
        return [self.lo, self.hi]

    def __iter__(self):  # ``effect, lo, hi = interval``
        return iter((self.estimate, self.lo, self.hi))


def _ci_label(ci: float) -> str:
    _check_level(ci)
    return f"{100 * ci:g}%"


def _check_level(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def _values(name: str, values) -> np.ndarray:
    """A 1-d float array without its NaNs (a missing seed); inf is refused."""
    arr = np.asarray(values.to_numpy() if isinstance(values, pd.Series) else values, dtype=float)
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    arr = arr[~np.isnan(arr)]
    if np.isinf(arr).any():
        raise ValueError(f"{name} must be finite (an infinite value has no mean)")
    return arr


def t_quantile(ci: float, df: int) -> float:
    """``t_{(1 + ci)/2, df}``, the two-sided Student-t quantile (``scipy.stats.t.ppf``)."""
    from scipy import stats as sps

    _check_level(ci)
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df!r}")
    return float(sps.t.ppf((1 + ci) / 2, df))


def t_interval(values, ci: float = 0.95, unit: str = "seeds", what: str = "t") -> Interval:
    """The mean of ``values`` (one per seed) with the Student-t interval
    ``mean +- t_{(1+ci)/2, n-1} sd / sqrt(n)``, ``sd`` with ``n - 1`` in the denominator.

    NaN values (a seed without a value) are left out and not counted. One value: the mean with
    NaN bounds; none: all NaN. Equal values give ``lo = hi = mean``. ``kind``:
    ``"95% t over 5 seeds"`` (``what`` names the statistic, e.g. "paired t")."""
    x = _values("values", values)
    n = int(x.size)
    kind = f"{_ci_label(ci)} {what} over {n} {unit}"
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, kind, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, kind, n)
    half = t_quantile(ci, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, kind, n)


def paired_values(a, b) -> tuple[np.ndarray, np.ndarray, list]:
    """``a`` and ``b`` matched unit by unit (seed by seed), without the pairs where either is NaN.

    Two pandas Series (or mappings) are matched on their index (the seed), in sorted order;
    a unit in only one of them is left out. Two arrays are matched by position and must be
    of one length. Returns ``(a, b, keys)``."""
    if isinstance(a, Mapping):
        a = pd.Series(a, dtype=float)
    if isinstance(b, Mapping):
        b = pd.Series(b, dtype=float)
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        if not a.index.is_unique or not b.index.is_unique:
            raise ValueError("paired values need one value per unit (seed): the index repeats")
        keys = sorted(set(a.index) & set(b.index))
        x, y = a.loc[keys].to_numpy(float), b.loc[keys].to_numpy(float)
    else:
        x, y = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"paired arrays must have one length, got {x.size} and {y.size}")
        keys = list(range(x.size))
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep], [k for k, ok in zip(keys, keep, strict=True) if ok]


def paired_t_interval(a, b, ci: float = 0.95, unit: str = "seeds") -> Interval:
    """``b - a`` for two arms matched by seed: the mean of the per-seed differences
    ``d_s = b_s - a_s`` with their t interval (:func:`t_interval`). ``kind``:
    ``"95% paired t over 5 seeds"``. Matching: :func:`paired_values`."""
    x, y, _ = paired_values(a, b)
    return t_interval(y - x, ci, unit, what="paired t")


def paired_log_ratio_interval(num, den, ci: float = 0.95, unit: str = "seeds") -> Interval:
    """``num / den`` for two positive quantities matched by seed (e.g. the crossing K of two
    arms): the t interval of the per-seed ``log(num_s / den_s)``, exponentiated. The estimate is
    the geometric mean of the per-seed ratios. ``kind``: ``"95% paired t of the log ratio over 5
    seeds"``."""
    x, y, _ = paired_values(den, num)
    if (x <= 0).any() or (y <= 0).any() or np.isinf(x).any() or np.isinf(y).any():
        raise ValueError("a log ratio needs positive, finite values in both arms")
    est, lo, hi = t_interval(np.log(y / x), ci, unit)
    return Interval(
        math.exp(est) if not math.isnan(est) else math.nan,
        math.exp(lo) if not math.isnan(lo) else math.nan,
        math.exp(hi) if not math.isnan(hi) else math.nan,
        f"{_ci_label(ci)} paired t of the log ratio over {x.size} {unit}",
        int(x.size),
    )


def range_interval(values, unit: str = "seeds") -> Interval:
    """The mean with the min and max of ``values``, labelled as what it is: ``"range over 3
    seeds (min-max), not a confidence interval"``."""
    x = _values("values", values)
    kind = f"range over {x.size} {unit} (min-max), not a confidence interval"
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, kind, 0)
    return Interval(float(x.mean()), float(x.min()), float(x.max()), kind, int(x.size))


def bca_interval(
    *samples,
    statistic: Callable[..., np.ndarray] | None = None,
    paired: bool = False,
    ci: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    unit: str = "runs",
) -> Interval:
    """A BCa bootstrap interval (:func:`scipy.stats.bootstrap`, ``method="BCa"``) for a
    statistic over many independent units (runs): the default statistic is the mean of one
    sample, or with two ``paired`` samples the mean of ``b - a``. ``statistic(*samples, axis)``
    must be vectorised over ``axis``. Where BCa cannot be computed (e.g. a constant sample:
    its acceleration is 0/0) the percentile interval is returned and ``kind`` says so. Not for
    3-5 seeds (use :func:`t_interval`): the bootstrap can only reshuffle the values seen."""
    from scipy import stats as sps

    _check_level(ci)
    if not samples:
        raise ValueError("bca_interval needs at least one sample")
    data = [np.asarray(s, dtype=float).reshape(-1) for s in samples]
    if paired:
        keep = ~np.any([np.isnan(d) for d in data], axis=0)
        data = [d[keep] for d in data]
    else:
        data = [d[~np.isnan(d)] for d in data]
    paired_mean = paired and len(data) == 2 and statistic is None
    if statistic is None:
        if len(data) == 1:

            def statistic(x, axis=-1):
                return np.mean(x, axis=axis)

        elif len(data) == 2 and paired:

            def statistic(x, y, axis=-1):
                return np.mean(y - x, axis=axis)

        else:
            raise ValueError("pass a statistic for more than one sample (or two paired ones)")
    n = int(min(d.size for d in data))
    with np.errstate(all="ignore"):  # e.g. the correlation of a constant sample: NaN, said below
        point = float(statistic(*data, axis=-1))
    label = f"{_ci_label(ci)} BCa bootstrap over {n} {unit}" + (" (paired)" if paired_mean else "")
    if n < 3 or math.isnan(point):
        return Interval(point, math.nan, math.nan, label, n)
    # scipy 1.15 renamed random_state to rng
    seeding = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa's 0/0 acceleration on a degenerate sample
            res = sps.bootstrap(
                tuple(data),
                statistic,
                paired=paired,
                vectorized=True,
                n_resamples=n_resamples,
                confidence_level=ci,
                method=method,
                **{seeding: np.random.default_rng(seed)},
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isnan(lo) or math.isnan(hi)):
            if method == "percentile":
                label = label.replace("BCa bootstrap", "percentile bootstrap (BCa undefined here)")
            return Interval(point, lo, hi, label, n)
    return Interval(point, math.nan, math.nan, label, n)


# --------------------------------------------------------------------------- context-label plateau
def context_plateau(N: int, B: int) -> float:
    """Accuracy of copying a uniformly chosen context label: ``1 / (N / B) = B / N``."""
    if not (isinstance(N, (int, np.integer)) and isinstance(B, (int, np.integer))) or B < 1 or N <= B:
        raise ValueError(
            f"N and B must be integers with 1 <= B < N (N/B context labels), got N={N!r}, B={B!r}"
        )
    return B / N


def icl_relative(acc, N: int, B: int):
    """ICL accuracy relative to the context-label plateau: ``(acc - p) / (1 - p)``, ``p = B / N``.

    0 at the plateau (labels copied at random from the context), 1 when perfect, negative
    below the plateau. Works on a float, a numpy array or a pandas Series alike.
    """
    p = context_plateau(N, B)
    return (acc - p) / (1 - p)


def plateau_from_config(config: Any) -> float:
    """:func:`context_plateau` of a run's config: a RunConfig, its dict, a manifest dict or a run dir."""
    cfg = _config_dict(config)
    task = cfg.get("task", {})
    if "N" not in task or "B" not in task:
        raise ValueError("the config has no task.N / task.B to compute the context-label plateau from")
    return context_plateau(int(task["N"]), int(task["B"]))


# --------------------------------------------------------------------------- config hashing
def _config_dict(config: Any) -> dict[str, Any]:
    """A plain, default-filled config dict from a RunConfig, Run, dict, manifest dict or run dir."""
    from mmicl_interp.config import ConfigError, RunConfig

    if isinstance(config, (str, Path)):
        from mmicl_interp.checkpoints import read_manifest

        config = read_manifest(config)["config"]
    if hasattr(config, "config") and not isinstance(config, Mapping):  # a Run
        config = config.config
    if isinstance(config, RunConfig):
        return config.to_dict()
    if isinstance(config, Mapping):
        data = dict(config)
        if "config" in data and isinstance(data["config"], Mapping):  # a manifest
            data = dict(data["config"])
        try:
            return RunConfig.from_dict(copy.deepcopy(data)).to_dict()
        except (ConfigError, TypeError):
            return copy.deepcopy(data)  # an older or partial config: hash it as stored
    raise ValueError(f"cannot read a config from a {type(config).__name__}")


def _drop(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = data
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def config_hash(config: Any, ignore: Sequence[str] = NON_SEMANTIC_FIELDS) -> str:
    """16 hex digits identifying what a run trains: SHA-256 of its stable config JSON.

    ``config``: a RunConfig, a Run, a config or manifest dict, or a run directory. Fields in
    ``ignore`` (dotted paths) are left out; defaults are filled first, so a dict that omits
    a default and one that states it hash alike.
    """
    data = _config_dict(config)
    for dotted in ignore:
        _drop(data, dotted)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dedupe_runs(runs: Sequence[T], config_of: Callable[[T], Any] | None = None) -> list[T]:
    """The runs with distinct configs, first of each kept, order preserved.

    Each run is anything :func:`config_hash` reads, or ``config_of(run)`` is.
    """
    seen: set[str] = set()
    out = []
    for run in runs:
        h = config_hash(run if config_of is None else config_of(run))
        if h not in seen:
            seen.add(h)
            out.append(run)
    return out


def dedupe_table(
    table: pd.DataFrame, configs: Mapping[str, Any] | None = None, *, run_column: str = "run"
) -> pd.DataFrame:
    """The rows of ``table`` whose run is the first of its config (by order of appearance).

    ``configs`` maps each run name to its config (anything :func:`config_hash` reads);
    without it the table must have a ``config_hash`` column. Raises ValueError for a run
    with no config.
    """
    if run_column not in table.columns:
        raise ValueError(f"table has no {run_column!r} column")
    runs = [str(r) for r in pd.unique(table[run_column].astype(str))]
    if configs is None:
        if "config_hash" not in table.columns:
            raise ValueError("pass configs (run -> config) or give the table a config_hash column")
        first = table.groupby(table[run_column].astype(str), sort=False)["config_hash"].first()
        hashes = {r: str(first[r]) for r in runs}
    else:
        missing = [r for r in runs if r not in configs]
        if missing:
            raise ValueError(f"no config for runs {missing}")
        hashes = {r: config_hash(configs[r]) for r in runs}
    keep, seen = set(), set()
    for r in runs:
        if hashes[r] not in seen:
            seen.add(hashes[r])
            keep.add(r)
    return table[table[run_column].astype(str).isin(keep)]


__all__ = [
    "BLOCK_RULES",
    "NON_SEMANTIC_FIELDS",
    "Interval",
    "autocorrelation",
    "bca_interval",
    "block_bootstrap_indices",
    "block_length",
    "config_hash",
    "context_plateau",
    "correlation_block_length",
    "correlation_influence",
    "dedupe_runs",
    "dedupe_table",
    "icl_relative",
    "max_block",
    "paired_log_ratio_interval",
    "paired_t_interval",
    "paired_values",
    "percentile_interval",
    "plateau_from_config",
    "range_interval",
    "t_interval",
    "t_quantile",
    "trend_change",
]
