"""The small decoder for few-shot classification, hooked the TransformerLens way.

Built on ``HookedRootModule`` + ``HookPoint`` (TransformerLens 4 removed
``HookedTransformer``), with TransformerLens hook and weight names, so
``run_with_cache``, ``run_with_hooks``, ``ActivationCache``, ``patching`` and
``FactoredMatrix`` work unchanged.

Forward pass on a sequence of continuous D-dim vectors ``x``:

``embed = x W_E`` (or ``x`` itself when ``d_embed`` is unset)  -> ``hook_embed``;
positions: ``onehot`` concatenates the shifted one-hot block (``hook_pos_embed``),
``learned`` adds ``W_pos[t]`` (``hook_pos_embed``), rope / rope_paper / alibi act inside
attention. A multimodal model reads packed inputs ``[D1 columns | D2 columns]`` and first
writes ``projector(encoder(m2))`` (``hook_m2_enc``, ``hook_m2_proj``; the encoder is
optional) into the M2 slots. Then ``n_layers`` pre-norm blocks, ``ln_final`` and the
read-out ``logits = ln_final(resid[:, -1]) W_U + b_U`` over the L labels, at the last
position (the query; ``b_U`` is a zero buffer with ``readout_bias = false``). Training sets
``readout_only``: the last block then computes its attention query, output and MLP at the
query position alone (keys and values from every position), the same logits for about a
third less work in a 2-layer model.

Init (:meth:`ICLTransformer.init_weights`): weight matrices N(0, init_std^2), norms 1, biases
0; ``embed_init`` and ``mlp_init`` choose W_E's and the MLPs' (``torch_default`` is the
published code's, which never calls its MLP init: PUBLISHED.md).

The model is built on the CPU; ``model.to(device)`` moves it and ``cfg.device`` (which
TransformerLens's tools allocate on) follows; inputs go where the weights are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.config import TransformerLensConfig
from transformer_lens.hook_points import HookPoint

from mmicl_interp.config import ModelConfig, MultimodalTaskConfig, TaskConfig
from mmicl_interp.data.layout import Layout
from mmicl_interp.model.components import Attention, Block, GeluMLP, Norm
from mmicl_interp.model.positions import onehot_block


class ICLTransformer(HookedRootModule):
    """A TransformerLens-hooked decoder reading continuous item/label vectors.

    ``cfg`` is a TransformerLens ``TransformerLensConfig`` (what its tools read);
    ``model_config`` is this toolkit's :class:`~mmicl_interp.config.ModelConfig`.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        d_input: int,
        n_labels: int,
        m2: tuple[int, tuple[int, ...]] | None = None,
    ):
        super().__init__()
        mc = model_config
        self.model_config = mc
        self.n_labels = n_labels
        # multimodal: inputs are packed [D1 columns | D2 columns]; M2 slots go through the projector
        self.d_features = d_input
        self.d_input = d_input + (m2[0] if m2 else 0)
        self.n_ctx_max = 2 * mc.n_max + 1
        d_feat = mc.d_embed or d_input
        self.pos_width = self.n_ctx_max if mc.positions == "onehot" else 0
        d_model = d_feat + self.pos_width
        d_head = mc.d_head or d_model // mc.n_heads
        if d_head <= 0:
            raise ValueError(f"model.d_head: d_model={d_model} is too small for n_heads={mc.n_heads}")
        if not mc.has_w_o() and (mc.n_heads != 1 or d_head != d_model):
            raise ValueError(
                f"model.use_w_o: false needs n_heads = 1 and d_head = d_model ({d_model}); "
                f"got n_heads={mc.n_heads}, d_head={d_head}"
            )
        if mc.positions in ("rope", "rope_paper") and d_head % 2:
            raise ValueError(f"model.d_head: rope needs an even d_head, got {d_head}")
        d_mlp = mc.d_mlp or (d_model if mc.mlp == "paper_gated" else 4 * d_model)
        norm_type = {"rms": "RMS", "ln": "LN", "none": None}[mc.norm]
        pos_type = {"rope": "rotary", "rope_paper": "rotary", "learned": "standard"}.get(
            mc.positions, mc.positions
        )
        self.cfg = TransformerLensConfig(
            d_model=d_model,
            d_head=d_head,
            n_layers=mc.n_layers,
            n_ctx=self.n_ctx_max,
            n_heads=mc.n_heads,
            d_mlp=d_mlp if mc.mlp != "none" else None,
            d_vocab=n_labels,
            device="cpu",  # built on the CPU; moving the model updates it (see _apply)
            positional_embedding_type=pos_type,
            attn_only=mc.mlp == "none",
            gated_mlp=mc.mlp in ("swiglu", "paper_gated"),
            uses_rms_norm=mc.norm == "rms",
            normalization_type=norm_type,
            act_fn="gelu" if mc.mlp == "gelu" else "silu",
        )
        if mc.mlp == "none":
            self.cfg.d_mlp = None

        self.encoder = None
        if m2 is not None:
            d2, positions = m2
            if mc.encoder == "mlp":
                d_enc = mc.d_encoder or d2
                self.encoder = GeluMLP(d2, mc.encoder_hidden, d_enc)
                self.hook_m2_enc = HookPoint()
                d2 = d_enc
            self.projector = GeluMLP(d2, mc.d_proj or d_input, d_input)
            self.register_buffer("m2_positions", torch.tensor(positions, dtype=torch.long), persistent=False)
            self.hook_m2_proj = HookPoint()
        else:
            self.projector = None
        if mc.d_embed is not None:
            self.W_E = nn.Parameter(torch.empty(d_input, mc.d_embed))
        if mc.positions == "learned":
            self.W_pos = nn.Parameter(torch.empty(self.n_ctx_max, d_model))
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(
            Block(
                mc.norm,
                mc.mlp,
                d_model,
                d_mlp,
                Attention(
                    d_model,
                    mc.n_heads,
                    d_head,
                    self.n_ctx_max,
                    mc.positions,
                    use_w_o=mc.has_w_o(),
                    attn_bias=mc.attn_bias,
                    rope_theta=mc.rope_theta,
                ),
            )
            for _ in range(mc.n_layers)
        )
        self.ln_final = Norm(mc.norm, d_model)
        self.W_U = nn.Parameter(torch.empty(d_model, n_labels))
        if mc.readout_bias:
            self.b_U = nn.Parameter(torch.zeros(n_labels))
        else:  # the published read-out has no bias: b_U stays zero and is not trained or saved
            self.register_buffer("b_U", torch.zeros(n_labels), persistent=False)
        self.check_inputs = True
        """Validate input shapes and shifts (off under ``torch.func.vmap``, see train/stacked.py)."""
        self.readout_only = False
        """Fast path for training: the last block computes the query position only (keys and
        values still from every position), the one the read-out uses. The logits are the same;
        hooks of the last block then see one position, so analyses leave it off."""
        self.init_weights(mc.seed)
        self.setup()

    @classmethod
    def from_task(
        cls, model_config: ModelConfig, task_config: TaskConfig | MultimodalTaskConfig
    ) -> ICLTransformer:
        """The model for a task: D-dim inputs and L labels; a projector for a multimodal task."""
        if isinstance(task_config, MultimodalTaskConfig):
            m2_positions = Layout.multimodal(task_config.N).positions_of("m2")
            return cls(model_config, task_config.D1, task_config.L1, m2=(task_config.D2, m2_positions))
        return cls(model_config, task_config.D, task_config.L)

    def init_weights(self, seed: int) -> None:
        """Every weight matrix ~ N(0, init_std^2) from ``seed``; norms 1, biases 0. Then
        ``embed_init = "unit"`` redraws W_E ~ N(0, 1/d_embed) (norm-preserving), and
        ``mlp_init = "torch_default"`` redraws each block MLP as ``nn.Linear`` leaves it:
        weights and biases ~ U(-b, b) with b = 1/sqrt(fan_in) (fan_in = the input width of
        the matrix the bias belongs to). Each redraw has its own generator, so the other
        weights are those of the ``normal`` init."""
        mc = self.model_config
        init_normal(self, seed, mc.init_std)
        with torch.no_grad():
            if hasattr(self, "W_E") and mc.embed_init == "unit":
                g = _generator(seed, 1)
                self.W_E.copy_(torch.randn(self.W_E.shape, generator=g) / math.sqrt(self.W_E.shape[1]))
            if mc.mlp_init == "torch_default" and mc.mlp != "none":
                g = _generator(seed, 2)
                for block in self.blocks:
                    torch_default_init(block.mlp, g)

    def max_shift_for(self, n_ctx: int) -> int:
        """Largest one-hot shift for sequences of length ``n_ctx`` (0 unless onehot)."""
        return max_pos_shift(self.model_config, n_ctx)

    @property
    def device(self) -> torch.device:
        """Where the weights live (``cfg.device`` follows it)."""
        return self.W_U.device

    def _apply(self, fn, *args, **kwargs):
        # every move (.to, .cuda, .cpu) goes through here: keep TransformerLens's cfg.device,
        # which its tools allocate on (e.g. transformer_lens.patching), in step with the weights
        out = super()._apply(fn, *args, **kwargs)
        self.cfg.device = str(self.W_U.device)
        return out

    def run_with_cache(self, *model_args, return_cache_object: bool = True, **kwargs):
        """Run and cache activations; returns ``(logits, ActivationCache)`` like TransformerLens.

        Pass ``names_filter`` to cache only the hooks an analysis needs.
        """
        out, cache_dict = super().run_with_cache(*model_args, **kwargs)
        if not return_cache_object:
            return out, cache_dict
        has_batch_dim = not kwargs.get("remove_batch_dim", False)
        return out, ActivationCache(cache_dict, self, has_batch_dim=has_batch_dim)

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Compute per-head outputs ``hook_result`` (needed by per-head patching); slower."""
        self.cfg.use_attn_result = use_attn_result
        for block in self.blocks:
            block.attn.use_attn_result = use_attn_result

    def forward(
        self,
        inputs: Float[torch.Tensor, "batch pos d_input"],
        pos_shift: Int[torch.Tensor, " batch"] | None = None,
    ) -> Float[torch.Tensor, "batch n_labels"]:
        """Label logits at the last position (the query) for a batch of sequences."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.d_input:
            raise ValueError(f"inputs must be [batch, pos, {self.d_input}], got {tuple(inputs.shape)}")
        n_batch, n_ctx = inputs.shape[:2]
        if n_ctx > self.n_ctx_max:
            raise ValueError(f"sequence length {n_ctx} exceeds 2*n_max+1 = {self.n_ctx_max}")
        if self.projector is not None:
            features = inputs[..., : self.d_features]
            m2 = inputs[:, self.m2_positions, self.d_features :]
            if self.encoder is not None:
                m2 = self.hook_m2_enc(self.encoder(m2))
            projected = self.hook_m2_proj(self.projector(m2))
            inputs = features.index_copy(1, self.m2_positions, projected)
        resid = self.hook_embed(inputs @ self.W_E if hasattr(self, "W_E") else inputs)
        positions = self.model_config.positions
        if positions == "onehot":
            if pos_shift is None:
                pos_shift = torch.zeros(n_batch, dtype=torch.long, device=inputs.device)
            pos_shift = pos_shift.to(inputs.device)  # a no-op when it is there already
            block = self.hook_pos_embed(onehot_block(n_ctx, self.pos_width, pos_shift, self.check_inputs))
            resid = torch.cat([resid, block], dim=-1)
        elif positions == "learned":
            resid = resid + self.hook_pos_embed(self.W_pos[:n_ctx].expand(n_batch, -1, -1))
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            resid = block(resid, query_only=self.readout_only and i == last)
        final = self.ln_final(resid[:, -1:])[:, 0]
        return final @ self.W_U + self.b_U


def init_normal(module: nn.Module, seed: int, std: float) -> None:
    """Initialise a module's parameters from ``seed``: ``W_*`` ~ N(0, std^2), norm weights
    ``w`` = 1, everything else (biases) 0, in parameter order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("W_"):
                param.copy_(torch.randn(param.shape, generator=g) * std)
            elif leaf == "w":
                param.fill_(1.0)
            else:
                param.zero_()


def _generator(seed: int, stream: int) -> torch.Generator:
    """A generator for init stream ``stream`` of ``seed``, independent of the plain seed's."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, stream]).generate_state(1)[0]))


def torch_default_init(mlp: nn.Module, generator: torch.Generator) -> None:
    """``nn.Linear``'s default init on an MLP with ``W_x`` [fan_in, fan_out] and biases ``b_x``:
    ``W_x`` and ``b_x`` ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with a = sqrt(5);
    std 1/sqrt(3 fan_in)), drawn in parameter order from ``generator``."""
    with torch.no_grad():
        for name, param in mlp.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            weight = getattr(mlp, "W_" + leaf[2:]) if leaf.startswith("b_") else param
            bound = 1.0 / math.sqrt(weight.shape[0])
            param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)


def max_pos_shift(model_config: ModelConfig, n_ctx: int) -> int:
    """Largest random shift of the one-hot block (width 2*n_max+1) for length ``n_ctx``."""
    if model_config.positions != "onehot":
        return 0
    return 2 * model_config.n_max + 1 - n_ctx


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["ICLTransformer", "max_pos_shift", "parameter_count"]
