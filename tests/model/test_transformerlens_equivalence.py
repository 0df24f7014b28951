"""Our model against TransformerLens's own native model (TransformerBridge.boot_native) on the
same weights: equal logits at the query, for every configuration both support."""

import pytest
import torch
import transformer_lens.model_bridge.sources  # noqa: F401  (registers boot_native)
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

from mmicl_interp.config import ModelConfig
from mmicl_interp.model import ICLTransformer
from tests.conftest import tiny_task_config

TASK = tiny_task_config(D=16)


def _native_weights(model: ICLTransformer) -> dict[str, torch.Tensor]:
    """Our weights under the native model's parameter names."""
    h, d, e = model.cfg.n_heads, model.cfg.d_model, model.cfg.d_head
    out: dict[str, torch.Tensor] = {"head.weight": model.W_U.T, "head.bias": model.b_U}
    if hasattr(model, "W_pos"):
        out["pos.weight"] = model.W_pos
    for name, norm in [("ln_out", model.ln_final)]:
        out[f"{name}.weight"] = norm.w
        if hasattr(norm, "b"):
            out[f"{name}.bias"] = norm.b
    for i, block in enumerate(model.blocks):
        attn, pre = block.attn, f"layers.{i}"
        for src, dst in ((block.ln1, "ln1"), (getattr(block, "ln2", None), "ln2")):
            if src is not None:
                out[f"{pre}.{dst}.weight"] = src.w
                if hasattr(src, "b"):
                    out[f"{pre}.{dst}.bias"] = src.b
        for w, b, dst in ((attn.W_Q, attn.b_Q, "q"), (attn.W_K, attn.b_K, "k"), (attn.W_V, attn.b_V, "v")):
            out[f"{pre}.attn.{dst}.weight"] = w.permute(0, 2, 1).reshape(h * e, d)
            out[f"{pre}.attn.{dst}.bias"] = b.reshape(-1)
        out[f"{pre}.attn.o.weight"] = attn.W_O.reshape(h * e, d).T
        out[f"{pre}.attn.o.bias"] = attn.b_O
        if block.has_mlp and block.mlp.kind == "gelu":
            out[f"{pre}.mlp.fc_in.weight"] = block.mlp.W_in.T
            out[f"{pre}.mlp.fc_in.bias"] = block.mlp.b_in
            out[f"{pre}.mlp.fc_out.weight"] = block.mlp.W_out.T
            out[f"{pre}.mlp.fc_out.bias"] = block.mlp.b_out
        elif block.has_mlp:
            out[f"{pre}.mlp.gate.weight"] = block.mlp.W_gate.T
            out[f"{pre}.mlp.in.weight"] = block.mlp.W_in.T
            out[f"{pre}.mlp.out.weight"] = block.mlp.W_out.T
    return out


def _boot(model: ICLTransformer, positions: str, norm: str, mlp: str) -> TransformerBridge:
    cfg = TransformerBridgeConfig(
        d_model=model.cfg.d_model,
        d_head=model.cfg.d_head,
        n_layers=model.cfg.n_layers,
        n_ctx=model.cfg.n_ctx,
        n_heads=model.cfg.n_heads,
        d_vocab=TASK.L,
        d_vocab_out=TASK.L,
        d_mlp=model.cfg.d_mlp,
        normalization_type={"ln": "LN", "rms": "RMS"}[norm],
        positional_embedding_type="rotary" if positions == "rope" else "standard",
        rotary_base=10000,
        act_fn="gelu" if mlp == "gelu" else "silu",
        attn_only=mlp == "none",
        gated_mlp=mlp == "swiglu",
        seed=0,
    )
    bridge = TransformerBridge.boot_native(cfg)
    native = bridge.original_model
    ours = _native_weights(model)
    state = native.state_dict()
    loaded = set()
    for key in state:
        canonical = key.replace("._original_component", "")
        if canonical in ours:
            state[key] = ours[canonical].detach().clone()
            loaded.add(canonical)
    assert loaded == set(ours), f"unmapped weights: {set(ours) - loaded}"
    native.load_state_dict(state)
    return bridge


@pytest.mark.parametrize(
    "positions,norm,mlp,n_heads",
    [
        ("learned", "ln", "gelu", 2),
        ("learned", "rms", "none", 1),
        ("rope", "rms", "none", 2),
        ("rope", "ln", "swiglu", 2),
    ],
)
def test_logits_equal_transformerlens_native_model_on_same_weights(positions, norm, mlp, n_heads):
    mc = ModelConfig(
        positions=positions, norm=norm, mlp=mlp, n_heads=n_heads, n_max=4, attn_bias=True, seed=1
    )
    model = ICLTransformer.from_task(mc, TASK)
    with torch.no_grad():  # non-trivial norms and biases, so every weight matters
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            gated_bias = mlp == "swiglu" and ".mlp.b_" in name  # the native gated MLP has none
            if not leaf.startswith("W_") and not gated_bias:
                p.add_(0.1 * torch.randn_like(p))
    bridge = _boot(model, positions, norm, mlp)
    x = torch.randn(6, 2 * TASK.N + 1, TASK.D)
    ours = model(x)
    theirs = bridge(x)[:, -1]
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
