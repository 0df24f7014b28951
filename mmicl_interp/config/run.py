"""A whole run, ``RunConfig``: its sections, built from a nested dict and validated together.

:meth:`RunConfig.from_dict` rejects unknown sections and keys by name and checks each value's
type against the field's default; :meth:`RunConfig.validate` then checks every section and the
constraints between them (sequence length against ``model.n_max``, heads against widths).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmicl_interp.config.errors import ConfigError
from mmicl_interp.config.model import ModelConfig
from mmicl_interp.config.multimodal import MultimodalTaskConfig, PipelineConfig
from mmicl_interp.config.task import TaskConfig
from mmicl_interp.config.train import TrainConfig

RUN_KINDS: tuple[str, ...] = ("unimodal", "multimodal", "encoder")
SEED_MAX = 2**63 - 1
"""Largest seed (torch generators take a signed 64-bit seed); every seed is in [0, SEED_MAX]."""


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
