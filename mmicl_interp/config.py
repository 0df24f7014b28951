"""Run configuration: dataclasses loaded from TOML, validated field by field.

A config file has three sections, ``[task]``, ``[model]`` and ``[train]``, whose keys are
the names of SCIENCE.md (K, L, D, N, B, p_B, p_C, eps, alpha, no_repeats, ...). Every bad
value raises :class:`ConfigError` naming the field (``section.key``) and what is allowed,
so the CLI can print one line and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

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

CONFIG_DIR = Path(__file__).resolve().parent.parent / "analyses" / "configs"


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

    def validate(self) -> None:
        _positive_int(self, "task", ("K1", "K2", "D1", "D2", "N", "K_c", "eval_size"))
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


FREEZABLE: tuple[str, ...] = ("embed", "blocks", "ln_final", "readout", "projector", "encoder")
RUN_KINDS: tuple[str, ...] = ("unimodal", "multimodal", "encoder")
ENCODERS: tuple[str, ...] = ("none", "mlp")


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
    use_w_o: bool = True
    """False drops W_O (only for one head with d_head = d_model, as in Reddy and the paper)."""
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
    seed: int = 0
    """Seed of the weight initialisation."""

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
        if self.init_std <= 0:
            raise ConfigError("model.init_std", f"must be > 0, got {self.init_std}")
        if self.rope_theta <= 0:
            raise ConfigError("model.rope_theta", f"must be > 0, got {self.rope_theta}")


@dataclass
class TrainConfig:
    """Online training: optimiser, steps, eval and checkpoint schedule."""

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
    threads: int = 0
    """torch threads (0 = leave torch's default)."""
    seed: int = 0
    """Seed of the training data stream (the task has its own, task.seed)."""

    def validate(self) -> None:
        _positive_int(self, "train", ("steps", "batch_size", "eval_every", "ckpt_every"))
        _int(self, "train", ("ckpt_log_points", "threads", "seed"))
        _choice(self, "train", "optimizer", OPTIMIZERS)
        _choice(self, "train", "ckpt_schedule", SCHEDULE_KINDS)
        if not isinstance(self.lr, (int, float)) or self.lr <= 0:
            raise ConfigError("train.lr", f"must be a number > 0, got {self.lr!r}")
        for name in ("weight_decay", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"train.{name}", f"must be a number >= 0, got {value!r}")
        if not isinstance(self.ckpt_steps, list) or not all(
            isinstance(s, int) and 0 <= s <= self.steps for s in self.ckpt_steps
        ):
            raise ConfigError("train.ckpt_steps", f"must be a list of integers in [0, steps={self.steps}]")


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
        pl = self.pipeline
        if self.kind != "multimodal" and (pl.init_from or pl.freeze or pl.encoder_from):
            raise ConfigError("pipeline", 'init_from, encoder_from and freeze apply to kind = "multimodal"')
        if self.kind == "encoder" and self.model.encoder == "none":
            raise ConfigError("model.encoder", 'an encoder run needs an encoder: set model.encoder = "mlp"')
        if pl.encoder_from and self.model.encoder == "none":
            raise ConfigError("model.encoder", 'pipeline.encoder_from needs model.encoder = "mlp"')
        if self.kind == "encoder":
            return self  # single vectors: no sequence, no positions
        n_ctx = self.task.n_ctx if self.kind == "multimodal" else 2 * self.task.N + 1
        if self.model.positions == "onehot" and n_ctx > 2 * self.model.n_max + 1:
            raise ConfigError(
                "model.n_max",
                f"must give 2*n_max+1 >= the sequence length {n_ctx} for onehot positions, "
                f"got {self.model.n_max}",
            )
        return self

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
        if isinstance(default, bool) and not isinstance(value, bool):
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
        value = getattr(task, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"task.{name}", f"must be a number in [0, 1], got {value!r}")
    if task.p_B > 0 and task.B == 0:
        raise ConfigError("task.p_B", "must be 0 when B = 0 (no bursty sequences)")
    for name in nonnegative:
        value = getattr(task, name)
        if not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
            raise ConfigError(f"task.{name}", f"must be a number >= 0, got {value!r}")


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


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a shipped config in ``analyses/configs``."""
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
