"""Run configuration: dataclasses loaded from TOML, validated field by field.

A config file has three sections, ``[task]``, ``[model]`` and ``[train]``, whose keys are
the names of SCIENCE.md (K, L, D, N, B, p_B, p_C, eps, alpha, no_repeats, ...). Every bad
value raises :class:`ConfigError` naming the field (``section.key``) and what is allowed,
so the CLI can print one line and exit with status 2. Every number must be finite and in
its range (no ``inf``, no ``nan``).

:func:`check_resources` adds the checks that depend on the machine (memory, disk, CPU count);
``train()`` calls it before any work, so a config too big for this machine is refused with
the estimate instead of crashing minutes later.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from mmicl_interp.types import (
    MLP_TYPES,
    NORM_TYPES,
    OPTIMIZERS,
    POSITION_TYPES,
    SCHEDULE_KINDS,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The shipped configs (package data, so an installed copy has them too)."""


class ConfigError(ValueError):
    """A config value is invalid; ``field`` names it as ``section.key``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class TaskConfig:
    """The unimodal Gaussian-mixture few-shot task (SCIENCE.md section 1)."""

    K: int = 8192
    """Number of training classes (class diversity, the main data-complexity knob)."""
    L: int = 32
    """Number of labels; class k has label k mod L."""
    D: int = 64
    """Feature dimension of items and label vectors."""
    N: int = 8
    """Exemplar (item, label) pairs per context."""
    B: int = 2
    """Burstiness: copies of each class in a bursty context (0 = no bursty sequences)."""
    p_B: float = 1.0
    """Fraction of bursty sequences."""
    p_C: float = 0.0
    """Fraction of sequences drawn from novel classes."""
    eps: float = 0.1
    """Within-class noise."""
    alpha: float = 0.0
    """Zipf exponent of the class distribution (P(k) ~ k^-alpha)."""
    no_repeats: bool = False
    """Bursty contexts use distinct labels."""
    K_c: int = 128
    """Size of each fresh set of novel classes."""
    seed: int = 0
    """Seed of the task itself (class means, label vectors) and of the training data."""
    eval_seed: int = 1
    """Seed of the four eval suites, drawn once per run."""
    eval_size: int = 1000
    """Sequences per eval suite."""

    def validate(self) -> None:
        _positive_int(self, "task", ("K", "D", "N", "K_c", "eval_size"))
        _int(self, "task", ("seed", "eval_seed", "B", "L"))
        if self.L < 2:
            raise ConfigError("task.L", f"must be an integer >= 2, got {self.L}")
        if self.K % self.L != 0:
            raise ConfigError("task.K", f"must be divisible by L={self.L}, got K={self.K}")
        _validate_context(self, ("eps", "alpha"))
        if self.no_repeats:
            _check_zipf_labels("alpha", self.alpha, self.K, self.N // self.B if self.B else 0)
        if not isinstance(self.no_repeats, bool):
            raise ConfigError("task.no_repeats", f"must be true or false, got {self.no_repeats!r}")
        n_ctx_classes = self.N // self.B if self.B else self.N
        if self.no_repeats and n_ctx_classes > self.L:
            raise ConfigError(
                "task.no_repeats",
                f"needs N/B <= L distinct labels per context, got N/B={n_ctx_classes}, L={self.L}",
            )
        if self.no_repeats and self.K_c % self.L != 0:
            raise ConfigError("task.K_c", f"must be divisible by L={self.L} when no_repeats, got {self.K_c}")
        if self.B and self.N // self.B > self.K_c:
            raise ConfigError("task.K_c", f"must be >= N/B={self.N // self.B}, got {self.K_c}")


M1_POOLS: tuple[str, ...] = ("partners", "all")
"""Allowed ``task.m1_pool`` values of a multimodal task."""


@dataclass
class MultimodalTaskConfig:
    """The two-modality task (SCIENCE.md section 4): M1 ("primary") and M2 ("secondary").

    Exemplars are triplets (M1 item, M2 item, label); M2 class k2 has label k2 mod L2 and
    the M2 labels are the first L2 of the M1 label vectors. N, B, p_B, p_C and no_repeats
    are shared; alpha, eps (and K, D) are per modality.

    Joint-label variant (``joint_labels = true``): M1 class k1 has group ``k1 mod G1``, M2
    class k2 has group ``k2 mod G2``, the two classes of an exemplar are drawn independently
    and its label is ``group(m1) * G2 + group(m2)``, so both modalities are needed. The label
    space is then the G1*G2 joint labels, hence ``L2 = G1 * G2`` (<= L1).
    """

    K1: int = 8192
    L1: int = 32
    D1: int = 32
    alpha1: float = 0.0
    eps1: float = 0.1
    K2: int = 64
    L2: int = 32
    D2: int = 32
    alpha2: float = 0.0
    eps2: float = 0.1
    N: int = 8
    B: int = 2
    p_B: float = 1.0
    p_C: float = 0.0
    no_repeats: bool = False
    K_c: int = 128
    seed: int = 0
    eval_seed: int = 1
    eval_size: int = 1000
    joint_labels: bool = False
    """Joint-label variant: label = group(m1) * G2 + group(m2) (both modalities needed)."""
    G1: int = 0
    """Joint labels only: number of M1 groups (class k1 in group k1 mod G1); 0 otherwise."""
    G2: int = 0
    """Joint labels only: number of M2 groups (class k2 in group k2 mod G2); 0 otherwise."""
    m1_pool: str = "partners"
    """The M1 class of a known exemplar of M2 class k2: ``partners`` (its fixed partner) or
    ``all`` (per context slot, a fresh M1 class of label k2 mod L2, uniform over all K1
    classes: multimodal training on high-K1 M1 data). Not with joint labels; needs alpha1 = 0."""

    def validate(self) -> None:
        _positive_int(self, "task", ("K1", "K2", "D1", "D2", "N", "K_c", "eval_size"))
        _choice(self, "task", "m1_pool", M1_POOLS)
        if self.m1_pool == "all" and self.joint_labels:
            raise ConfigError("task.m1_pool", "must be partners with joint_labels = true (they pair freely)")
        if self.m1_pool == "all" and self.alpha1 != 0:
            raise ConfigError(
                "task.alpha1", f"must be 0 with m1_pool = all (uniform M1 classes), got {self.alpha1}"
            )
        _int(self, "task", ("seed", "eval_seed", "B", "L1", "L2"))
        if self.L1 < 2:
            raise ConfigError("task.L1", f"must be an integer >= 2, got {self.L1}")
        if not 2 <= self.L2 <= self.L1:
            raise ConfigError("task.L2", f"must be an integer in [2, L1={self.L1}], got {self.L2}")
        if self.K1 % self.L1 != 0:
            raise ConfigError("task.K1", f"must be divisible by L1={self.L1}, got K1={self.K1}")
        if self.K2 % self.L2 != 0:
            raise ConfigError("task.K2", f"must be divisible by L2={self.L2}, got K2={self.K2}")
        _validate_context(self, ("eps1", "eps2", "alpha1", "alpha2"))
        n_ctx_classes = self.N // self.B if self.B else self.N
        if self.no_repeats and n_ctx_classes > self.L2:
            raise ConfigError(
                "task.no_repeats",
                f"needs N/B <= L2 distinct labels per context, got N/B={n_ctx_classes}, L2={self.L2}",
            )
        if self.K_c % self.L2 != 0:
            raise ConfigError("task.K_c", f"must be divisible by L2={self.L2}, got {self.K_c}")
        self._validate_joint()
        n_slots = self.N // self.B if self.B else 0
        if self.no_repeats and not self.joint_labels:
            _check_zipf_labels("alpha2", self.alpha2, self.K2, n_slots)
        elif self.no_repeats:  # a joint label's probability is P(group 1) * P(group 2)
            _check_zipf_labels("alpha1", self.alpha1, self.K1, min(n_slots, self.G1), 0.5)
            _check_zipf_labels("alpha2", self.alpha2, self.K2, min(n_slots, self.G2), 0.5)

    def _validate_joint(self) -> None:
        if not isinstance(self.joint_labels, bool):
            raise ConfigError("task.joint_labels", f"must be true or false, got {self.joint_labels!r}")
        _int(self, "task", ("G1", "G2"))
        if not self.joint_labels:
            for name in ("G1", "G2"):
                if getattr(self, name) != 0:
                    raise ConfigError(
                        f"task.{name}",
                        f"applies only with joint_labels = true; leave it 0, got {getattr(self, name)}",
                    )
            return
        for name in ("G1", "G2"):
            if getattr(self, name) < 2:
                raise ConfigError(
                    f"task.{name}",
                    f"must be an integer >= 2 when joint_labels = true, got {getattr(self, name)}",
                )
        n_joint = self.G1 * self.G2
        if n_joint > self.L1:
            raise ConfigError(
                "task.G2",
                f"needs G1*G2 <= L1={self.L1} joint labels, got G1*G2={self.G1}*{self.G2}={n_joint}",
            )
        if n_joint != self.L2:
            raise ConfigError(
                "task.L2",
                f"must equal G1*G2={n_joint} (the joint label space) when joint_labels = true, got {self.L2}",
            )
        if self.K1 % self.G1 != 0:
            raise ConfigError(
                "task.K1", f"must be divisible by G1={self.G1} when joint_labels, got K1={self.K1}"
            )
        if self.K2 % self.G2 != 0:
            raise ConfigError(
                "task.K2", f"must be divisible by G2={self.G2} when joint_labels, got K2={self.K2}"
            )

    @property
    def L(self) -> int:
        """Number of read-out labels (the shared label space, L1)."""
        return self.L1

    @property
    def D(self) -> int:
        """Width of a packed input vector: D1 columns for M1 items and labels, then D2 for M2."""
        return self.D1 + self.D2

    @property
    def n_ctx(self) -> int:
        return 3 * self.N + 2


@dataclass
class PipelineConfig:
    """Stage-2 training (SCIENCE.md section 4): start from a stage-1 run, freeze parts."""

    init_from: str = ""
    """A stage-1 run directory: its decoder weights, label vectors and M1 class means are
    loaded from its files (never re-derived from seeds). Empty: train from scratch."""
    encoder_from: str = ""
    """A pretrained encoder run (``kind = "encoder"``): its encoder weights and M2 class means
    are loaded from its files. Empty: the encoder (if any) starts fresh."""
    freeze: list[str] = field(default_factory=list)
    """Parts that do not train: any of embed, blocks, ln_final, readout, projector, encoder."""
    early_fusion: bool = False
    """The control: the same multimodal training from scratch (needs init_from empty)."""

    def validate(self) -> None:
        for name in ("init_from", "encoder_from"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"pipeline.{name}", f"must be a run directory path, got {getattr(self, name)!r}"
                )
        if not isinstance(self.freeze, list) or any(p not in FREEZABLE for p in self.freeze):
            raise ConfigError(
                "pipeline.freeze",
                f"must be a list of parts among {', '.join(FREEZABLE)}; got {self.freeze!r}",
            )
        if self.early_fusion and self.init_from:
            raise ConfigError("pipeline.early_fusion", "means training from scratch: leave init_from empty")


EPS_MAX = 1e6
"""Largest within-class noise: beyond it an item is noise to 1 part in a million (and eps^2 overflows)."""
LR_MAX = 1e3
WEIGHT_DECAY_MAX = 1e3
INIT_STD_MAX = 1e2
CKPT_LOG_POINTS_MAX = 1000
SEED_MAX = 2**63 - 1
"""Largest seed (torch generators take a signed 64-bit seed); every seed is in [0, SEED_MAX]."""
STEPS_MAX = 9_999_999
"""Largest ``train.steps``: checkpoint files are named with 7 digits (``step_0001000``)."""
"""More log-spaced points than this makes the schedule slow to compute (seconds per 1000)."""
_FLOAT32_TINY = 1.2e-38  # smallest normal float32

FREEZABLE: tuple[str, ...] = ("embed", "blocks", "ln_final", "readout", "projector", "encoder")
RUN_KINDS: tuple[str, ...] = ("unimodal", "multimodal", "encoder")
ENCODERS: tuple[str, ...] = ("none", "mlp")
MLP_INITS: tuple[str, ...] = ("normal", "torch_default")
EMBED_INITS: tuple[str, ...] = ("unit", "init_std")


@dataclass
class ModelConfig:
    """The small hooked decoder (SCIENCE.md section 3)."""

    positions: str = "onehot"
    """One of ``onehot, learned, rope, rope_paper, alibi, none``."""
    n_max: int = 32
    """Largest N the position block is sized for: the one-hot block has width 2*n_max+1."""
    norm: str = "rms"
    """One of ``rms, ln, none`` (pre-norm)."""
    mlp: str = "none"
    """One of ``none, gelu, swiglu, paper_gated``."""
    n_layers: int = 2
    n_heads: int = 1
    d_embed: int | None = None
    """Width of the embedded features; None feeds the D-dim vectors in unprojected."""
    d_head: int | None = None
    """Head width; None gives d_model // n_heads."""
    d_mlp: int | None = None
    """MLP hidden width; None gives d_model for paper_gated (as published), else 4 * d_model."""
    use_w_o: bool | str = True
    """False drops W_O (only for one head with d_head = d_model, as in Reddy and the paper);
    ``"auto"`` keeps it only when n_heads > 1, as the published code does."""
    attn_bias: bool = False
    """Trainable attention biases b_Q, b_K, b_V, b_O (the paper has none; they stay zero)."""
    rope_theta: float = 10000.0
    d_proj: int | None = None
    """Hidden width of the multimodal projector (Linear, GELU, Linear: D2 -> D1); None = D1."""
    encoder: str = "none"
    """M2 encoder before the projector: ``none`` or ``mlp`` (Linear, GELU, Linear)."""
    encoder_hidden: int = 64
    """Hidden width of the MLP encoder."""
    d_encoder: int | None = None
    """Output width of the encoder (the projector's input); None = D2."""
    init_std: float = 0.02
    """Standard deviation of the N(0, init_std^2) init of the weight matrices (W_Q, W_K, W_V,
    W_O, W_U; the MLP's under ``mlp_init = "normal"``)."""
    mlp_init: str = "normal"
    """Init of the block MLPs: ``normal`` (weights N(0, init_std^2), biases 0) or
    ``torch_default`` (what ``nn.Linear`` leaves, and so the published code, whose MLP init is
    never called: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)); at width 129 the
    weights' std is 0.051, 2.5x init_std). This alone moves the paper model's ICL/IWL boundary
    (see analyses/results/published_ablation.md)."""
    readout_bias: bool = True
    """A trainable read-out bias b_U; false keeps b_U at zero (a buffer), as published."""
    embed_init: str = "unit"
    """Init of the input embedding W_E (only with d_embed): ``unit`` draws N(0, 1/d_embed), so
    an embedded item keeps its norm (about 1, like the one-hot block); ``init_std`` draws
    N(0, init_std^2), which shrinks items about 10x at d_embed 32 and keeps the model on the
    context-label plateau (the default before 2026-12)."""
    seed: int = 0
    """Seed of the weight initialisation."""

    def has_w_o(self) -> bool:
        """Whether the attention layers have W_O (``use_w_o``, with ``"auto"`` resolved)."""
        return self.n_heads > 1 if self.use_w_o == "auto" else bool(self.use_w_o)

    def validate(self) -> None:
        _choice(self, "model", "positions", POSITION_TYPES)
        _choice(self, "model", "norm", NORM_TYPES)
        _choice(self, "model", "mlp", MLP_TYPES)
        _positive_int(self, "model", ("n_layers", "n_heads", "n_max"))
        _choice(self, "model", "encoder", ENCODERS)
        _positive_int(self, "model", ("encoder_hidden",))
        for name in ("d_embed", "d_head", "d_mlp", "d_proj", "d_encoder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"model.{name}", f"must be a positive integer or unset, got {value!r}")
        _number(self, "model", "init_std", 0.0, INIT_STD_MAX, low_open=True)
        _number(self, "model", "rope_theta", 1.0)
        _choice(self, "model", "mlp_init", MLP_INITS)
        _choice(self, "model", "embed_init", EMBED_INITS)
        if not isinstance(self.use_w_o, bool) and self.use_w_o != "auto":
            raise ConfigError("model.use_w_o", f'must be true, false or "auto", got {self.use_w_o!r}')


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
    (:func:`~mmicl_interp.analyses.stats.trend_change`, the claims' "still moving" test);
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


@dataclass
class RunConfig:
    """A whole run: the task, the model and how it is trained."""

    task: TaskConfig | MultimodalTaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    name: str = "run"
    kind: str = "unimodal"
    """``unimodal`` (task keys K, L, D, ...), ``multimodal`` (K1, K2, D1, D2, ...) or ``encoder``
    (pretrain the M2 encoder on K2-way classification of the multimodal task's M2 items)."""

    def validate(self) -> RunConfig:
        """Check every field; raise :class:`ConfigError` on the first bad one."""
        if self.kind not in RUN_KINDS:
            raise ConfigError("kind", f"must be one of {', '.join(RUN_KINDS)}; got {self.kind!r}")
        want = TaskConfig if self.kind == "unimodal" else MultimodalTaskConfig
        if not isinstance(self.task, want):
            raise ConfigError("task", f"a {self.kind} run needs a {want.__name__}")
        self.task.validate()
        self.model.validate()
        self.train.validate()
        self.pipeline.validate()
        for section, key in (("task", "seed"), ("task", "eval_seed"), ("model", "seed"), ("train", "seed")):
            seed = getattr(getattr(self, section), key)
            if isinstance(seed, int) and not 0 <= seed <= SEED_MAX:
                raise ConfigError(f"{section}.{key}", f"must be an integer in [0, {SEED_MAX}], got {seed}")
        pl = self.pipeline
        if self.kind != "multimodal" and (pl.init_from or pl.freeze or pl.encoder_from):
            raise ConfigError("pipeline", 'init_from, encoder_from and freeze apply to kind = "multimodal"')
        if self.kind == "encoder" and self.model.encoder == "none":
            raise ConfigError("model.encoder", 'an encoder run needs an encoder: set model.encoder = "mlp"')
        if pl.encoder_from and self.model.encoder == "none":
            raise ConfigError("model.encoder", 'pipeline.encoder_from needs model.encoder = "mlp"')
        self._validate_clamp()
        if self.kind == "encoder":
            if self.train.stop_plateau > 0:  # it watches the icl suite; an encoder run has only test
                raise ConfigError(
                    "train.stop_plateau", "watches the icl suite, which an encoder run has not: leave it 0"
                )
            return self  # single vectors: no sequence, no positions
        n_ctx = self.task.n_ctx if self.kind == "multimodal" else 2 * self.task.N + 1
        if n_ctx > 2 * self.model.n_max + 1:
            raise ConfigError(
                "model.n_max",
                f"must give 2*n_max+1 >= the sequence length {n_ctx} (the model's largest context), "
                f"got {self.model.n_max}",
            )
        self._validate_decoder_shape()
        return self

    def _validate_clamp(self) -> None:
        """``train.clamp_layer`` / ``clamp_head`` name a head of the decoder (and there is one)."""
        tc, mc = self.train, self.model
        if tc.clamp_pattern == "none":
            return
        if self.kind == "encoder":
            raise ConfigError("train.clamp_pattern", 'an encoder run has no attention heads: leave it "none"')
        for key, count, what in (
            ("clamp_layer", mc.n_layers, "model.n_layers"),
            ("clamp_head", mc.n_heads, "model.n_heads"),
        ):
            value = getattr(tc, key)
            if value >= count:
                raise ConfigError(
                    f"train.{key}", f"must be an integer in [0, {count - 1}] ({what} = {count}), got {value}"
                )

    def _validate_decoder_shape(self) -> None:
        """The head and width constraints the decoder checks when built, named by field."""
        mc, dims = self.model, decoder_dims(self)
        d_model, d_head = dims["d_model"], dims["d_head"]
        if d_head <= 0:
            raise ConfigError(
                "model.n_heads", f"must be <= d_model={d_model} (or set model.d_head), got {mc.n_heads}"
            )
        if not mc.has_w_o() and (mc.n_heads != 1 or d_head != d_model):
            raise ConfigError(
                "model.use_w_o",
                f"false needs n_heads = 1 and d_head = d_model ({d_model}); "
                f"got n_heads={mc.n_heads}, d_head={d_head}",
            )
        if mc.positions in ("rope", "rope_paper") and d_head % 2:
            raise ConfigError("model.d_head", f"rope needs an even d_head, got {d_head}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a nested dict, rejecting unknown sections and keys by name."""
        data = dict(data)
        kind = data.get("kind", "unimodal")
        if kind not in RUN_KINDS:
            raise ConfigError("kind", f"must be one of {', '.join(RUN_KINDS)}; got {kind!r}")
        task_cls = TaskConfig if kind == "unimodal" else MultimodalTaskConfig
        sections = {"task": task_cls, "model": ModelConfig, "train": TrainConfig, "pipeline": PipelineConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("name", "kind"):
                if not isinstance(value, str) or not value:
                    raise ConfigError(key, f"must be a non-empty string, got {value!r}")
                kwargs[key] = value
            elif key in sections:
                if not isinstance(value, dict):
                    raise ConfigError(key, "must be a table ([section])")
                kwargs[key] = _build(sections[key], key, value)
            else:
                raise ConfigError(key, f"unknown section; allowed: name, kind, {', '.join(sections)}")
        return cls(**kwargs).validate()


_AUTO_OK = {("model", "use_w_o")}
"""Boolean fields that also accept the string "auto" (checked in the section's validate)."""


def _build(cls: type, section: str, values: dict[str, Any]) -> Any:
    allowed = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{section}.{key}", f"unknown key; allowed: {', '.join(allowed)}")
    obj = cls(**values)
    for name, f in allowed.items():
        value = getattr(obj, name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        # ints are acceptable where floats are expected (lr = 1); bools never pass as numbers
        if isinstance(default, bool) and not isinstance(value, bool) and (section, name) not in _AUTO_OK:
            raise ConfigError(f"{section}.{name}", f"must be true or false, got {value!r}")
        if isinstance(default, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{section}.{name}", f"must be a number, got {value!r}")
        if isinstance(default, float):
            setattr(obj, name, float(value))
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            raise ConfigError(f"{section}.{name}", f"must be an integer, got {value!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{section}.{name}", f"must be a string, got {value!r}")
    return obj


def _validate_context(task: Any, nonnegative: tuple[str, ...]) -> None:
    """The checks a unimodal and a multimodal task share: B, p_B, p_C and noise/Zipf >= 0."""
    if task.B < 0 or task.B >= task.N or (task.B > 0 and task.N % task.B != 0):
        raise ConfigError("task.B", f"must be 0 or a divisor of N={task.N} with 0 < B < N, got {task.B}")
    for name in ("p_B", "p_C"):
        _number(task, "task", name, 0.0, 1.0)
    if task.p_B > 0 and task.B == 0:
        raise ConfigError("task.p_B", "must be 0 when B = 0 (no bursty sequences)")
    for name in nonnegative:
        _number(task, "task", name, 0.0)
        if name.startswith("eps") and getattr(task, name) > EPS_MAX:
            raise ConfigError(
                f"task.{name}",
                f"must be a finite number >= 0 and <= {EPS_MAX:g} (beyond, items are pure noise and "
                f"overflow float32), got {getattr(task, name)!r}",
            )


def _number(
    obj: Any,
    section: str,
    name: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite real number (not a bool) in the range; the error names the range."""
    value = getattr(obj, name)
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if ok:
        return
    if math.isinf(high):
        allowed = f"{'>' if low_open else '>='} {low:g}"
    else:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise ConfigError(f"{section}.{name}", f"must be a finite number {allowed}, got {value!r}")


def _check_zipf_labels(name: str, alpha: float, K: int, n_needed: int, share: float = 1.0) -> None:
    """With ``no_repeats`` a bursty context draws N/B distinct labels from the Zipf law: the
    ``n_needed``-th most likely one must keep a probability float32 holds, else sampling fails.

    P(label j) >= (j+1)^-alpha / H with H = sum_k k^-alpha <= 1 + min(ln K, 1/(alpha-1)), and
    for alpha < 1, H <= 1 + (K^(1-alpha) - 1) / (1 - alpha). ``share`` < 1 when two such
    probabilities multiply (joint labels): each must reach tiny^share.
    """
    if n_needed <= 1 or alpha == 0:
        return
    if alpha >= 1:
        h = 1.0 + math.log(K)
        if alpha > 1:
            h = min(h, 1.0 + 1.0 / (alpha - 1.0))
    else:
        h = 1.0 + (K ** (1.0 - alpha) - 1.0) / (1.0 - alpha)
    log_tiny = share * math.log(_FLOAT32_TINY)
    if -alpha * math.log(n_needed) - math.log(h) < log_tiny:
        limit = (-log_tiny - math.log(h)) / math.log(n_needed)
        raise ConfigError(
            f"task.{name}",
            f"is too large for no_repeats: {n_needed} distinct labels per context (N/B) need "
            f"{name} <= about {math.floor(limit)} (rarer labels underflow float32), got {alpha:g}",
        )


def _choice(obj: Any, section: str, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in allowed:
        raise ConfigError(f"{section}.{name}", f"must be one of {', '.join(allowed)}; got {value!r}")


def _int(obj: Any, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{section}.{name}", f"must be an integer >= 0, got {value!r}")


def _positive_int(obj: Any, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{section}.{name}", f"must be an integer > 0, got {value!r}")


# ---------------------------------------------------------------------- machine resources
_F32 = 4
_N_SUITES = {"unimodal": 4, "multimodal": 6, "encoder": 1}


def decoder_dims(config: RunConfig) -> dict[str, int]:
    """The decoder's sizes as :class:`~mmicl_interp.model.transformer.ICLTransformer` builds them:
    d_input, d_model, d_head, d_mlp, n_ctx (the sequence length) and n_ctx_max (2*n_max+1)."""
    mc, tc = config.model, config.task
    d_input = tc.D if isinstance(tc, TaskConfig) else tc.D1
    n_ctx_max = 2 * mc.n_max + 1
    d_model = (mc.d_embed or d_input) + (n_ctx_max if mc.positions == "onehot" else 0)
    return {
        "d_input": d_input,
        "d_model": d_model,
        "d_head": mc.d_head or d_model // mc.n_heads,
        "d_mlp": mc.d_mlp or (d_model if mc.mlp == "paper_gated" else 4 * d_model),
        "n_ctx": tc.n_ctx if isinstance(tc, MultimodalTaskConfig) else 2 * tc.N + 1,
        "n_ctx_max": n_ctx_max,
    }


def parameter_estimate(config: RunConfig) -> dict[str, int]:
    """Trainable parameters by the field that sizes them (sums to the model's parameter count)."""
    mc, tc = config.model, config.task
    if config.kind == "encoder":
        d_out = mc.d_encoder or tc.D2
        h = mc.encoder_hidden
        return {"model.encoder_hidden": tc.D2 * h + h + h * d_out + d_out, "task.K2": d_out * tc.K2 + tc.K2}
    dims = decoder_dims(config)
    d, dh, H, n_labels = dims["d_model"], dims["d_head"], mc.n_heads, tc.L
    attn = (4 if mc.has_w_o() else 3) * H * d * dh + (3 * H * dh + d if mc.attn_bias else 0)
    mlp = 0
    if mc.mlp != "none":
        gated = mc.mlp in ("swiglu", "paper_gated")
        mlp = (3 if gated else 2) * d * dims["d_mlp"] + (2 if gated else 1) * dims["d_mlp"] + d
    norms = {"rms": 1, "ln": 2, "none": 0}[mc.norm] * d * (2 if mc.mlp != "none" else 1)
    out = {"model.n_layers": mc.n_layers * (attn + mlp + norms)}
    out["model.n_max"] = dims["n_ctx_max"] * d if mc.positions == "learned" else 0
    out["model.d_embed"] = dims["d_input"] * (mc.d_embed or 0)
    readout_bias = n_labels if mc.readout_bias else 0
    out["task.L"] = d * n_labels + readout_bias + {"rms": 1, "ln": 2, "none": 0}[mc.norm] * d
    if isinstance(tc, MultimodalTaskConfig):
        d2 = tc.D2
        if mc.encoder == "mlp":
            d_enc, h = mc.d_encoder or tc.D2, mc.encoder_hidden
            out["model.encoder_hidden"] = tc.D2 * h + h + h * d_enc + d_enc
            d2 = d_enc
        hp = mc.d_proj or tc.D1
        out["model.d_proj"] = d2 * hp + hp + hp * tc.D1 + tc.D1
    return out


def memory_estimate(config: RunConfig) -> list[tuple[str, float, str]]:
    """Rough bytes of the big allocations of training ``config``, as (field, bytes, what).

    Task tensors, parameters with gradients, Adam moments and a checkpoint copy, the fixed eval
    suites, one training step's activations (kept for backward), buffers (causal masks) and
    the schedule lists. Generous by design: it only has to tell a run that cannot fit.
    """
    tc, mc, tr = config.task, config.model, config.train
    F = _F32
    parts: list[tuple[str, float, str]] = []
    # class means (float32) and the Zipf law (float64 ranks and weights, float32 probabilities)
    if isinstance(tc, TaskConfig):
        parts.append(("task.K", tc.K * (tc.D * F + 20.0), f"class means, K={tc.K} x D={tc.D}"))
    else:
        parts.append(("task.K1", tc.K1 * (tc.D1 * F + 20.0), f"M1 class means, K1={tc.K1} x D1={tc.D1}"))
        parts.append(("task.K2", tc.K2 * (tc.D2 * F + 28.0), f"M2 class means, K2={tc.K2} x D2={tc.D2}"))
    for name, count in parameter_estimate(config).items():
        # weights, gradients, two Adam moments, one copy while a checkpoint is written
        parts.append((name, 5.0 * F * count, f"{count} parameters with gradients and optimiser state"))
    n_suites = _N_SUITES[config.kind]
    if config.kind == "encoder":
        d_out, h = mc.d_encoder or tc.D2, mc.encoder_hidden
        per_item = 3.0 * F * (tc.D2 + h + d_out + tc.K2) + 32
        parts.append(("train.batch_size", tr.batch_size * per_item, f"a batch of {tr.batch_size} items"))
        parts.append(("task.eval_size", tc.eval_size * per_item, f"the eval suite of {tc.eval_size} items"))
    else:
        dims = decoder_dims(config)
        T, d, H, dh = dims["n_ctx"], dims["d_model"], mc.n_heads, dims["d_head"]
        d_in = tc.D if isinstance(tc, TaskConfig) else tc.D1 + tc.D2
        d_mlp = 0 if mc.mlp == "none" else dims["d_mlp"] * (3 if mc.mlp in ("swiglu", "paper_gated") else 2)
        # per layer: residuals, norms, q/k/v (+ rotated), z, outputs, MLP; scores and pattern per head
        layer = T * (6.0 * d + 6.0 * H * dh + 1.5 * d_mlp) + 3.0 * H * T * T
        sample = 5.0 * T * d_in + 8.0 * tc.N * 2  # inputs with the sampler's temporaries; int labels
        if isinstance(tc, MultimodalTaskConfig):
            hp = mc.d_proj or tc.D1
            enc = mc.encoder_hidden if mc.encoder == "mlp" else 0
            sample += 3.0 * (tc.N + 1) * (hp + tc.D1 + tc.D2 + enc)  # projector (and encoder) activations
        per_seq = F * (1.2 * mc.n_layers * layer + 2.0 * T * d + sample)  # 1.2: gradient buffers
        parts.append(
            (
                "train.batch_size",
                tr.batch_size * per_seq,
                f"one step's activations, batch_size={tr.batch_size} x length {T} x d_model {d} "
                f"x {mc.n_layers} layers",
            )
        )
        chunk = min(tc.eval_size, 2048)  # evaluation runs without gradients, 2048 sequences at a time
        suites = F * tc.eval_size * (n_suites * (T * d_in + 4.0 * tc.N) + 4.0 * T * d_in)
        parts.append(
            (
                "task.eval_size",
                suites + chunk * F * (2.0 * layer + T * d),
                f"{n_suites} eval suites of eval_size={tc.eval_size} sequences",
            )
        )
        n_max = dims["n_ctx_max"]
        buffers = mc.n_layers * (
            n_max * n_max * (3.0 + (F * H if mc.positions == "alibi" else 0))
            + (2.0 * F * n_max * dh if mc.positions in ("rope", "rope_paper") else 0)
            + (F * d * d if not mc.has_w_o() else 0)
        )
        parts.append(("model.n_max", buffers, f"causal masks of 2*n_max+1={n_max} positions per layer"))
    n_evals = tr.steps // tr.eval_every + 1
    n_linear = tr.steps // tr.ckpt_every + 1 if tr.ckpt_schedule in ("linear", "union") else 0
    n_linear += n_dense_checkpoints(tr)
    parts.append(("train.steps", 150.0 * (n_evals + n_linear), f"the schedule's {n_evals} eval steps"))
    return parts


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


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None when unknown.

    Linux ``MemAvailable`` (else ``os.sysconf``), capped by the cgroup (container) limit less
    its non-reclaimable usage. No psutil needed.
    """
    avail: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    cgroup = Path("/sys/fs/cgroup")
    for limit_file, usage_file, stat_file, stat_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),  # cgroup v1
    ):
        try:
            limit = int((cgroup / limit_file).read_text().split()[0])  # v2 "max" (no limit): ValueError
            usage = int((cgroup / usage_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:  # page cache the kernel can reclaim is not in use
            lines = (cgroup / stat_file).read_text().splitlines()
            stats = dict(line.split() for line in lines if line.count(" ") == 1)
            usage -= int(stats.get(stat_key, 0))
        except (OSError, ValueError):
            pass
        room = max(limit - usage, 0)
        avail = room if avail is None else min(avail, room)
        break
    return avail


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e9:.2f} GB"


def _device_memory(device: Any) -> tuple[int | None, str]:
    """Free bytes where a run trains (``device``: a ``torch.device`` or None for the host), and
    how to name that place."""
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"the GPU {device}"
    return available_memory(), "this machine"


def check_resources(config: RunConfig, out: str | Path | None = None, device: Any = None) -> None:
    """Refuse, before any work, a run this machine cannot do: more threads than CPUs, more
    memory than available (with the estimate and the field that sizes it; on a CUDA
    ``device``, the resolved ``torch.device`` the run trains on, the GPU's free memory,
    ``torch.cuda.mem_get_info``, else the host's), more checkpoint bytes than the disk under
    ``out`` holds. Raises :class:`ConfigError`."""
    cpus = usable_cpus()
    if config.train.threads > cpus:
        raise ConfigError(
            "train.threads",
            f"must be in [0, {cpus}] (0 = torch's default; this machine has {cpus} usable CPUs), "
            f"got {config.train.threads}",
        )
    parts = memory_estimate(config)
    need = sum(b for _, b, _ in parts)
    avail, where = _device_memory(device)
    if avail is not None and need > avail:
        field, part, what = max(parts, key=lambda p: p[1])
        raise ConfigError(
            field,
            f"too large for {where}: training needs about {_gb(need)}, {_gb(avail)} available "
            f"(largest part: {what}, about {_gb(part)}); lower {field}",
        )
    if out is None:
        return
    per_ckpt = _F32 * sum(parameter_estimate(config).values()) + 4096
    n_ckpts = n_checkpoints(config.train)
    disk = n_ckpts * per_ckpt + 3 * per_ckpt + parts[0][1]  # + train state (weights, 2 moments) + task
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if disk > free:
        linear = config.train.ckpt_schedule in ("linear", "union")
        raise ConfigError(
            "train.ckpt_every" if linear else "train.ckpt_schedule",
            f"{n_ckpts} checkpoints of {_gb(per_ckpt)} need about {_gb(disk)} on disk, {_gb(free)} free "
            f"under {folder}; write fewer checkpoints",
        )


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a shipped config in ``mmicl_interp/configs``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and not path.parent.parts:
        shipped = CONFIG_DIR / f"{path.name}.toml"
        if shipped.is_file():
            return shipped
    shipped_names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []
    raise ConfigError(
        "config",
        f"no such file {str(name_or_path)!r}; give a TOML path or a shipped name "
        f"({', '.join(shipped_names) or 'none found'})",
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in TOML syntax, bare words taken as strings)."""
    if "=" not in text:
        raise ConfigError("--set", f"expected section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".") if p.strip()]
    if not parts:
        raise ConfigError("--set", f"expected section.key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML config (path or shipped name), apply ``--set`` overrides, validate."""
    path = resolve_config_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config", f"TOML syntax error in {path}: {err}") from None
    except OSError as err:
        raise ConfigError("config", f"cannot read {path}: {err.strerror}") from None
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(parts), "is not a table")
        node[parts[-1]] = value
    return RunConfig.from_dict(data)
