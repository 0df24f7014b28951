"""The training plateau test, shared by ``train.stop_plateau`` and the claims' "still moving"
check (:mod:`~mmicl_interp.sweep.claims`), so both apply one rule.

It sits in ``train`` (below ``analyses``) because the trainer needs it while it runs;
:mod:`~mmicl_interp.analyses.stats` re-exports it beside the other statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from jaxtyping import Float


def trend_change(
    steps: Float[np.ndarray, " n"] | Sequence[float],
    values: Float[np.ndarray, " n"] | Sequence[float],
    tail: float = 0.2,
) -> float:
    """How much ``values`` moved over the last ``tail`` of ``steps``: ``|b| (s_last - s_first)``
    with ``b`` the least-squares slope over the evals at steps >= ``(1 - tail) * max(steps)``
    (``|y_last - y_first|`` with 2 evals there; nan with fewer than 2)."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"steps and values must be 1-d of one length, got {x.shape} and {y.shape}")
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail!r}")
    if len(x) == 0:
        return math.nan
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    keep = x >= (1 - tail) * x[-1]
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return math.nan
    if len(x) < 3:
        return float(abs(y[-1] - y[0]))
    return float(abs(np.polyfit(x, y, 1)[0]) * (x[-1] - x[0]))


__all__ = ["trend_change"]
