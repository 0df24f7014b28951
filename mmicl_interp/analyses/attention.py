"""Attention-based circuit measures, per layer and per head (SCIENCE.md section 5).

A is a head's attention pattern (query rows, key columns), q the read-out (query) position,
M the exemplars whose label equals the query's target label and U the rest; ``p_lab(i)``
and ``p_item(i)`` are exemplar i's label and item positions, taken from the run's layout.

- ``prev_token``: mean over positions t >= 1 of ``A[t, t-1]`` (Olsson et al. 2022).
- ``prev_token_label``: the same over label positions only (label -> its item), the
  sharper precursor of the induction circuit. ``prev_token_label2`` (multimodal layouts,
  offset 2: label -> M1 item) appears when the layout has two modalities.
- ``ih`` (induction strength): per sequence, mean over M of ``A[q, p_lab(i)]`` minus mean
  over U (an empty set counts 0), averaged over sequences.
- ``tila``: mean over M of ``A[q, p_lab(i)]``; ``tiia``: the same to the matching items
  (one per modality, ``tiia_m1`` / ``tiia_m2`` on multimodal layouts); ``tla``: total
  attention from q to all N labels.

Unlike the published code, all N labels count and every head is scored separately.
Patterns come from a cache limited to ``hook_pattern`` (``names_filter``), batched over
sequences and heads, under ``torch.no_grad``.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float

from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch


def _masked_mean(
    values: Float[torch.Tensor, "batch head n"], mask: Bool[torch.Tensor, "batch n"]
) -> Float[torch.Tensor, "batch head"]:
    """Mean over the masked exemplars; 0 where the mask is empty."""
    m = mask[:, None, :].to(values.dtype)
    count = m.sum(-1)
    return (values * m).sum(-1) / count.clamp(min=1.0)


def pattern_measures(
    pattern: Float[torch.Tensor, "batch head q k"],
    matches: Bool[torch.Tensor, "batch n"],
    layout: Layout,
) -> dict[str, Float[torch.Tensor, " head"]]:
    """Every measure for one layer's attention pattern, averaged over the batch."""
    labels = layout.labels().to(pattern.device)
    q = layout.readout_position
    out: dict[str, torch.Tensor] = {}
    diag = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # A[t, t-1] for t = 1..pos-1
    out["prev_token"] = diag.mean(dim=(0, 2))
    out["prev_token_label"] = diag[..., labels - 1].mean(dim=(0, 2))
    if len(layout.modalities) > 1:
        diag2 = pattern.diagonal(offset=-2, dim1=-2, dim2=-1)  # A[t, t-2]
        out["prev_token_label2"] = diag2[..., labels - 2].mean(dim=(0, 2))
    to_labels = pattern[:, :, q, labels]  # [batch, head, n]
    out["ih"] = (_masked_mean(to_labels, matches) - _masked_mean(to_labels, ~matches)).mean(0)
    out["tila"] = _masked_mean(to_labels, matches).mean(0)
    out["tla"] = to_labels.sum(-1).mean(0)
    for modality in layout.modalities:
        items = layout.items(modality).to(pattern.device)
        name = "tiia" if len(layout.modalities) == 1 else f"tiia_{modality}"
        out[name] = _masked_mean(pattern[:, :, q, items], matches).mean(0)
    return out


@torch.no_grad()
def attention_measures(
    model: torch.nn.Module,
    batch: Batch,
    layout: Layout,
    chunk: int = 1000,
) -> dict[str, Float[torch.Tensor, "layer head"]]:
    """All attention measures of every head of ``model`` on ``batch``: name -> [layer, head]."""
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    matches = batch.matches()
    sums: dict[str, torch.Tensor] = {}
    total = len(batch)
    for start in range(0, total, chunk):
        part = slice(start, start + chunk)
        _, cache = model.run_with_cache(
            batch.inputs[part],
            batch.pos_shift[part],
            names_filter=names.__contains__,
            return_cache_object=False,
        )
        weight = batch.inputs[part].shape[0] / total
        for layer, name in enumerate(names):
            for metric, value in pattern_measures(cache[name], matches[part], layout).items():
                acc = sums.setdefault(metric, torch.zeros(n_layers, value.shape[0]))
                acc[layer] += value * weight
    return sums


@torch.no_grad()
def context_label_accuracy(logits: Float[torch.Tensor, "batch n_labels"], batch: Batch) -> float:
    """CLA: fraction of predictions that are one of the labels present in the context."""
    prediction = logits.argmax(-1)
    return (batch.context_labels == prediction[:, None]).any(-1).float().mean().item()
