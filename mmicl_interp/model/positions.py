"""Position encodings: one-hot APE, RoPE (correct and published), ALiBi.

- One-hot APE (Reddy 2024; Huang et al. 2026): a block of width ``P = 2*n_max + 1`` holding
  ``e_{t + s}`` at position t, with a random per-sequence shift ``s in [0, P - n_ctx]``;
  the block is concatenated to the features, so the model width is ``d_embed + P``.
- RoPE (Su et al. 2021): each adjacent pair ``(x_{2i}, x_{2i+1})`` of a query or key at
  position t is rotated by the angle ``t * theta^(-2i/d)``. A rotation preserves norms, and
  ``<R_t q, R_u k>`` depends on ``t - u`` only. Adjacent pairs are the layout of
  TransformerLens's native model, so the two agree on the same weights.
- ``rope_paper``: the published code's variant, which takes cos/sin in the half-split layout
  ``[f_0..f_{d/2-1}, f_0..f_{d/2-1}]`` but an interleaved ``rotate_half``
  ``x -> [-x_1, -x_3, ..., x_0, x_2, ...]``. The two layouts disagree, so the map is not a
  rotation: norms change and q.k is not a function of the offset alone (SCIENCE.md flaw 1).
- ALiBi (Press et al. 2022): the score of query t on key u gets ``-m_h * (t - u)`` with
  head slopes ``m_h = 2^(-8 (h+1) / n_heads)``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int


def onehot_block(
    n_ctx: int, width: int, shift: Int[torch.Tensor, " batch"], check: bool = True
) -> Float[torch.Tensor, "batch pos width"]:
    """The one-hot position block: row t of sequence b is ``e_{t + shift[b]}``.

    ``check=False`` skips the data-dependent range check (for ``torch.func.vmap``).
    """
    if n_ctx > width:
        raise ValueError(f"sequence length {n_ctx} exceeds the one-hot block width {width}")
    if check and shift.numel() and int(shift.max()) > width - n_ctx:
        raise ValueError(f"pos_shift must be <= {width - n_ctx}, got {int(shift.max())}")
    index = torch.arange(n_ctx, device=shift.device)[None, :] + shift[:, None]
    return (index[..., None] == torch.arange(width, device=shift.device)).float()


def rope_tables(
    n_ctx: int, d_head: int, theta: float, layout: str = "adjacent"
) -> tuple[Float[torch.Tensor, "pos d_head"], Float[torch.Tensor, "pos d_head"]]:
    """cos and sin tables; ``layout`` is ``adjacent`` (correct) or ``half`` (the paper's)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head))
    freqs = torch.outer(torch.arange(n_ctx, dtype=torch.float64), inv_freq)
    if layout == "adjacent":
        angles = freqs.repeat_interleave(2, dim=-1)
    elif layout == "half":
        angles = torch.cat([freqs, freqs], dim=-1)
    else:  # pragma: no cover - internal
        raise ValueError(layout)
    return angles.cos().float(), angles.sin().float()


def rotate_adjacent(x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
    """``(x_0, x_1, x_2, x_3, ...) -> (-x_1, x_0, -x_3, x_2, ...)``: a quarter turn per pair."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def rotate_half_paper(x: Float[torch.Tensor, "... d"]) -> Float[torch.Tensor, "... d"]:
    """The published ``rotate_half``: ``cat(-x[1::2], x[::2])`` (interleaved halves)."""
    return torch.cat((-x[..., 1::2], x[..., 0::2]), dim=-1)


def apply_rope(
    x: Float[torch.Tensor, "batch head pos d_head"],
    cos: Float[torch.Tensor, "pos d_head"],
    sin: Float[torch.Tensor, "pos d_head"],
    paper: bool = False,
) -> Float[torch.Tensor, "batch head pos d_head"]:
    """Rotate queries or keys by their position (``paper=True``: the published non-rotation)."""
    rotate = rotate_half_paper if paper else rotate_adjacent
    return x * cos + rotate(x) * sin


def alibi_slopes(n_heads: int) -> Float[torch.Tensor, " head"]:
    """ALiBi head slopes ``2^(-8 (h+1) / n_heads)``."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])


def alibi_bias(n_heads: int, n_ctx: int) -> Float[torch.Tensor, "head pos pos"]:
    """The additive ALiBi score bias ``-m_h * (t - u)`` (zero on and above the diagonal)."""
    t = torch.arange(n_ctx)
    distance = (t[:, None] - t[None, :]).clamp(min=0).float()
    return -alibi_slopes(n_heads)[:, None, None] * distance
