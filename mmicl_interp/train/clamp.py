"""Head clamping: one head's attention replaced by a perfect pattern, through its hook point.

Singh et al. (2024) clamp a head to an ideal pattern during training to ask what a circuit's
formation depends on. Here ``train.clamp_pattern`` (``prev_token`` or ``induction``),
``train.clamp_layer``, ``train.clamp_head`` and the step range ``[clamp_start, clamp_end)``
choose the head and when; the trainer then adds a forward hook on
``blocks.{layer}.attn.hook_pattern`` around each update and eval of those steps (no forked
model). The hook is prepended, so every other hook on that point (caches, the attention
measures) sees the clamped pattern, and it returns a new tensor (the softmax output is not
written in place), so gradients still reach every other parameter; the clamped head's W_Q,
W_K (and biases) get none through its pattern while it is clamped.

The perfect patterns, built from the task's :class:`~mmicl_interp.data.layout.Layout` so that
the clamped head scores the maximum of the matching measure of
:mod:`mmicl_interp.analyses.attention`:

- ``prev_token``: ``A[t, t-1] = 1`` for every t >= 1 and ``A[0, 0] = 1`` (the first position
  can only attend to itself): ``prev_token = prev_token_label = 1`` (with two modalities
  ``prev_token_label2`` = 0: the label's previous token is the M2 item).
- ``induction`` (per sequence: it depends on the labels shown): each query row spreads its
  attention evenly over the label positions of the matching exemplars M (label = the query's
  target, the M of the measures), and each exemplar's item rows over the labels of the earlier
  exemplars with the same label; a row with no such label (the label rows, the first items)
  attends to itself. Then ``tla = 1`` and ``ih = tila = 1/|M|`` per sequence, the largest
  value a pattern (rows sum to 1) can give: exactly 1 when one exemplar matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from mmicl_interp.config import TrainConfig
from mmicl_interp.data.layout import Layout

HookList = list[tuple[str, Callable]]


def prev_token_pattern(n_ctx: int) -> Float[torch.Tensor, "q k"]:
    """The perfect previous-token pattern: row t puts all its attention on t-1 (row 0 on 0)."""
    pattern = torch.zeros(n_ctx, n_ctx)
    pattern[0, 0] = 1.0
    rows = torch.arange(1, n_ctx)
    pattern[rows, rows - 1] = 1.0
    return pattern


def induction_pattern(
    layout: Layout, context_labels: Int[torch.Tensor, "batch n"], targets: Int[torch.Tensor, " batch"]
) -> Float[torch.Tensor, "batch q k"]:
    """The perfect induction pattern of each sequence (module docstring): query rows -> the labels
    of the exemplars whose label is the target, item rows -> earlier same-label exemplars' labels,
    other rows -> themselves."""
    n_batch, n = context_labels.shape
    if n != layout.n_exemplars:
        raise ValueError(f"context_labels has {n} exemplars, the layout {layout.n_exemplars}")
    device = context_labels.device
    p = layout.n_ctx
    # the label each row looks for (-1: none) and the exemplars it may look at (i < limit)
    wanted = torch.full((n_batch, p), -1, dtype=torch.long, device=device)
    limit = torch.zeros(p, dtype=torch.long, device=device)
    for positions in layout.item_positions.values():
        index = torch.tensor(positions, device=device)
        wanted[:, index] = context_labels
        limit[index] = torch.arange(n, device=device)
    for position in layout.query_positions.values():
        wanted[:, position] = targets
        limit[position] = n
    earlier = torch.arange(n, device=device)[None, :] < limit[:, None]  # [row, exemplar]
    hits = (context_labels[:, None, :] == wanted[:, :, None]) & earlier[None] & (wanted[:, :, None] >= 0)
    weights = hits.float()
    count = weights.sum(-1, keepdim=True)
    pattern = torch.zeros(n_batch, p, p, device=device)
    pattern[:, :, layout.labels().to(device)] = weights / count.clamp(min=1.0)
    alone = torch.arange(p, device=device)
    pattern[:, alone, alone] += (count[..., 0] == 0).float()
    return pattern


@dataclass(frozen=True)
class Clamp:
    """Which head is clamped to which pattern, over which steps ``[start, end)``."""

    pattern: str
    layer: int
    head: int
    start: int
    end: int

    @classmethod
    def from_config(cls, tc: TrainConfig) -> Clamp | None:
        """The clamp ``train.clamp_*`` asks for, or None (``clamp_pattern = "none"``)."""
        if tc.clamp_pattern == "none":
            return None
        return cls(tc.clamp_pattern, tc.clamp_layer, tc.clamp_head, tc.clamp_start, tc.clamp_end)

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    @property
    def needs_batch(self) -> bool:
        """Whether the pattern depends on the sequence (induction) rather than the layout only."""
        return self.pattern == "induction"

    def active(self, step: int) -> bool:
        """Whether the clamp acts on the update and eval of ``step``."""
        return self.start <= step < self.end

    def target(self, layout: Layout, batch=None) -> Float[torch.Tensor, "batch q k"]:
        """The perfect pattern for ``batch`` (a :class:`~mmicl_interp.data.task.Batch`; only
        ``context_labels`` and ``targets`` are read, and only for ``induction``); batch size 1
        for ``prev_token``."""
        if self.pattern == "prev_token":
            return prev_token_pattern(layout.n_ctx)[None]
        if self.pattern == "induction":
            if batch is None:
                raise ValueError("clamp: an induction pattern depends on the sequence; pass the batch")
            return induction_pattern(layout, batch.context_labels, batch.targets)
        raise ValueError(f"clamp pattern must be prev_token or induction, got {self.pattern!r}")

    def hook(self, layout: Layout, batch=None) -> Callable:
        """The forward hook that puts :meth:`target` into head ``self.head`` of the pattern.

        Handles the read-out-only last layer of training (one query row: the last row of the
        target) and any dtype (autocast); the other heads pass unchanged.
        """
        target = self.target(layout, batch)
        head = self.head

        def clamp_pattern(pattern: Float[torch.Tensor, "batch head q k"], hook) -> torch.Tensor:
            n_batch, n_heads, q, k = pattern.shape
            if k != target.shape[-1] or target.shape[0] not in (1, n_batch):
                raise ValueError(
                    f"clamp: pattern {tuple(pattern.shape)} does not fit the layout's "
                    f"{tuple(target.shape)} (sequence length or batch differs)"
                )
            rows = target[:, k - q :].to(device=pattern.device, dtype=pattern.dtype)
            chosen = torch.arange(n_heads, device=pattern.device) == head
            return torch.where(chosen[None, :, None, None], rows[:, None], pattern)

        return clamp_pattern


@contextmanager
def clamped(model: torch.nn.Module, clamp: Clamp | None, layout: Layout, batch=None) -> Iterator[None]:
    """Within this block ``model``'s forward passes run with ``clamp`` (None: unchanged).

    The hook is prepended on its hook point, so other hooks there see the clamped pattern, and
    removed on exit (also on an error), leaving every other hook in place.
    """
    if clamp is None:
        yield
        return
    point = model.hook_dict[clamp.hook_name]
    handle = point.add_hook(clamp.hook(layout, batch), dir="fwd", prepend=True)
    try:
        yield
    finally:
        handle.hook.remove()
        point.fwd_hooks = [h for h in point.fwd_hooks if h is not handle]


__all__ = ["Clamp", "clamped", "induction_pattern", "prev_token_pattern"]
