"""The ``[model]`` section: the small hooked decoder's architecture and initialisation."""

from __future__ import annotations

from dataclasses import dataclass

from mmicl_interp.config.errors import ConfigError, _choice, _number, _positive_int
from mmicl_interp.types import MLP_TYPES, NORM_TYPES, POSITION_TYPES

INIT_STD_MAX = 1e2
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
