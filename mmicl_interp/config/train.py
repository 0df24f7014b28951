"""The ``[train]`` section: optimiser, steps, eval and checkpoint schedule, device and speed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from mmicl_interp.config.errors import ConfigError, _choice, _int, _number, _positive_int
from mmicl_interp.types import OPTIMIZERS, SCHEDULE_KINDS

LR_MAX = 1e3
WEIGHT_DECAY_MAX = 1e3
CKPT_LOG_POINTS_MAX = 1000
"""More log-spaced points than this makes the schedule slow to compute (seconds per 1000)."""
STEPS_MAX = 9_999_999
"""Largest ``train.steps``: checkpoint files are named with 7 digits (``step_0001000``)."""
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:[0-9]+)?"
"""What ``train.device`` and ``--device`` accept (whether the device is present is checked
when it is used: :func:`mmicl_interp.device.resolve_device`)."""
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
ClampPattern = Literal["none", "prev_token", "induction"]
CLAMP_PATTERNS: tuple[str, ...] = get_args(ClampPattern)
"""Allowed ``train.clamp_pattern`` values (see :mod:`mmicl_interp.train.clamp`)."""
EXECUTION_FIELDS: tuple[str, ...] = ("device", "compile")
"""``[train]`` fields that say where and how a run executes, not what it trains: a run resumed or
checked with other values is the same run (results agree statistically, not bitwise)."""


@dataclass
class TrainConfig:
    """Online training: optimiser, steps, eval and checkpoint schedule, device and speed options."""

    steps: int = 1500
    batch_size: int = 128
    optimizer: str = "adam"
    """One of ``sgd, adam, adamw``."""
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.0
    """SGD momentum (ignored by Adam)."""
    eval_every: int = 100
    ckpt_schedule: str = "union"
    """One of ``log, linear, list, union`` (union = all of log + linear + list)."""
    ckpt_log_points: int = 40
    """Number of distinct log-spaced checkpoint steps (dense early)."""
    ckpt_every: int = 100
    """Spacing of linear checkpoints."""
    ckpt_steps: list[int] = field(default_factory=list)
    """Explicit checkpoint steps."""
    ckpt_dense: list[int] = field(default_factory=list)
    """``[start, stop, every]``: also a checkpoint at start, start+every, ... up to stop (e.g. around
    the ICL transition), added to whichever ``ckpt_schedule`` is chosen; empty = none."""
    threads: int = 0
    """torch threads (0 = leave torch's default)."""
    seed: int = 0
    """Seed of the training data stream (the task has its own, task.seed)."""
    device: str = "auto"
    """Where to train: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps``."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: the forward pass under ``torch.autocast(bfloat16)`` on the device;
    weights, optimiser state, eval and checkpoints stay float32."""
    compile: bool = False
    """``torch.compile`` the model for the training step (eval stays eager)."""
    stop_plateau: float = 0.0
    """Stop before ``steps`` at the first checkpoint step >= ``stop_min_step`` where the icl
    suite's accuracy moved by less than this over the last 20% of the steps so far
    (:func:`~mmicl_interp.train.plateau.trend_change`, the claims' "still moving" test);
    0 = always train ``steps``. The manifest records the step and the change (``stopped``)."""
    stop_min_step: int = 0
    """Never stop at a plateau before this step (the flat stretch before the ICL jump is a
    plateau too)."""
    clamp_pattern: str = "none"
    """Head clamping (:mod:`mmicl_interp.train.clamp`): ``none``, or ``prev_token`` / ``induction``
    to replace head ``clamp_head`` of layer ``clamp_layer``'s attention pattern by the perfect one
    (built from the task layout, through ``blocks.{l}.attn.hook_pattern``) during the updates and
    evals of steps ``clamp_start <= step < clamp_end``."""
    clamp_layer: int = 0
    clamp_head: int = 0
    clamp_start: int = 0
    clamp_end: int = 0

    def validate(self) -> None:
        _positive_int(self, "train", ("steps", "batch_size", "eval_every", "ckpt_every"))
        _int(self, "train", ("ckpt_log_points", "threads", "seed"))
        if self.steps > STEPS_MAX:
            raise ConfigError(
                "train.steps",
                f"must be an integer in [1, {STEPS_MAX}] (checkpoint names have 7 digits), got {self.steps}",
            )
        _choice(self, "train", "optimizer", OPTIMIZERS)
        _choice(self, "train", "ckpt_schedule", SCHEDULE_KINDS)
        if self.ckpt_log_points > CKPT_LOG_POINTS_MAX:
            raise ConfigError(
                "train.ckpt_log_points",
                f"must be an integer in [0, {CKPT_LOG_POINTS_MAX}], got {self.ckpt_log_points}",
            )
        _number(self, "train", "lr", 0.0, LR_MAX, low_open=True)
        _number(self, "train", "weight_decay", 0.0, WEIGHT_DECAY_MAX)
        _number(self, "train", "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(self.ckpt_steps, list) or not all(
            isinstance(s, int) and 0 <= s <= self.steps for s in self.ckpt_steps
        ):
            raise ConfigError("train.ckpt_steps", f"must be a list of integers in [0, steps={self.steps}]")
        dense = self.ckpt_dense
        if not isinstance(dense, list) or (
            dense
            and not (
                len(dense) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) for v in dense)
                and 0 <= dense[0] < dense[1] <= self.steps
                and dense[2] >= 1
            )
        ):
            raise ConfigError(
                "train.ckpt_dense",
                f"must be [] or [start, stop, every] with 0 <= start < stop <= steps={self.steps} "
                f"and every >= 1, got {dense!r}",
            )
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ConfigError("train.device", f"must be {DEVICE_CHOICES}; got {self.device!r}")
        _choice(self, "train", "precision", PRECISIONS)
        if not isinstance(self.compile, bool):
            raise ConfigError("train.compile", f"must be true or false, got {self.compile!r}")
        _number(self, "train", "stop_plateau", 0.0, 1.0)
        if (
            isinstance(self.stop_min_step, bool)
            or not isinstance(self.stop_min_step, int)
            or not (0 <= self.stop_min_step <= self.steps)
        ):
            raise ConfigError(
                "train.stop_min_step",
                f"must be an integer in [0, steps={self.steps}], got {self.stop_min_step!r}",
            )
        _choice(self, "train", "clamp_pattern", CLAMP_PATTERNS)
        _int(self, "train", ("clamp_layer", "clamp_head", "clamp_start", "clamp_end"))
        if self.clamp_pattern != "none" and not self.clamp_start < self.clamp_end:
            raise ConfigError(
                "train.clamp_end",
                f"must be an integer > clamp_start={self.clamp_start} (the clamp acts on steps "
                f"[clamp_start, clamp_end)), got {self.clamp_end}",
            )


def n_checkpoints(train: TrainConfig) -> int:
    """How many checkpoints the schedule writes, at most (without building the list)."""
    kind, n = train.ckpt_schedule, 2
    if kind in ("log", "union"):
        n += min(train.ckpt_log_points, train.steps)
    if kind in ("linear", "union"):
        n += train.steps // train.ckpt_every + 1
    if kind in ("list", "union"):
        n += len(train.ckpt_steps)
    n += n_dense_checkpoints(train)
    return min(n, train.steps + 1)


def n_dense_checkpoints(train: TrainConfig) -> int:
    """How many checkpoints ``train.ckpt_dense`` adds, at most (0 when it is empty)."""
    if not train.ckpt_dense:
        return 0
    start, stop, every = train.ckpt_dense
    return (stop - start) // every + 1
