"""Across checkpoints: does circuit strength track ICL accuracy, and when does each part form?

Every function here reads curves over a run's checkpoints: either two arrays, or the tidy
table of :func:`~mmicl_interp.analyses.tables.circuit_scores` (run, step, suite, metric,
layer, head, value). SCIENCE.md claim 5: ICL accuracy tracks induction strength across
training checkpoints.

Methods, for two curves ``x`` and ``y`` over the same ``n`` checkpoints (pairs where either
is NaN are dropped first):

- **Pearson** ``r = sum((x - mean x)(y - mean y)) / sqrt(sum((x - mean x)^2) sum((y - mean y)^2))``.
- **Spearman** ``rho`` = Pearson ``r`` of the ranks of ``x`` and of ``y`` (ties share their
  average rank).
- **Bootstrap interval** (percentile method): draw ``n`` checkpoint indices, ``n_boot``
  times (default 2000), from ``numpy.random.default_rng(seed)``; compute the statistic on
  each resample; the ``ci`` interval (default 95%) runs from the ``(1 - ci)/2`` to the
  ``(1 + ci)/2`` quantile of the resampled statistics. Resamples in which either curve is
  constant have no correlation and are left out. The checkpoints of one run are a time
  series, not independent draws, so :func:`ih_icl_correlation` uses the **moving-block
  bootstrap** (Kunsch 1989): blocks of ``block`` consecutive checkpoints, the block length
  chosen from the autocorrelation of the correlation's influence series (rule ``acf``:
  the smallest lag where it drops below ``2/sqrt(n)``; or ``politis-white``; formulas in
  :mod:`~mmicl_interp.analyses.stats`) and reported in the ``block`` column. Block 1 is the
  i.i.d. bootstrap, the default of :func:`correlation` (right across independent runs).
  Heads with the same block length are resampled with the same indices. On the shipped
  example run, L1H0 ``ih`` vs icl accuracy: Pearson r 0.966 [0.73, 0.99] with block 5,
  against [0.942, 0.980] from the i.i.d. bootstrap. :func:`format_correlation` writes one
  line ("Pearson r 0.966 [0.73, 0.99], moving-block bootstrap, block 5").
- **Degenerate input**: fewer than 3 points, or a constant curve, gives NaN (no error).
- **Onset** of a curve ``v`` over steps ``s`` (sorted by step, NaN points dropped):
  ``rise = v_final - v_0`` (last and first checkpoint); the threshold is
  ``v_0 + frac * rise`` (``frac`` = 0.5: half the final rise). The onset is the first
  crossing: with ``i`` the first checkpoint where ``v_i >= threshold``, by default it is
  **linearly interpolated** between checkpoints ``i-1`` and ``i``,
  ``s_{i-1} + (threshold - v_{i-1}) / (v_i - v_{i-1}) * (s_i - s_{i-1})``;
  with ``interpolate=False`` it is ``s_i``, the first checkpoint at or after the crossing.
  No rise (``rise <= min_rise``), or fewer than 3 points, gives NaN. A falling curve has no
  onset. The curve is not smoothed: one noisy early checkpoint can cross first.
- **Leaves the plateau** (:func:`onset` with ``rule="plateau"``): the plateau ``p`` is a given
  value or the median of the first ``n_plateau`` (default 3) checkpoints; the onset is the
  first checkpoint ``s_i`` with ``v_i > p + margin`` (default margin 0.05, absolute). No
  onset (NaN) when ``max v - p < min_rise``.
- **Resolution** of an onset (:func:`onset`, which returns an :class:`Onset`): the onset is
  only known to lie between the checkpoints ``s_{i-1} < s_i`` around the crossing, so its
  resolution is ``s_i - s_{i-1}`` (``s_1 - s_0`` when it is already at the first
  checkpoint). ``min_rise``: no onset when the curve rises by less (half-rise rule: ``v_final
  - v_0``; plateau rule: ``max v - p``); :func:`phases` uses ``min_rise = 0.05`` so plots do
  not mark onsets where nothing formed.
- **Crossing step** of an absolute ``level`` (:func:`crossing_step`): the same first-crossing
  rule with ``level`` in place of the run's own half-rise threshold, so runs that rise to
  different heights compare (e.g. steps until icl accuracy reaches 0.5); NaN if never.
- **Best head** for a measure: the head with the highest value at the run's last
  checkpoint (where the measure was scored).
- **Lead / lag**: the lead of A over B is ``onset_B - onset_A`` in steps; positive means A
  forms first (leads), negative that it lags. :func:`lead_lag` declares it "unresolved"
  when ``|lead|`` is smaller than the coarser of the two onsets' resolutions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float

from mmicl_interp.analyses.stats import (
    BLOCK_RULES,
    BlockRule,
    block_bootstrap_indices,
    correlation_block_length,
)
from mmicl_interp.analyses.tidy import COLUMNS

CorrelationMethod = Literal["pearson", "spearman"]
CORRELATION_METHODS: tuple[str, ...] = ("pearson", "spearman")
SCORE_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ("src_layer", "src_head", "position"))
"""The shared columns (:mod:`~mmicl_interp.analyses.tidy`) a score table must have."""
MIN_POINTS = 3
"""Fewer checkpoints than this give NaN correlations and onsets."""
MIN_RISE = 0.05
""":func:`phases`: a curve that rises by less has no onset (nothing formed)."""
OnsetRule = Literal["half_rise", "plateau"]
ONSET_RULES: tuple[str, ...] = ("half_rise", "plateau")


class Correlation(NamedTuple):
    """A correlation with its bootstrap interval over ``n`` checkpoints (``block`` 1: i.i.d.)."""

    value: float
    lo: float
    hi: float
    n: int
    block: int = 1
    method: str = "pearson"


# --------------------------------------------------------------------------- statistics
def _as_1d(name: str, a) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _paired(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_1d("x", x), _as_1d("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _flat(a: np.ndarray) -> np.ndarray:
    """Rows (last axis) that are constant up to float round-off."""
    spread = np.ptp(a, axis=-1)
    scale = np.maximum(1.0, np.abs(a).max(axis=-1))
    return spread <= 1e-12 * scale


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis of two equal-shape arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = (xc * yc).sum(axis=-1)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    bad = _flat(x) | _flat(y) | (den == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(bad, np.nan, num / np.where(bad, 1.0, den))
    return np.clip(r, -1.0, 1.0)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) along the last axis of a 2-D array."""
    return pd.DataFrame(a).rank(axis=1, method="average").to_numpy()


def _statistic(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """The statistic on each row of [rows, n] arrays."""
    if method == "spearman":
        x, y = _rank_rows(x), _rank_rows(y)
    return _rowwise_pearson(x, y)


def _curve_statistic(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float], method: str) -> float:
    """The statistic of two paired curves (NaN pairs dropped); NaN for fewer than 3 points."""
    x, y = _paired(x, y)
    if len(x) < MIN_POINTS:
        return math.nan
    return float(_statistic(x[None], y[None], method)[0])


def _check_method(method: str) -> None:
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method must be one of {', '.join(CORRELATION_METHODS)}; got {method!r}")


def pearson(
    x: Float[np.ndarray, " n"] | Sequence[float], y: Float[np.ndarray, " n"] | Sequence[float]
) -> float:
    """Pearson correlation of two curves; NaN for fewer than 3 points or a constant curve."""
    return _curve_statistic(x, y, "pearson")


def spearman(
    x: Float[np.ndarray, " n"] | Sequence[float], y: Float[np.ndarray, " n"] | Sequence[float]
) -> float:
    """Spearman rank correlation of two curves; NaN for fewer than 3 points or a constant curve."""
    return _curve_statistic(x, y, "spearman")


def bootstrap_indices(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` checkpoint indices drawn with replacement from a seeded numpy Generator."""
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(stats: np.ndarray, ci: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(stats, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1, got {ci!r}")


def correlation(
    x: Float[np.ndarray, " n"] | Sequence[float],
    y: Float[np.ndarray, " n"] | Sequence[float],
    *,
    method: CorrelationMethod = "pearson",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    block: int | Literal["auto"] = 1,
    block_rule: BlockRule = "acf",
) -> Correlation:
    """Correlation of two curves with a percentile-bootstrap interval (resampling checkpoints).

    Returns ``Correlation(value, lo, hi, n, block, method)``; value and interval NaN when
    fewer than 3 finite pairs or a constant curve. ``method`` is ``"pearson"`` or
    ``"spearman"``. ``block``: 1 (default) resamples checkpoints independently (for
    independent runs); an integer > 1 or ``"auto"`` (chosen by ``block_rule`` from the
    pair's autocorrelation, :func:`~mmicl_interp.analyses.stats.correlation_block_length`)
    uses the moving-block bootstrap, for the checkpoints of one run. A block longer than
    the curve is cut to its length.
    """
    _check_method(method)
    _check_ci(ci)
    b = _resolve_block(block, block_rule)
    x, y = _paired(x, y)
    n = len(x)
    bootstrap_indices(1, n_boot, seed)  # validates n_boot
    if n < MIN_POINTS:
        return Correlation(math.nan, math.nan, math.nan, n, 1, method)
    value = float(_statistic(x[None], y[None], method)[0])
    if math.isnan(value):
        return Correlation(math.nan, math.nan, math.nan, n, 1, method)
    b = correlation_block_length(x, y, rule=block_rule) if b is None else min(b, n)
    idx = block_bootstrap_indices(n, b, n_boot, seed)
    lo, hi = _interval(_statistic(x[idx], y[idx], method), ci)
    return Correlation(value, lo, hi, n, b, method)


def _resolve_block(block: int | str, rule: str) -> int | None:
    """``None`` for "auto", else the validated integer block length."""
    if rule not in BLOCK_RULES:
        raise ValueError(f"block_rule must be one of {', '.join(BLOCK_RULES)}; got {rule!r}")
    if isinstance(block, str) and block == "auto":
        return None
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block must be a positive integer or 'auto', got {block!r}")
    return int(block)


_METHOD_NAMES = {"pearson": "Pearson r", "spearman": "Spearman rho"}


def format_correlation(
    result: Correlation | pd.Series | dict, method: CorrelationMethod | None = None
) -> str:
    """One line: ``"Pearson r 0.966 [0.73, 0.99], moving-block bootstrap, block 5"``.

    ``result`` is a :class:`Correlation` or a row of :func:`ih_icl_correlation` (then
    ``method``, default ``"pearson"``, picks the columns). Block 1 reads "i.i.d. bootstrap".
    """
    if isinstance(result, Correlation):
        method = method or result.method  # type: ignore[assignment]
        value, lo, hi, block = result.value, result.lo, result.hi, result.block
    else:
        method = method or "pearson"
        value, lo, hi = result[method], result[f"{method}_lo"], result[f"{method}_hi"]
        block = result["block"] if "block" in result else 1
    _check_method(method)
    name = _METHOD_NAMES[method]
    if value is None or pd.isna(value):
        return f"{name} undefined (fewer than {MIN_POINTS} checkpoints or a constant curve)"
    how = f"moving-block bootstrap, block {int(block)}" if int(block) > 1 else "i.i.d. bootstrap"
    return f"{name} {value:.3f} [{lo:.2f}, {hi:.2f}], {how}"


# --------------------------------------------------------------------------- onsets
def _sorted_finite(steps, values) -> tuple[np.ndarray, np.ndarray]:
    s, v = _as_1d("steps", steps), _as_1d("values", values)
    if s.shape != v.shape:
        raise ValueError(f"steps and values must have the same length, got {len(s)} and {len(v)}")
    keep = np.isfinite(s) & np.isfinite(v)
    s, v = s[keep], v[keep]
    order = np.argsort(s, kind="stable")
    return s[order], v[order]


def _crossing(s: np.ndarray, v: np.ndarray, level: float, interpolate: bool) -> float:
    """First step where sorted ``v`` reaches ``level`` (NaN if never); interpolated from the point before."""
    above = v >= level
    if not above.any():
        return math.nan
    i = int(np.argmax(above))
    if i == 0 or not interpolate:
        return float(s[i])
    t = (level - v[i - 1]) / (v[i] - v[i - 1])
    return float(s[i - 1] + t * (s[i] - s[i - 1]))


def crossing_step(
    steps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    level: float,
    *,
    interpolate: bool = True,
) -> float:
    """The step where a curve first reaches an absolute ``level`` (e.g. icl accuracy 0.5).

    Unlike :func:`onset_step` (half of each run's own rise), the same level for every run,
    so curves that rise to different heights compare. Linearly interpolated from the
    checkpoint before by default; the first checkpoint when it already starts at the level;
    NaN when the curve never reaches it.
    """
    s, v = _sorted_finite(steps, values)
    return _crossing(s, v, level, interpolate)


def onset_step(
    steps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    frac: float = 0.5,
    interpolate: bool = True,
    min_rise: float = 0.0,
) -> float:
    """The step where a curve first crosses ``v_0 + frac * (v_final - v_0)``.

    Linearly interpolated between the checkpoints either side of the crossing by default;
    ``interpolate=False`` gives the first checkpoint at or after it. NaN when the curve does
    not rise by more than ``min_rise``, or has fewer than 3 finite points.
    """
    if not 0 < frac <= 1:
        raise ValueError(f"frac must lie in (0, 1], got {frac!r}")
    s, v = _sorted_finite(steps, values)
    if len(s) < MIN_POINTS:
        return math.nan
    rise = v[-1] - v[0]
    if not rise > min_rise:
        return math.nan
    # v[-1] reaches the threshold and v[0] does not, so the crossing lies after the first point
    return _crossing(s, v, v[0] + frac * rise, interpolate)


class Onset(NamedTuple):
    """An onset step and its checkpoint resolution (the spacing of the checkpoints around it).

    Both NaN when there is no onset.
    """

    step: float
    resolution: float


NO_ONSET = Onset(math.nan, math.nan)


def _resolution(s: np.ndarray, i: int) -> float:
    """Spacing of the checkpoints bracketing crossing index ``i`` (``s_1 - s_0`` for ``i = 0``)."""
    return float(s[i] - s[i - 1]) if i > 0 else float(s[1] - s[0])


def onset(
    steps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    rule: OnsetRule = "half_rise",
    frac: float = 0.5,
    interpolate: bool = True,
    plateau: float | None = None,
    n_plateau: int = 3,
    margin: float = 0.05,
    min_rise: float = 0.0,
) -> Onset:
    """The onset of a curve with its checkpoint resolution; :data:`NO_ONSET` when none.

    ``rule="half_rise"``: the first crossing of ``v_0 + frac * (v_final - v_0)`` (as
    :func:`onset_step`; interpolated unless ``interpolate=False``); no onset unless
    ``v_final - v_0`` is > 0 and >= ``min_rise``. ``rule="plateau"``: the first checkpoint
    where ``v > p + margin``, ``p`` = ``plateau`` or the median of the first ``n_plateau``
    checkpoints; no onset unless ``max v - p`` is > 0 and >= ``min_rise``. Fewer than 3
    finite points: no onset. The resolution is the spacing of the two checkpoints between
    which the curve crossed (module docstring).
    """
    if rule not in ONSET_RULES:
        raise ValueError(f"rule must be one of {', '.join(ONSET_RULES)}; got {rule!r}")
    if not 0 < frac <= 1:
        raise ValueError(f"frac must lie in (0, 1], got {frac!r}")
    if not isinstance(n_plateau, (int, np.integer)) or n_plateau < 1:
        raise ValueError(f"n_plateau must be a positive integer, got {n_plateau!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    s, v = _sorted_finite(steps, values)
    if len(s) < MIN_POINTS:
        return NO_ONSET
    if rule == "half_rise":
        rise = v[-1] - v[0]
        if not (rise > 0 and rise >= min_rise):
            return NO_ONSET
        level = v[0] + frac * rise
        i = int(np.argmax(v >= level))
        return Onset(_crossing(s, v, level, interpolate), _resolution(s, i))
    p = float(np.median(v[:n_plateau])) if plateau is None else float(plateau)
    rise = float(v.max()) - p
    above = v > p + margin
    if not (rise > 0 and rise >= min_rise) or not above.any():
        return NO_ONSET
    i = int(np.argmax(above))
    return Onset(float(s[i]), _resolution(s, i))


class LeadLag(NamedTuple):
    """Lead of onset A over onset B (``B - A``; > 0: A first), the resolution, and the verdict.

    ``verdict``: ``"lead"``, ``"lag"``, ``"unresolved"`` (``|lead|`` below the resolution)
    or None when either onset is missing.
    """

    lead: float
    resolution: float
    verdict: str | None


def lead_lag(a: Onset, b: Onset) -> LeadLag:
    """A's lead over B; "unresolved" when ``|lead| < max(resolution_A, resolution_B)``."""
    lead = b.step - a.step
    res = max(a.resolution, b.resolution)
    if math.isnan(lead) or math.isnan(res):
        return LeadLag(lead, res, None)
    if abs(lead) < res:
        return LeadLag(lead, res, "unresolved")
    return LeadLag(lead, res, "lead" if lead > 0 else "lag")


# --------------------------------------------------------------------------- tidy tables
def check_scores(scores: pd.DataFrame, name: str = "scores") -> None:
    """Raise a ValueError naming ``name`` unless it is a non-empty tidy table."""
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame (the tidy table), got {type(scores).__name__}")
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; a tidy table has {', '.join(SCORE_COLUMNS)}")
    if scores.empty:
        raise ValueError(f"{name} is empty: no rows to analyse")


def runs_of(scores: pd.DataFrame) -> list[str]:
    """The runs in a tidy table, in order of appearance."""
    return [str(r) for r in pd.unique(scores["run"].astype(str))]


def select_run(scores: pd.DataFrame, run: str | None = None) -> pd.DataFrame:
    """The rows of one run; ``run`` may be omitted when the table holds a single run."""
    check_scores(scores)
    runs = runs_of(scores)
    if run is None:
        if len(runs) > 1:
            raise ValueError(f"run must name one of the table's runs ({', '.join(runs)}); it holds several")
        return scores
    if run not in runs:
        raise ValueError(f"run {run!r} is not in the table; runs: {', '.join(runs)}")
    return scores[scores["run"].astype(str) == run]


def _metric_rows(scores: pd.DataFrame, metric: str, suite: str | None) -> pd.DataFrame:
    rows = scores[scores["metric"].astype(str) == metric]
    if suite is not None:
        rows = rows[rows["suite"].astype(str) == suite]
    return rows


def _require_metric(scores: pd.DataFrame, metric: str, suite: str | None, per_head: bool) -> pd.DataFrame:
    rows = _metric_rows(scores, metric, suite)
    rows = rows[rows["head"].notna()] if per_head else rows[rows["layer"].isna() & rows["head"].isna()]
    if rows.empty:
        kind = "per-head" if per_head else "model-level"
        have = sorted(map(str, pd.unique(scores["metric"].astype(str))))
        where = f" on suite {suite!r}" if suite is not None else ""
        raise ValueError(
            f"metric {metric!r} has no {kind} rows{where}; the table has metrics: {', '.join(have)}"
        )
    return rows


def head_table(scores: pd.DataFrame, metric: str, *, suite: str | None = "icl") -> pd.DataFrame:
    """One run's per-head curves: index step, columns (layer, head) as ints.

    Duplicate rows for the same checkpoint and head are averaged. Raises ValueError when the
    metric has no per-head rows.
    """
    rows = _require_metric(scores, metric, suite, per_head=True)
    table = rows.pivot_table(index="step", columns=["layer", "head"], values="value", aggfunc="mean")
    table.columns = pd.MultiIndex.from_tuples(
        [(int(a), int(b)) for a, b in table.columns], names=["layer", "head"]
    )
    return table.sort_index().sort_index(axis=1)


def model_curve(scores: pd.DataFrame, metric: str = "accuracy", *, suite: str = "icl") -> pd.Series:
    """One run's model-level curve (e.g. icl accuracy), indexed by step."""
    rows = _require_metric(scores, metric, suite, per_head=False)
    return rows.groupby("step")["value"].mean().sort_index().astype(float)


def best_head(scores: pd.DataFrame, metric: str = "ih", *, suite: str | None = "icl") -> tuple[int, int]:
    """``(layer, head)`` with the highest ``metric`` at the last checkpoint where it was scored."""
    table = head_table(scores, metric, suite=suite)
    final = table.ffill().iloc[-1]
    if final.isna().all():
        raise ValueError(f"metric {metric!r} has no finite value to pick a best head from")
    layer, head = final.idxmax()
    return int(layer), int(head)


def ih_icl_correlation(
    scores: pd.DataFrame,
    *,
    measure: str = "ih",
    suite: str = "icl",
    accuracy_suite: str = "icl",
    icl_metric: str = "accuracy",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    block: int | Literal["auto"] = "auto",
    block_rule: BlockRule = "acf",
) -> pd.DataFrame:
    """Correlate each head's ``measure`` (default induction strength) with icl accuracy.

    ``icl_metric`` names the model-level ICL curve on ``accuracy_suite`` (default
    ``"accuracy"``; e.g. ``"icl_score"`` on suite ``"text"`` for a checkpoint series of a
    real LM, where a negative correlation means the loss falls with context as the head forms).
    Per run and head, over the checkpoints where both were scored: Pearson and Spearman with
    moving-block bootstrap intervals (``block="auto"``: block length from the pair's
    autocorrelation by ``block_rule``; an integer fixes it; 1 is the i.i.d. bootstrap).
    Columns: run, layer, head, best (the run's best head: highest final measure), pearson,
    pearson_lo, pearson_hi, spearman, spearman_lo, spearman_hi, n, block (the block length
    used for both; 1 for a constant curve).
    """
    check_scores(scores)
    _check_ci(ci)
    _resolve_block(block, block_rule)
    bootstrap_indices(1, n_boot, seed)  # validates n_boot
    rows: list[dict] = []
    for run in runs_of(scores):
        part = select_run(scores, run)
        table = head_table(part, measure, suite=suite)
        acc = model_curve(part, icl_metric, suite=accuracy_suite)
        best = best_head(part, measure, suite=suite)
        common = table.index.intersection(acc.index)
        for layer, head in table.columns:
            x = table.loc[common, (layer, head)].to_numpy(float)
            y = acc.loc[common].to_numpy(float)
            row = dict(run=run, layer=layer, head=head, best=(layer, head) == best)
            n, used = 0, 1
            for method in CORRELATION_METHODS:
                res = correlation(
                    x, y, method=method, n_boot=n_boot, ci=ci, seed=seed, block=block, block_rule=block_rule
                )
                row.update({method: res.value, f"{method}_lo": res.lo, f"{method}_hi": res.hi})
                n, used = res.n, res.block
            row["n"] = n
            row["block"] = used
            rows.append(row)
    out = pd.DataFrame(rows)
    return out.astype({"layer": "Int64", "head": "Int64", "best": bool, "n": int, "block": int})


PHASE_COLUMNS: tuple[str, ...] = (
    "run",
    "prev_token_layer",
    "prev_token_head",
    "prev_token_onset",
    "induction_layer",
    "induction_head",
    "induction_onset",
    "icl_onset",
    "lead_prev_token_over_induction",
    "lead_induction_over_icl",
    "lead_prev_token_over_icl",
    "prev_token_resolution",
    "induction_resolution",
    "icl_resolution",
    "lead_prev_token_over_induction_verdict",
    "lead_induction_over_icl_verdict",
    "lead_prev_token_over_icl_verdict",
)


def _head_onset(part: pd.DataFrame, metric: str, suite: str | None, **kw) -> tuple[object, object, Onset]:
    """(layer, head, onset) of the best head's curve; NA / no onset when the metric is absent."""
    if _metric_rows(part, metric, suite)["head"].notna().sum() == 0:
        return pd.NA, pd.NA, NO_ONSET
    layer, head = best_head(part, metric, suite=suite)
    curve = head_table(part, metric, suite=suite)[(layer, head)].dropna()
    return layer, head, onset(curve.index.to_numpy(), curve.to_numpy(), **kw)


def phases(
    scores: pd.DataFrame,
    *,
    prev_token_measure: str = "prev_token_label",
    induction_measure: str = "ih",
    suite: str = "icl",
    accuracy_suite: str = "icl",
    icl_metric: str = "accuracy",
    frac: float = 0.5,
    interpolate: bool = True,
    rule: OnsetRule = "half_rise",
    min_rise: float = MIN_RISE,
    n_plateau: int = 3,
    margin: float = 0.05,
) -> pd.DataFrame:
    """Onsets of previous-token formation, induction formation and icl accuracy, and their leads.

    Per run: the best head of ``prev_token_measure`` and of ``induction_measure`` (highest
    final value), the onset step of each curve and of icl accuracy (:func:`onset` with
    ``rule``: half of the final rise by default, or leaving the initial plateau), each
    onset's checkpoint resolution, and the leads (positive = the first named forms earlier)
    with a verdict: lead, lag, or unresolved when below the coarser resolution. A curve that
    rises by less than ``min_rise`` (default 0.05) has no onset; a missing measure gives
    NA/NaN. ``icl_metric`` (default ``"accuracy"``) names the model-level ICL curve on
    ``accuracy_suite`` whose onset is ``icl_onset``. Columns: :data:`PHASE_COLUMNS`.
    """
    check_scores(scores)
    kw = dict(frac=frac, interpolate=interpolate, rule=rule, min_rise=min_rise, n_plateau=n_plateau)
    kw["margin"] = margin
    rows = []
    for run in runs_of(scores):
        part = select_run(scores, run)
        pl, ph, prev = _head_onset(part, prev_token_measure, suite, **kw)
        il, ih, ind = _head_onset(part, induction_measure, suite, **kw)
        acc_rows = _metric_rows(part, icl_metric, accuracy_suite)
        if (acc_rows["layer"].isna() & acc_rows["head"].isna()).any():
            acc = model_curve(part, icl_metric, suite=accuracy_suite)
            icl = onset(acc.index.to_numpy(), acc.to_numpy(), **kw)
        else:
            icl = NO_ONSET
        leads = (lead_lag(prev, ind), lead_lag(ind, icl), lead_lag(prev, icl))
        values = (run, pl, ph, prev.step, il, ih, ind.step, icl.step, *(x.lead for x in leads))
        values += (prev.resolution, ind.resolution, icl.resolution, *(x.verdict for x in leads))
        rows.append(dict(zip(PHASE_COLUMNS, values, strict=True)))
    out = pd.DataFrame(rows, columns=list(PHASE_COLUMNS))
    return out.astype({c: "Int64" for c in PHASE_COLUMNS if c.endswith(("_layer", "_head"))})


__all__ = [
    "CORRELATION_METHODS",
    "Correlation",
    "LeadLag",
    "MIN_RISE",
    "NO_ONSET",
    "ONSET_RULES",
    "Onset",
    "PHASE_COLUMNS",
    "best_head",
    "bootstrap_indices",
    "check_scores",
    "correlation",
    "crossing_step",
    "format_correlation",
    "head_table",
    "ih_icl_correlation",
    "lead_lag",
    "model_curve",
    "onset",
    "onset_step",
    "pearson",
    "phases",
    "runs_of",
    "select_run",
    "spearman",
]
