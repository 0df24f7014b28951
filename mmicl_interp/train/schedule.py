"""Checkpoint schedules: log-spaced (dense early, where circuits form), linear, explicit, union.

Every schedule includes step 0 (the untrained model) and the final step. ``train.ckpt_dense
= [start, stop, every]`` adds a dense linear stretch (:func:`dense_steps`) to any of them, so
the steps around a transition (e.g. where icl jumps) are resolved finely without
checkpointing the whole run that often.
"""

from __future__ import annotations

import numpy as np

from mmicl_interp.config import TrainConfig


def log_steps(total: int, points: int) -> list[int]:
    """``points`` distinct integer steps spaced evenly in log(step) over [1, total]."""
    if points <= 0 or total <= 0:
        return []
    points = min(points, total)
    n = points
    while True:
        steps = np.unique(np.round(np.geomspace(1, total, n)).astype(int))
        if len(steps) >= points or n > 50 * points:
            break
        n += 1
    if len(steps) > points:  # keep the densest-early subset of the requested size
        keep = np.unique(np.round(np.linspace(0, len(steps) - 1, points)).astype(int))
        steps = steps[keep]
    return [int(s) for s in steps]


def linear_steps(total: int, every: int) -> list[int]:
    """0, every, 2*every, ... up to total."""
    return list(range(0, total + 1, every))


def dense_steps(dense: list[int]) -> list[int]:
    """``start, start + every, ...`` up to ``stop`` (inclusive when it lands on it) for ``[start, stop,
    every]``; ``[]`` for an empty list."""
    if not dense:
        return []
    start, stop, every = dense
    return list(range(start, stop + 1, every))


def checkpoint_steps(train: TrainConfig) -> list[int]:
    """The sorted checkpoint steps of a training config (always with 0 and the last step)."""
    kind, total = train.ckpt_schedule, train.steps
    steps: set[int] = {0, total}
    if kind in ("log", "union"):
        steps.update(log_steps(total, train.ckpt_log_points))
    if kind in ("linear", "union"):
        steps.update(linear_steps(total, train.ckpt_every))
    if kind in ("list", "union"):
        steps.update(train.ckpt_steps)
    steps.update(dense_steps(train.ckpt_dense))
    return sorted(steps)


def eval_steps(train: TrainConfig) -> list[int]:
    """Steps at which all eval suites are scored: every ``eval_every`` and every checkpoint."""
    return sorted(set(linear_steps(train.steps, train.eval_every)) | set(checkpoint_steps(train)))
