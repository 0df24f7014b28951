"""Building blocks of the hooked decoder, with TransformerLens weight and hook names.

Attention (Vaswani et al. 2017) per head h:
``q = x W_Q[h] + b_Q[h]`` (likewise k, v), ``A = softmax(q k^T / sqrt(d_head) + mask)``,
``z = A v``, ``result_h = z W_O[h]``, ``attn_out = sum_h result_h + b_O``.
Weights follow TransformerLens: ``W_Q/W_K/W_V: [n_heads, d_model, d_head]``,
``W_O: [n_heads, d_head, d_model]``; hooks ``hook_q/k/v``, ``hook_rot_q/k``,
``hook_attn_scores``, ``hook_pattern``, ``hook_z``, ``hook_result`` (when
``use_attn_result``). A model without W_O (one head, Reddy / the paper) keeps W_O as a
fixed identity buffer, so every circuit tool still sees ``OV = W_V W_O``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from mmicl_interp.model.positions import alibi_bias, apply_rope, rope_tables

NORM_EPS = 1e-5


class Norm(nn.Module):
    """Pre-norm: RMSNorm, LayerNorm or none, with ``hook_scale`` and ``hook_normalized``."""

    def __init__(self, kind: str, d_model: int):
        super().__init__()
        self.kind = kind
        if kind in ("rms", "ln"):
            self.w = nn.Parameter(torch.ones(d_model))
        if kind == "ln":
            self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: Float[torch.Tensor, "batch pos d"]) -> Float[torch.Tensor, "batch pos d"]:
        if self.kind == "none":
            return self.hook_normalized(x)
        if self.kind == "ln":
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + NORM_EPS).sqrt())
        x = x / scale * self.w
        if self.kind == "ln":
            x = x + self.b
        return self.hook_normalized(x)


class Attention(nn.Module):
    """Causal multi-head attention with rope / rope_paper / alibi options."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_head: int,
        n_ctx: int,
        positions: str,
        use_w_o: bool = True,
        attn_bias: bool = False,
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        self.n_heads, self.d_head, self.positions = n_heads, d_head, positions
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_head))
        if use_w_o:
            self.W_O = nn.Parameter(torch.empty(n_heads, d_head, d_model))
        else:
            self.register_buffer("W_O", torch.eye(d_model)[None], persistent=False)
        for name, shape in (
            ("b_Q", (n_heads, d_head)),
            ("b_K", (n_heads, d_head)),
            ("b_V", (n_heads, d_head)),
            ("b_O", (d_model,)),
        ):
            if attn_bias:
                setattr(self, name, nn.Parameter(torch.zeros(shape)))
            else:
                self.register_buffer(name, torch.zeros(shape), persistent=False)
        mask = torch.triu(torch.ones(n_ctx, n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)
        if positions in ("rope", "rope_paper"):
            cos, sin = rope_tables(n_ctx, d_head, rope_theta, "adjacent" if positions == "rope" else "half")
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if positions == "alibi":
            self.register_buffer("alibi", alibi_bias(n_heads, n_ctx), persistent=False)
        self.attn_bias = attn_bias
        self.use_attn_result = False
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_rot_q, self.hook_rot_k = HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()
        self.hook_z, self.hook_result = HookPoint(), HookPoint()

    def forward(
        self, x: Float[torch.Tensor, "batch pos d_model"], query_only: bool = False
    ) -> Float[torch.Tensor, "batch out_pos d_model"]:
        """The attention output at every position, or with ``query_only`` at the last one only
        (``out_pos`` = 1: keys and values still come from every position; the read-out path)."""
        n_batch, p, d_model = x.shape
        h, e = self.n_heads, self.d_head
        # one matmul for q, k, v: [d_model, 3 * head * d_head], columns ordered (q|k|v, head, d_head)
        w_qkv = torch.cat([self.W_Q, self.W_K, self.W_V], 0).permute(1, 0, 2).reshape(d_model, 3 * h * e)
        if query_only:
            q = (x[:, -1:] @ w_qkv[:, : h * e]).view(n_batch, 1, h, e)
            k, v = (x @ w_qkv[:, h * e :]).view(n_batch, p, 2, h, e).unbind(2)
        else:
            q, k, v = (x @ w_qkv).view(n_batch, p, 3, h, e).unbind(2)
        q_pos = slice(p - 1, p) if query_only else slice(0, p)
        # hooks see TransformerLens's [batch, pos, head, d_head]; matmuls use [batch, head, pos, d_head]
        if self.attn_bias:  # without trainable biases they are zero: skip the adds
            q, k, v = q + self.b_Q, k + self.b_K, v + self.b_V
        q = self.hook_q(q).transpose(1, 2)
        k = self.hook_k(k).transpose(1, 2)
        v = self.hook_v(v).transpose(1, 2)
        if self.positions in ("rope", "rope_paper"):
            cos, sin = self.rope_cos[:p], self.rope_sin[:p]
            paper = self.positions == "rope_paper"
            q = apply_rope(q, cos[q_pos], sin[q_pos], paper)
            q = self.hook_rot_q(q.transpose(1, 2)).transpose(1, 2)
            k = self.hook_rot_k(apply_rope(k, cos, sin, paper).transpose(1, 2)).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(e)
        if self.positions == "alibi":
            scores = scores + self.alibi[:, q_pos, :p]
        if not query_only:  # the last query sees every key
            scores = scores.masked_fill(self.mask[:p, :p], float("-inf"))
        pattern = self.hook_pattern(F.softmax(self.hook_attn_scores(scores), dim=-1))
        z = self.hook_z((pattern @ v).transpose(1, 2))  # [batch, pos, head, d_head]
        if self.use_attn_result:
            out = self.hook_result(torch.einsum("bphe,hed->bphd", z, self.W_O)).sum(2)
        else:
            out = z.reshape(n_batch, z.shape[1], h * e) @ self.W_O.reshape(h * e, -1)
        return out + self.b_O if self.attn_bias else out


class MLP(nn.Module):
    """MLP variants: ``gelu`` (W_out gelu(x W_in)), ``swiglu`` (W_out (silu(x W_gate) * x W_in)),
    ``paper_gated`` (W_out silu((x W_gate) * (x W_in)), the published "gated" MLP)."""

    def __init__(self, kind: str, d_model: int, d_mlp: int):
        super().__init__()
        self.kind = kind
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        if kind in ("swiglu", "paper_gated"):
            self.W_gate = nn.Parameter(torch.empty(d_model, d_mlp))
            self.b_gate = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre = HookPoint()
        self.hook_pre_linear = HookPoint()
        self.hook_post = HookPoint()

    def forward(
        self, x: Float[torch.Tensor, "batch pos d_model"]
    ) -> Float[torch.Tensor, "batch pos d_model"]:
        if self.kind == "gelu":
            post = F.gelu(self.hook_pre(x @ self.W_in + self.b_in))
        else:
            gate = self.hook_pre(x @ self.W_gate + self.b_gate)
            linear = self.hook_pre_linear(x @ self.W_in + self.b_in)
            post = F.silu(gate) * linear if self.kind == "swiglu" else F.silu(gate * linear)
        return self.hook_post(post) @ self.W_out + self.b_out


class Block(nn.Module):
    """A pre-norm block: ``resid_mid = resid_pre + attn(ln1(resid_pre))``,
    ``resid_post = resid_mid + mlp(ln2(resid_mid))``."""

    def __init__(self, norm: str, mlp: str, d_model: int, d_mlp: int, attn: Attention):
        super().__init__()
        self.ln1 = Norm(norm, d_model)
        self.attn = attn
        self.has_mlp = mlp != "none"
        if self.has_mlp:
            self.ln2 = Norm(norm, d_model)
            self.mlp = MLP(mlp, d_model, d_mlp)
            self.hook_resid_mid = HookPoint()
            self.hook_mlp_out = HookPoint()
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(
        self, resid: Float[torch.Tensor, "batch pos d_model"], query_only: bool = False
    ) -> Float[torch.Tensor, "batch out_pos d_model"]:
        """The block's output at every position, or with ``query_only`` at the last one only."""
        resid = self.hook_resid_pre(resid)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid), query_only))
        resid = (resid[:, -1:] if query_only else resid) + attn_out
        if self.has_mlp:
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class GeluMLP(nn.Module):
    """``W_out gelu(x W_in + b_in) + b_out`` on vectors: the multimodal projector (SCIENCE.md
    section 4: M2 vectors -> the decoder's D1-dim input space, LLaVA-style) and the MLP M2
    encoder share this form."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_in, d_hidden))
        self.b_in = nn.Parameter(torch.zeros(d_hidden))
        self.W_out = nn.Parameter(torch.empty(d_hidden, d_out))
        self.b_out = nn.Parameter(torch.zeros(d_out))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Float[torch.Tensor, "*batch d_in"]) -> Float[torch.Tensor, "*batch d_out"]:
        return self.hook_post(F.gelu(self.hook_pre(x @ self.W_in + self.b_in))) @ self.W_out + self.b_out
