"""Per-layer/head attention scores and label accuracy of a real model, in one pass.

The measures are those of :mod:`mmicl_interp.analyses.attention` (``prev_token``,
``prev_token_label``, ``ih``, ``tila``, ``tiia``, ``tla``; ``tiia_m1``/``tiia_m2`` with two
modalities) with the same definitions, computed by its
:func:`~mmicl_interp.analyses.attention.pattern_measures` inside a hook on every
``blocks.{l}.attn.hook_pattern``: each layer's pattern is reduced to one number per head
as soon as it exists, so no layer's full pattern outlives its layer. TransformerLens's
bridge gives patterns per query head (``[batch, n_heads, q, k]``), so a GQA model is scored
per query head. The same forward gives the label logits (the next-token logits at the
read-out position, at each candidate label's first token), hence the accuracy. Prompts
run ``batch_size`` at a time; measures are averaged over all prompts (every prompt weighs
the same), as :func:`~mmicl_interp.analyses.attention.attention_measures` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Float

from mmicl_interp.analyses.attention import pattern_measures
from mmicl_interp.analyses.tidy import head_rows, tidy_table
from mmicl_interp.device import model_device
from mmicl_interp.progress import progress_bar
from mmicl_interp.prompts import ICLPrompts

METRICS: tuple[str, ...] = ("prev_token", "prev_token_label", "ih", "tila", "tiia", "tla")
"""The per-head metrics (with one modality), in the small-model table's names."""
EXTRA_COLUMNS = {"model": "string", "prompt_set": "string"}


@dataclass
class HeadScores:
    """Scores of every head and the label logits of one set of prompts."""

    measures: dict[str, Float[torch.Tensor, "layer head"]]
    label_logits: Float[torch.Tensor, "batch n_labels"]
    targets: torch.Tensor

    @property
    def accuracy(self) -> float:
        """Fraction of prompts whose largest candidate logit is the target's."""
        return (self.label_logits.argmax(-1) == self.targets).float().mean().item()


def chunks(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.no_grad()
def label_logits(
    model: torch.nn.Module, prompts: ICLPrompts, batch_size: int = 8, fwd_hooks=()
) -> Float[torch.Tensor, "batch n_labels"]:
    """Label logits of ``model`` on ``prompts`` (``batch_size`` prompts per forward), float32 on CPU."""
    device = model_device(model)
    out = []
    for part in chunks(len(prompts), batch_size):
        sub = prompts[part].to(device)
        out.append(sub.label_logits(sub.run(model, fwd_hooks)[0]).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def score_heads(
    model: torch.nn.Module,
    prompts: ICLPrompts,
    batch_size: int = 8,
    progress: bool = False,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
) -> HeadScores:
    """Every measure of every head ([layer, head], float32 on CPU) and the label logits.

    ``fwd_hooks`` run before the measuring hooks (e.g. to edit a pattern)."""
    device = model_device(model)
    n_layers, total = model.cfg.n_layers, len(prompts)
    sums: dict[str, torch.Tensor] = {}
    logits = []
    bar = progress_bar(total, "scoring heads", progress, unit="prompt")
    try:
        for part in chunks(total, batch_size):
            sub = prompts[part].to(device)
            weight = len(sub) / total

            def reducer(layer: int, sub: ICLPrompts = sub, weight: float = weight):
                def reduce(pattern, hook):
                    for metric, value in pattern_measures(pattern, sub).items():
                        acc = sums.setdefault(
                            metric, torch.zeros(n_layers, value.shape[0], device=value.device)
                        )
                        acc[layer] += value.float() * weight

                return reduce

            hooks = [(f"blocks.{layer}.attn.hook_pattern", reducer(layer)) for layer in range(n_layers)]
            out, _ = sub.run(model, [*fwd_hooks, *hooks])
            logits.append(sub.label_logits(out).float().cpu())
            del out
            bar.update(len(sub))
    finally:
        bar.close()
    measures = {name: value.cpu() for name, value in sums.items()}
    return HeadScores(measures, torch.cat(logits), prompts.targets.cpu())


INDUCTION_METRICS: tuple[str, ...] = ("ih", "tila", "rep_induction")
"""Measures whose top heads are induction heads: ranked among layers >= 1 only (a layer-0
head has no previous-token information, so it cannot be an induction head)."""


def min_layer_of(metric: str, n_layers: int) -> int:
    """The lowest layer a top head of ``metric`` may come from (1 for induction measures)."""
    return 1 if metric in INDUCTION_METRICS and n_layers > 1 else 0


def top_heads(values: Float[torch.Tensor, "layer head"], k: int, min_layer: int = 0) -> list[tuple[int, int]]:
    """The ``k`` heads with the largest values at layers >= ``min_layer``, best first (ties:
    lower layer, then head, first); fewer when fewer heads are there."""
    n_heads = values.shape[1]
    flat = values.flatten().double()
    order = sorted(range(min_layer * n_heads, flat.numel()), key=lambda i: (-float(flat[i]), i))
    return [divmod(i, n_heads) for i in order[:k]]


def heads_table(
    scores: HeadScores, model: str, prompt_set: str, patching: torch.Tensor | None = None
) -> pd.DataFrame:
    """The tidy table of ``heads.parquet``: one row per metric and head, plus ``accuracy``.

    Shared columns (run = the model, suite = the prompt set, step null) then ``model`` and
    ``prompt_set``. ``patching`` ([layer, head]) adds the ``act_patch_head`` rows.
    """
    rows = []
    for metric, values in scores.measures.items():
        rows += head_rows(values, metric)
    if patching is not None:
        rows += head_rows(patching, "act_patch_head")
    rows.append({"metric": "accuracy", "value": scores.accuracy})
    rows.append({"metric": "n_prompts", "value": float(len(scores.targets))})
    return tidy_table(rows, EXTRA_COLUMNS, run=model, suite=prompt_set, model=model, prompt_set=prompt_set)


def measures_from_table(table: pd.DataFrame) -> dict[str, torch.Tensor]:
    """metric -> [layer, head] tensors back from a heads table (per-head metrics only)."""
    per_head = table[table["layer"].notna()]
    out = {}
    for metric, rows in per_head.groupby("metric", sort=False):
        n_layers, n_heads = int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1
        values = torch.full((n_layers, n_heads), float("nan"))
        layers = torch.as_tensor(rows["layer"].astype(int).to_numpy().copy())
        heads = torch.as_tensor(rows["head"].astype(int).to_numpy().copy())
        values[layers, heads] = torch.as_tensor(
            rows["value"].to_numpy(dtype=float).copy(), dtype=torch.float32
        )
        out[str(metric)] = values
    return out


__all__ = [
    "METRICS",
    "HeadScores",
    "heads_table",
    "label_logits",
    "measures_from_table",
    "score_heads",
    "min_layer_of",
    "top_heads",
]
