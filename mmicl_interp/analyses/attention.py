"""Attention-based circuit measures, per layer and per head (SCIENCE.md section 5).

Every measure reads a head's attention pattern ``A^b`` on prompt b (query rows, key
columns) through the prompt seam (:class:`~mmicl_interp.prompts.ICLPrompts`): per prompt,
the read-out row ``q_b``, each exemplar i's label span ``Lab_i = [s_i, e_i)`` and item spans
``It^m_i`` (one per modality m), the matching exemplars M_b (label = the target) and the rest
U_b, and the real (non-padding) tokens V_b. Attention from row r to a span S is the total
mass on its tokens, ``A[r, S] = sum_{t in S} A[r, t]``. Definitions:

- ``prev_token`` (Olsson et al. 2022): ``mean_{t in T_b} A^b[t, t-1]`` over
  ``T_b = {t >= 1 : t and t-1 in V_b}``.
- ``prev_token_label`` (label -> its item, the sharper precursor of the induction circuit):
  ``mean_i A^b[s_i, last(i, 1)]``, from the label's first token to the last token of the
  item before it: ``last(i, k)`` is the last token of the k-th nearest of exemplar i's item
  spans that end at or before ``s_i``. ``prev_token_label2`` (two or more modalities):
  the same with ``last(i, 2)`` (the triplet layout: label -> M1 item, past the M2 item).
- ``tila = mean_{i in M_b} A^b[q_b, Lab_i]`` (0 when M_b is empty);
  ``ih`` (induction strength) ``= tila - mean_{i in U_b} A^b[q_b, Lab_i]`` (an empty U_b
  counts 0); ``tla = sum_i A^b[q_b, Lab_i]``.
- ``tiia = mean_{i in M_b} A^b[q_b, It^m1_i]``; with two or more modalities one per modality,
  ``tiia_m1``, ``tiia_m2``, ...

Each is computed per prompt, then averaged over prompts (every prompt weighs the same).
Exemplars with an empty label span are absent and count nowhere. With one-token spans and
no padding (the synthetic layouts) these are the earlier fixed-layout definitions:
``A[t, t-1]`` over all / label positions (offset 2 for ``prev_token_label2``),
``A[q, p_lab(i)]`` and ``A[q, p_item(i)]``.

Unlike the published code, all N labels count and every head is scored separately.
Patterns are reduced inside a forward hook on each ``blocks.{l}.attn.hook_pattern``, so
no layer's full pattern outlives its layer; batched over prompts (``chunk`` at a time) and
heads, under ``torch.no_grad``, on the model's device.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int

from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch
from mmicl_interp.prompts import ICLPrompts, as_prompts, one_token_spans


def _masked_mean(
    values: Float[torch.Tensor, "batch head n"], mask: Bool[torch.Tensor, "batch n"]
) -> Float[torch.Tensor, "batch head"]:
    """Mean over the masked exemplars; 0 where the mask is empty."""
    m = mask[:, None, :].to(values.dtype)
    count = m.sum(-1)
    return (values * m).sum(-1) / count.clamp(min=1.0)


def span_attention(
    rows: Float[torch.Tensor, "batch head k"], spans: Int[torch.Tensor, "batch n 2"]
) -> Float[torch.Tensor, "batch head n"]:
    """Attention from one row per prompt to each span: ``sum_{t in [start, end)} rows[b, h, t]``.

    A gather of the spans' tokens (no cumulative sums, no matmul), so a one-token span gives
    exactly the attention to that token.
    """
    n_batch, n_heads, n_keys = rows.shape
    n = spans.shape[1]
    if n == 0:
        return rows.new_zeros(n_batch, n_heads, 0)
    start, end = spans[..., 0], spans[..., 1]
    width = int((end - start).max().clamp(min=1))
    offsets = torch.arange(width, device=rows.device)
    positions = start[..., None] + offsets  # [batch, n, width]
    inside = positions < end[..., None]
    index = positions.clamp(0, n_keys - 1).reshape(n_batch, 1, n * width).expand(-1, n_heads, -1)
    values = rows.gather(-1, index).reshape(n_batch, n_heads, n, width)
    if width == 1:
        return torch.where(inside[:, None, :, 0], values[..., 0], 0.0)
    return torch.where(inside[:, None], values, 0.0).sum(-1)


def _item_before_label(
    item_spans: dict[str, Int[torch.Tensor, "batch n 2"]], label_spans: Int[torch.Tensor, "batch n 2"]
) -> Int[torch.Tensor, "k batch n"]:
    """Last token of each exemplar's items that end at or before its label, nearest first (-1: none)."""
    label_start = label_spans[..., 0]
    ends = torch.stack([s[..., 1] for s in item_spans.values()])  # [modality, batch, n]
    starts = torch.stack([s[..., 0] for s in item_spans.values()])
    usable = (ends <= label_start) & (ends > starts)
    last = torch.where(usable, ends - 1, -1)
    return last.sort(dim=0, descending=True).values


def _prompt_pattern_measures(
    pattern: Float[torch.Tensor, "batch head q k"],
    item_spans: dict[str, Int[torch.Tensor, "batch n 2"]],
    label_spans: Int[torch.Tensor, "batch n 2"],
    readout: Int[torch.Tensor, " batch"],
    matches: Bool[torch.Tensor, "batch n"],
    real: Bool[torch.Tensor, "batch pos"] | None,
) -> dict[str, Float[torch.Tensor, " head"]]:
    device = pattern.device
    item_spans = {m: s.to(device) for m, s in item_spans.items()}
    label_spans, readout, matches = label_spans.to(device), readout.to(device), matches.to(device)
    n_batch = pattern.shape[0]
    batch_index = torch.arange(n_batch, device=device)
    present = label_spans[..., 1] > label_spans[..., 0]
    out: dict[str, torch.Tensor] = {}
    diag = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # A[t, t-1] for t = 1..pos-1
    if real is None:
        out["prev_token"] = diag.mean(dim=(0, 2))
    else:
        real = real.to(device).bool()
        pairs = real[:, 1:] & real[:, :-1]
        out["prev_token"] = _masked_mean(diag, pairs).mean(0)
    before = _item_before_label(item_spans, label_spans)
    label_start = label_spans[..., 0].clamp(max=pattern.shape[-2] - 1)
    names = ["prev_token_label"] + (["prev_token_label2"] if len(item_spans) > 1 else [])
    for name, last in zip(names, before, strict=False):
        values = pattern[batch_index[:, None], :, label_start, last.clamp(min=0)]  # [batch, n, head]
        out[name] = _masked_mean(values.transpose(1, 2), present & (last >= 0)).mean(0)
    rows = pattern[batch_index, :, readout]  # [batch, head, k]: each prompt's read-out row
    to_labels = span_attention(rows, label_spans)
    hit, miss = matches & present, ~matches & present
    out["ih"] = (_masked_mean(to_labels, hit) - _masked_mean(to_labels, miss)).mean(0)
    out["tila"] = _masked_mean(to_labels, hit).mean(0)
    out["tla"] = to_labels.sum(-1).mean(0)
    for modality, spans in item_spans.items():
        name = "tiia" if len(item_spans) == 1 else f"tiia_{modality}"
        out[name] = _masked_mean(span_attention(rows, spans), hit).mean(0)
    return out


def pattern_measures(
    pattern: Float[torch.Tensor, "batch head q k"],
    prompts: ICLPrompts | Bool[torch.Tensor, "batch n"],
    layout: Layout | None = None,
) -> dict[str, Float[torch.Tensor, " head"]]:
    """Every measure for one layer's attention pattern, averaged over the prompts.

    ``pattern_measures(pattern, prompts)`` reads the spans of ``prompts`` (an
    :class:`ICLPrompts` of the same batch); ``pattern_measures(pattern, matches, layout)``
    (the fixed-layout form) puts every prompt's parts where ``layout`` says.
    """
    if isinstance(prompts, ICLPrompts):
        return _prompt_pattern_measures(
            pattern,
            prompts.item_spans,
            prompts.label_spans,
            prompts.readout_position,
            prompts.matches,
            prompts.token_mask,
        )
    if layout is None:
        raise ValueError("layout: pattern_measures(pattern, matches, layout) needs the layout")
    n_batch, device = pattern.shape[0], pattern.device
    return _prompt_pattern_measures(
        pattern,
        {m: one_token_spans(p, n_batch, device) for m, p in layout.item_positions.items()},
        one_token_spans(layout.label_positions, n_batch, device),
        torch.full((n_batch,), layout.readout_position, dtype=torch.long, device=device),
        prompts,
        None,
    )


def _model_device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else fallback


@torch.no_grad()
def attention_measures(
    model: torch.nn.Module,
    prompts: ICLPrompts | Batch,
    layout: Layout | None = None,
    chunk: int = 1000,
) -> dict[str, Float[torch.Tensor, "layer head"]]:
    """All attention measures of every head of ``model`` on ``prompts``: name -> [layer, head].

    ``attention_measures(model, prompts)`` for any :class:`ICLPrompts`;
    ``attention_measures(model, batch, layout)`` for a synthetic-task batch (``layout``
    defaults to the batch's own, ``batch.layout``). Prompts are moved to the model's device, and
    the results stay there (float32).
    """
    prompts = as_prompts(prompts, layout)
    device = _model_device(model, prompts.device)
    prompts = prompts.to(device)
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(n_layers)]
    sums: dict[str, torch.Tensor] = {}
    total = len(prompts)
    for start in range(0, total, chunk):
        part = prompts[start : start + chunk]
        weight = len(part) / total
        seen: set[int] = set()

        def reducer(layer: int, part: ICLPrompts = part, weight: float = weight, seen: set[int] = seen):
            def reduce(pattern, hook):
                for metric, value in pattern_measures(pattern, part).items():
                    acc = sums.setdefault(metric, torch.zeros(n_layers, value.shape[0], device=value.device))
                    acc[layer] += value.float() * weight
                seen.add(layer)
                if len(seen) == n_layers:  # every pattern is reduced: the rest of the forward is unused
                    raise _PatternsDone

            return reduce

        hooks = [(name, reducer(layer)) for layer, name in enumerate(names)]
        try:
            model.run_with_hooks(part.inputs, **part.kwargs, fwd_hooks=hooks)
        except _PatternsDone:
            pass  # run_with_hooks removes its hooks on the way out
    return sums


class _PatternsDone(Exception):
    """Raised by the last pattern hook to skip the forward pass after it (nothing there is read)."""


@torch.no_grad()
def context_label_accuracy(
    logits: Float[torch.Tensor, "batch n_labels"], batch: Batch | ICLPrompts
) -> float:
    """CLA: fraction of predictions that are one of the labels present in the context."""
    prediction = logits.argmax(-1)
    labels = batch.context_labels.to(prediction.device)
    if isinstance(batch, ICLPrompts):  # absent exemplars (empty label spans) show no label
        labels = labels.masked_fill(~batch.exemplar_mask.to(labels.device), -1)
    return (labels == prediction[:, None]).any(-1).float().mean().item()


__all__ = ["attention_measures", "context_label_accuracy", "pattern_measures", "span_attention"]
