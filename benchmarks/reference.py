"""Plain-PyTorch references for the benchmark (no hooks, no toolkit code).

Two references:

- :class:`PlainICLModel`: the same math as our ``ICLTransformer`` (one-hot APE concatenated,
  pre-RMSNorm, causal softmax attention, read-out at the query), as ``nn.Linear`` layers. Our
  model's step is timed against it to measure what the hooks cost (``ours_vs_plain``).
- :class:`PublishedStage1Model` + :class:`PublishedStage1Data` + :func:`make_reference_step`:
  the paper's stage-1 training step as the published code runs it, written from
  ``../shared/spec/PUBLISHED.md`` only (never from its code): model, data sampling in one
  DataLoader worker, Adam. Every ratio at the paper's point is measured against it.

What the spec fixes (its table): no input embedding (features and the one-hot position block
enter the residual stream as they are; the block first, width ``2 n_max + 1``, a random shift
in ``[0, 2 n_max + 1 - (2N + 1)]``); ``head_dim = dim // n_heads``; W_Q, W_K, W_V without bias,
init N(0, 0.02); W_O only when ``n_heads > 1`` (N(0, 0.02)); RMSNorm (eps 1e-5) before attention
and MLP; the MLP ``fc3(silu(fc1 x * fc2 x))`` (the spec's table writes ``fc3(silu(fc1 x) * fc2 x)``;
the published ``model.py`` at 5e9cd68 applies SiLU to the product, as ours does)
with ``d_mlp = dim`` and ``nn.Linear``'s default
init (its own init is never called); the read-out ``Linear(dim, n_labels, bias=False)``,
N(0, 0.02); Adam, lr 1e-3, weight decay 1e-6, no clipping; batch 128; one DataLoader worker.
What it leaves open, and the choice made here: a final RMSNorm before the read-out (as in our
model, which the spec calls the same); the read-out at the query position only (the cheapest
choice, so ratios against this reference are not flattered); the task's sampling math is
SCIENCE.md's (the spec: "the data sampler needs no change"), one sequence at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

# ---------------------------------------------------------------------------- our math, plain


class PlainRMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * w``."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Float[torch.Tensor, "*batch d"]) -> Float[torch.Tensor, "*batch d"]:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class PlainBlock(nn.Module):
    """A pre-norm block of our model's math: fused qkv, W_O, optional gated MLP."""

    def __init__(self, d: int, n_heads: int, mlp: str):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.norm1 = PlainRMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.mlp = mlp
        if mlp == "paper_gated":
            self.norm2 = PlainRMSNorm(d)
            self.fc1 = nn.Linear(d, d)
            self.fc2 = nn.Linear(d, d)
            self.fc3 = nn.Linear(d, d)

    def forward(
        self, x: Float[torch.Tensor, "b p d"], mask: Float[torch.Tensor, "p p"]
    ) -> Float[torch.Tensor, "b p d"]:
        b, p, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, p, 3, self.n_heads, self.d_head).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head) + mask
        z = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, p, d)
        x = x + self.out(z)
        if self.mlp == "paper_gated":
            h = self.norm2(x)
            x = x + self.fc3(F.silu(self.fc1(h) * self.fc2(h)))
        return x


class PlainICLModel(nn.Module):
    """Same shapes and operations as ICLTransformer with onehot positions and RMSNorm."""

    def __init__(self, d_input: int, n_labels: int, n_layers: int, n_heads: int, pos_width: int, mlp: str):
        super().__init__()
        d = d_input + pos_width
        self.pos_width = pos_width
        self.blocks = nn.ModuleList(PlainBlock(d, n_heads, mlp) for _ in range(n_layers))
        self.norm = PlainRMSNorm(d)
        self.readout = nn.Linear(d, n_labels)

    def forward(
        self, x: Float[torch.Tensor, "b p d_in"], shift: Int[torch.Tensor, " b"]
    ) -> Float[torch.Tensor, "b l"]:
        b, p, _ = x.shape
        index = torch.arange(p)[None, :] + shift[:, None]
        block = torch.zeros(b, p, self.pos_width).scatter_(2, index[..., None], 1.0)
        x = torch.cat([x, block], -1)
        mask = torch.full((p, p), float("-inf")).triu(1)
        for blk in self.blocks:
            x = blk(x, mask)
        return self.readout(self.norm(x[:, -1]))


# ---------------------------------------------------------------------------- the published step


@dataclass(frozen=True)
class PaperPoint:
    """The paper's stage-1 point and the published code's defaults (PUBLISHED.md)."""

    K: int = 8192
    L: int = 32
    D: int = 64
    N: int = 8
    B: int = 2
    p_B: float = 1.0
    eps: float = 0.1
    alpha: float = 0.0
    n_max: int = 32
    n_layers: int = 2
    n_heads: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-6

    @property
    def pos_width(self) -> int:
        return 2 * self.n_max + 1

    @property
    def n_ctx(self) -> int:
        return 2 * self.N + 1


def _normal_linear(d_in: int, d_out: int, g: torch.Generator) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(d_out, d_in, generator=g) * 0.02)
    return layer


class PublishedAttention(nn.Module):
    """Causal attention: separate bias-free W_Q, W_K, W_V; W_O only with more than one head."""

    def __init__(self, dim: int, n_heads: int, g: torch.Generator):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        width = n_heads * self.head_dim
        self.wq, self.wk, self.wv = (_normal_linear(dim, width, g) for _ in range(3))
        self.wo = _normal_linear(width, dim, g) if n_heads > 1 else None

    def forward(self, x: Float[torch.Tensor, "b p dim"]) -> Float[torch.Tensor, "b p dim"]:
        b, p, _ = x.shape
        q, k, v = (
            w(x).view(b, p, self.n_heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv)
        )
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        causal = torch.ones(p, p, dtype=torch.bool, device=x.device).triu(1)
        z = F.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v
        z = z.transpose(1, 2).reshape(b, p, self.n_heads * self.head_dim)
        return self.wo(z) if self.wo is not None else z


class PublishedMLP(nn.Module):
    """``fc3(silu(fc1 x * fc2 x))``, width ``dim``, ``nn.Linear`` default init (with biases)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: Float[torch.Tensor, "b p dim"]) -> Float[torch.Tensor, "b p dim"]:
        return self.fc3(F.silu(self.fc1(x) * self.fc2(x)))


class PublishedBlock(nn.Module):
    """``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, n_heads: int, g: torch.Generator):
        super().__init__()
        self.attention_norm, self.attention = PlainRMSNorm(dim), PublishedAttention(dim, n_heads, g)
        self.ffn_norm, self.feed_forward = PlainRMSNorm(dim), PublishedMLP(dim)

    def forward(self, x: Float[torch.Tensor, "b p dim"]) -> Float[torch.Tensor, "b p dim"]:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class PublishedStage1Model(nn.Module):
    """The published stage-1 model: one-hot block first, then the D features, as they are."""

    def __init__(self, point: PaperPoint = PaperPoint(), seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)  # nn.Linear's default init (the MLPs) draws from the global RNG
        g = torch.Generator().manual_seed(seed)
        self.pos_width = point.pos_width
        dim = point.pos_width + point.D
        self.layers = nn.ModuleList(PublishedBlock(dim, point.n_heads, g) for _ in range(point.n_layers))
        self.norm = PlainRMSNorm(dim)
        self.output = _normal_linear(dim, point.L, g)

    def forward(
        self, x: Float[torch.Tensor, "b p d"], shift: Int[torch.Tensor, " b"]
    ) -> Float[torch.Tensor, "b n_labels"]:
        """Label logits at the last position (the query)."""
        b, p, _ = x.shape
        index = torch.arange(p, device=x.device)[None, :] + shift[:, None]
        onehot = torch.zeros(b, p, self.pos_width, device=x.device).scatter_(2, index[..., None], 1.0)
        h = torch.cat([onehot, x], -1)
        for layer in self.layers:
            h = layer(h)
        return self.output(self.norm(h[:, -1]))


class PublishedStage1Data(torch.utils.data.IterableDataset):
    """Stage-1 training sequences drawn one at a time (a DataLoader collates the batch).

    Class means and label vectors ~ N(0, I_D / D), drawn once from ``seed``; class k has label
    k mod L. A sequence is bursty with probability p_B (N/B classes from the Zipf law, each B
    times, shuffled; the query's class is one of them), else N + 1 classes i.i.d.; an item of
    class k is ``(mu_k + eps eta / sqrt(D)) / sqrt(1 + eps^2)``. Yields ``(x [2N+1, D], shift,
    target)`` with items and label vectors interleaved and the query last.
    """

    def __init__(self, point: PaperPoint = PaperPoint(), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.point, self.seed = point, seed
        self.means = torch.randn(point.K, point.D, generator=g) / math.sqrt(point.D)
        self.labels = torch.randn(point.L, point.D, generator=g) / math.sqrt(point.D)
        ranks = torch.arange(1, point.K + 1, dtype=torch.float64)
        self.probs = (ranks.pow(-point.alpha) / ranks.pow(-point.alpha).sum()).float()

    def _classes(self, n: int, g: torch.Generator) -> Int[torch.Tensor, " n"]:
        if self.point.alpha == 0:
            return torch.randint(self.point.K, (n,), generator=g)
        return torch.multinomial(self.probs, n, replacement=True, generator=g)

    def sequence(
        self, g: torch.Generator
    ) -> tuple[Float[torch.Tensor, "p d"], Int[torch.Tensor, ""], Int[torch.Tensor, ""]]:
        """One sequence, its one-hot shift and its query's label."""
        pt = self.point
        if pt.B > 0 and torch.rand((), generator=g) < pt.p_B:
            slots = self._classes(pt.N // pt.B, g)
            context = slots.repeat_interleave(pt.B)[torch.randperm(pt.N, generator=g)]
            query = slots[torch.randint(pt.N // pt.B, (), generator=g)]
        else:
            drawn = self._classes(pt.N + 1, g)
            context, query = drawn[: pt.N], drawn[pt.N]
        classes = torch.cat([context, query[None]])
        noise = torch.randn(pt.N + 1, pt.D, generator=g) * (pt.eps / math.sqrt(pt.D))
        items = (self.means[classes] + noise) / math.sqrt(1 + pt.eps**2)
        x = torch.empty(pt.n_ctx, pt.D)
        x[0 : 2 * pt.N : 2] = items[: pt.N]
        x[1 : 2 * pt.N : 2] = self.labels[context % pt.L]
        x[2 * pt.N] = items[pt.N]
        shift = torch.randint(pt.pos_width - pt.n_ctx + 1, (), generator=g)
        return x, shift, query % pt.L

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        g = torch.Generator().manual_seed(self.seed * 1000 + (info.id if info else 0) + 1)
        while True:
            yield self.sequence(g)


def make_reference_step(
    point: PaperPoint = PaperPoint(), seed: int = 0, num_workers: int = 1
) -> tuple[Callable[[], float], Callable[[], None]]:
    """The published stage-1 training step as a function of no arguments, and a ``close``.

    Each call takes the next batch from a DataLoader (``num_workers`` worker processes, 1 as
    published), runs the forward pass, cross-entropy at the query, backward and an Adam step,
    and returns the loss. ``close`` stops the workers.
    """
    model = PublishedStage1Model(point, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=point.lr, weight_decay=point.weight_decay)
    loader = torch.utils.data.DataLoader(
        PublishedStage1Data(point, seed), batch_size=point.batch_size, num_workers=num_workers
    )
    batches = iter(loader)

    def step() -> float:
        x, shift, target = next(batches)
        loss = F.cross_entropy(model(x, shift), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    def close() -> None:
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    return step, close
