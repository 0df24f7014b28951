"""Activation, path and attribution patching of the ICL circuit on corrupted icl sequences.

Corruptions (:func:`corrupt_batch`; M = the exemplars whose label equals the query's
target label, as in SCIENCE.md section 5):

- ``label``: every label vector at M's label positions is replaced by one other label
  ``a != target``, the same ``a`` for all of M within a sequence (drawn uniformly from the
  L - 1 wrong labels). A model doing ICL should now answer ``a``; ``a`` is the alternative.
- ``item``: every item of M is replaced by a fresh item of a new random class (a fresh
  class mean ``mu' ~ N(0, I_D / D)`` per sequence, fresh noise per item, the task's eps),
  so no context item resembles the query any more (the M1 items: the only modality of
  unimodal runs). The alternative ``a`` is a random context label other than the target
  (a random wrong label where there is none). Corrupted items get class -1.
- ``item_m1`` / ``item_m2`` (multimodal triplet layout, SCIENCE.md section 4): the same,
  for one modality only. The fresh item is written into that modality's columns of the
  packed input (M1: columns ``[:D1]``, M2: columns ``[D1:]``) at M's item positions of that
  modality, with that modality's D and eps (eps1 / eps2); the other modality's items and
  every label stay clean. ``item_m1`` equals ``item``; ``item_m2`` needs a multimodal
  layout (ValueError otherwise). Corrupted exemplars get class -1 in that modality's
  class field (``context_classes`` for M1, ``context_classes2`` for M2). In the triplet
  layout the label sits at offset 1 after its M2 item and offset 2 after its M1 item, so
  ``item_m2`` is the corruption whose effect travels through the offset-1 previous-token
  head.

Any other corruption comes as a pair of aligned :class:`~mmicl_interp.prompts.ICLPrompts`
(clean, corrupted; the same shape) with the alternative per prompt:
:func:`patching_setup` (model, clean, corrupted) builds the setup every method below takes;
:func:`prepare_patching` does it for the synthetic corruptions above.

Targets stay the clean targets. Metric (Wang et al. 2022; Heimersheim & Nanda 2024): on
label logits (``prompts.label_logits`` of the model output), the logit difference
``LD_b = logit_b[target_b] - logit_b[a_b]``, averaged over prompts, normalised
``(LD_patched - LD_corrupt) / (LD_clean - LD_corrupt)``: 0 = the corrupted run,
1 = the clean run.

Methods (Meng et al. 2022; Wang et al. 2022; Nanda 2023 "Attribution patching"):

- activation patching: run the corrupted input with one activation set to its clean
  value: head outputs ``hook_z`` over all positions ([layer, head]) and by position
  ([layer, pos, head]), the residual stream ``hook_resid_pre`` by layer and position
  ([layer, pos]); "by position" patches the same absolute position of every prompt. The
  loop of ``transformer_lens.patching.generic_activation_patch`` with its patch setters,
  calling the model through the prompts (``model.run_with_hooks(prompts.inputs,
  **prompts.kwargs, ...)``, so ``pos_shift`` / ``attention_mask`` reach it).
- path patching (direct paths): for sender head s and a later receiver head r, run the
  corrupted input but recompute only r's k (or q, or v) from
  ``ln1(resid_pre_corrupt + (z_clean[s] - z_corrupt[s]) W_O[s])``: the sender's output is
  the clean one on that path alone, everything else stays corrupted (downstream of r runs
  freely). The edge prev-token head -> induction head is a K-composition: its effect sits
  on the ``k`` entry.
- attribution patching: the first-order estimate
  ``(act_clean - act_corrupt) . d metric / d act`` at the corrupted run, one backward pass
  for every head and position at once; summed over batch, positions (for heads) and
  features. It estimates the activation-patching result on the same scale.

The synthetic setups use ``pos_shift = 0``. All runs use the model in eval mode, on the
model's device (prompts are moved there), and everything but attribution under no_grad.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from transformer_lens import patching as tl_patching

from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.data.layout import Layout
from mmicl_interp.data.multimodal import MultimodalTask
from mmicl_interp.data.task import Batch, Task
from mmicl_interp.progress import progress as progress_iter
from mmicl_interp.prompts import ICLPrompts
from mmicl_interp.types import CORRUPTIONS, Corruption

QKV: tuple[str, ...] = ("k", "q", "v")
"""The receiver inputs path patching can reach."""


# ---------------------------------------------------------------------- corruption
def corrupt_batch(
    batch: Batch, task: Task | MultimodalTask, layout: Layout, kind: Corruption = "label", seed: int = 0
) -> tuple[Batch, Int[torch.Tensor, " batch"]]:
    """Corrupt the matching exemplars of every sequence; return (corrupted batch, alt label).

    ``label`` swaps M's label vectors for one wrong label per sequence; ``item`` /
    ``item_m1`` swap M's M1 items and ``item_m2`` M's M2 items (multimodal layouts only,
    else ValueError) for items of a fresh random class (see the module docstring).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind: must be one of {', '.join(CORRUPTIONS)}; got {kind!r}")
    g = torch.Generator().manual_seed(seed)
    n, L = len(batch), task.config.L
    device = batch.inputs.device
    matches = batch.matches()
    inputs = batch.inputs.clone()
    target = batch.targets
    if kind == "label":
        alt = _random_wrong_label(target, L, g)
        positions = layout.labels().to(device)
        vectors = task.label_vectors.to(device)
        vectors = F.pad(vectors, (0, inputs.shape[-1] - vectors.shape[-1]))  # packed multimodal inputs
        new = vectors[alt][:, None, :].expand(-1, positions.numel(), -1)
        inputs[:, positions] = torch.where(matches[..., None], new, inputs[:, positions])
        labels = torch.where(matches, alt[:, None], batch.context_labels)
        return replace(batch, inputs=inputs, context_labels=labels), alt
    modality = "m2" if kind == "item_m2" else "m1"
    if modality not in layout.modalities:
        raise ValueError(
            f"kind: {kind!r} corrupts {modality.upper()} items, but the layout has only "
            f"{', '.join(layout.modalities)} items (a unimodal run); use 'item' or 'item_m1'"
        )
    D, eps, columns = _modality_columns(task, modality)
    positions = layout.items(modality).to(device)
    means = torch.randn(n, 1, D, generator=g) / math.sqrt(D)
    noise = torch.randn(n, positions.numel(), D, generator=g) * (eps / math.sqrt(D))
    fresh = ((means + noise) / math.sqrt(1.0 + eps**2)).to(device)
    block = inputs[:, positions, columns]
    inputs[:, positions, columns] = torch.where(matches[..., None], fresh, block)
    field = "context_classes2" if modality == "m2" else "context_classes"
    old_classes = getattr(batch, field)
    changes = {"inputs": inputs}
    if old_classes is not None:
        changes[field] = torch.where(matches, torch.full_like(old_classes, -1), old_classes)
    # the alternative: a random context label other than the target, if the context has one
    others = batch.context_labels != target[:, None]
    scores = torch.rand(n, others.shape[1], generator=g).to(device).masked_fill(~others, -1.0)
    from_context = batch.context_labels.gather(1, scores.argmax(1, keepdim=True))[:, 0]
    alt = torch.where(others.any(1), from_context, _random_wrong_label(target, L, g))
    return replace(batch, **changes), alt


def _modality_columns(task: Task | MultimodalTask, modality: str) -> tuple[int, float, slice]:
    """(D, eps, packed-input columns) of one modality: M1 ``[:D1]``, M2 ``[D1:]``."""
    cfg = task.config
    if not hasattr(cfg, "D1"):  # unimodal: the whole input is M1
        return cfg.D, cfg.eps, slice(0, cfg.D)
    if modality == "m1":
        return cfg.D1, cfg.eps1, slice(0, cfg.D1)
    return cfg.D2, cfg.eps2, slice(cfg.D1, cfg.D1 + cfg.D2)


def _random_wrong_label(target: torch.Tensor, n_labels: int, g: torch.Generator) -> torch.Tensor:
    r = torch.randint(n_labels - 1, target.shape, generator=g).to(target.device)
    return r + (r >= target).long()


# ---------------------------------------------------------------------- metric
def logit_diff(
    logits: Float[torch.Tensor, "batch n_labels"],
    correct: Int[torch.Tensor, " batch"],
    alt: Int[torch.Tensor, " batch"],
) -> Float[torch.Tensor, " batch"]:
    """``logit[correct] - logit[alt]`` per sequence."""
    return logits.gather(1, correct[:, None])[:, 0] - logits.gather(1, alt[:, None])[:, 0]


def normalised_logit_diff(
    logits: Float[torch.Tensor, "batch n_labels"],
    correct: Int[torch.Tensor, " batch"],
    alt: Int[torch.Tensor, " batch"],
    clean_ld: float,
    corrupt_ld: float,
) -> Float[torch.Tensor, ""]:
    """``(mean LD - LD_corrupt) / (LD_clean - LD_corrupt)``: 0 corrupted, 1 clean (differentiable)."""
    return (logit_diff(logits, correct, alt).mean() - corrupt_ld) / (clean_ld - corrupt_ld)


@dataclass
class PatchingSetup:
    """Clean and corrupted prompts and both runs' caches: the input of every patching method.

    ``clean`` / ``corrupted`` are :class:`ICLPrompts` of the same shape; the logits are
    label logits (``prompts.label_logits``); the caches (name -> activation) hold ``hook_z``
    and ``hook_resid_pre`` of every layer. ``clean_batch`` / ``corrupted_batch`` are the
    synthetic-task batches when the setup came from :func:`prepare_patching`, else None.
    """

    clean: ICLPrompts
    corrupted: ICLPrompts
    alt: Int[torch.Tensor, " batch"]
    kind: str
    clean_logits: Float[torch.Tensor, "batch n_labels"]
    corrupt_logits: Float[torch.Tensor, "batch n_labels"]
    clean_cache: Mapping[str, torch.Tensor]
    corrupt_cache: Mapping[str, torch.Tensor]
    clean_ld: float
    corrupt_ld: float
    clean_batch: Batch | None = None
    corrupted_batch: Batch | None = None

    @property
    def correct(self) -> Int[torch.Tensor, " batch"]:
        return self.clean.targets

    def metric(self, logits: Float[torch.Tensor, "batch n_labels"]) -> Float[torch.Tensor, ""]:
        """Normalised logit difference of label ``logits`` (0 = corrupted run, 1 = clean run)."""
        return normalised_logit_diff(logits, self.correct, self.alt, self.clean_ld, self.corrupt_ld)

    def output_metric(self, output) -> Float[torch.Tensor, ""]:
        """:meth:`metric` of a model output on the corrupted prompts (read out to label logits)."""
        return self.metric(self.corrupted.label_logits(output))

    def run_corrupted(self, model: torch.nn.Module, fwd_hooks=()) -> Float[torch.Tensor, ""]:
        """The normalised metric of one corrupted run with ``fwd_hooks``."""
        return self.output_metric(self.corrupted.run(model, fwd_hooks)[0])


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _model_device(model: torch.nn.Module, fallback: torch.device) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else fallback


def _cache_names(n_layers: int) -> list[str]:
    z = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    return z + [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]


@torch.no_grad()
def patching_setup(
    model: torch.nn.Module,
    clean: ICLPrompts,
    corrupted: ICLPrompts,
    alt: Int[torch.Tensor, " batch"] | None = None,
    kind: str = "custom",
) -> PatchingSetup:
    """Run clean and corrupted prompts (model in eval mode) and cache both runs.

    ``alt`` (the alternative of the logit difference, per prompt) defaults to
    ``corrupted.alternatives``, then ``clean.alternatives``. The prompts must have the same
    shape; they are moved to the model's device. The targets are the clean targets.
    """
    if alt is None:
        alt = corrupted.alternatives if corrupted.alternatives is not None else clean.alternatives
    if alt is None:
        raise ValueError("alt: give the alternative label per prompt (alt=, or prompts.alternatives)")
    if clean.inputs.shape != corrupted.inputs.shape:
        raise ValueError(
            f"corrupted: inputs of shape {list(corrupted.inputs.shape)} differ from the clean "
            f"{list(clean.inputs.shape)}; patching needs aligned prompts"
        )
    device = _model_device(model, clean.device)
    clean, corrupted, alt = clean.to(device), corrupted.to(device), alt.to(device)
    names = _cache_names(model.cfg.n_layers)
    with _eval_mode(model):
        clean_out, clean_cache = clean.run(model, cache=names)
        corrupt_out, corrupt_cache = corrupted.run(model, cache=names)
    clean_logits, corrupt_logits = clean.label_logits(clean_out), corrupted.label_logits(corrupt_out)
    clean_ld = logit_diff(clean_logits, clean.targets, alt).mean().item()
    corrupt_ld = logit_diff(corrupt_logits, clean.targets, alt).mean().item()
    if abs(clean_ld - corrupt_ld) < 1e-6:
        warnings.warn(
            f"the {kind} corruption does not change the logit difference (clean {clean_ld:.3g}, "
            f"corrupted {corrupt_ld:.3g}); normalised patching results are meaningless here",
            stacklevel=3,
        )
    return PatchingSetup(
        clean,
        corrupted,
        alt,
        kind,
        clean_logits,
        corrupt_logits,
        clean_cache,
        corrupt_cache,
        clean_ld,
        corrupt_ld,
    )


@torch.no_grad()
def prepare_patching(
    model: torch.nn.Module,
    batch: Batch,
    task: Task | MultimodalTask,
    layout: Layout,
    kind: Corruption = "label",
    seed: int = 0,
) -> PatchingSetup:
    """Corrupt a synthetic-task ``batch`` (:func:`corrupt_batch`), run clean and corrupted
    (pos_shift 0) and cache both runs (:func:`patching_setup`)."""
    clean = replace(batch, pos_shift=torch.zeros_like(batch.pos_shift))
    corrupted, alt = corrupt_batch(clean, task, layout, kind, seed)
    setup = patching_setup(
        model,
        ICLPrompts.from_batch(clean, layout, alternatives=alt),
        ICLPrompts.from_batch(corrupted, layout, alternatives=alt),
        alt,
        kind,
    )
    return replace(setup, clean_batch=clean, corrupted_batch=corrupted)


# ---------------------------------------------------------------------- activation patching
def _value_dtype(setup: PatchingSetup) -> torch.dtype:
    """float32, or float64 for a float64 model (never a half type)."""
    return torch.promote_types(torch.float32, setup.clean_logits.dtype)


Setter = Callable[[torch.Tensor, Sequence[int], torch.Tensor], torch.Tensor]


def _generic_patch(
    model: torch.nn.Module,
    setup: PatchingSetup,
    activation: str,
    setter: Setter,
    ranges: Sequence[int],
    progress: bool,
) -> torch.Tensor:
    """The normalised metric for every index in ``ranges`` (first axis: layer), patching the
    clean ``blocks.{layer}`` ``activation`` into the corrupted run through ``setter`` (one of
    TransformerLens's patch setters); ``generic_activation_patch``'s loop, with the model
    called through the prompts."""
    name = {"z": "blocks.{}.attn.hook_z", "resid_pre": "blocks.{}.hook_resid_pre"}[activation]
    out = torch.zeros(math.prod(ranges), device=setup.clean_logits.device, dtype=_value_dtype(setup))
    indices = list(itertools.product(*(range(r) for r in ranges)))
    with torch.no_grad(), _eval_mode(model):
        for c, index in enumerate(progress_iter(indices, desc=f"patching {activation}", enabled=progress)):
            hook_name = name.format(index[0])
            clean_act = setup.clean_cache[hook_name]

            def hook(act, hook, index=index, clean_act=clean_act):
                return setter(act.clone() if act.requires_grad else act, list(index), clean_act)

            out[c] = setup.run_corrupted(model, [(hook_name, hook)])
    return out.reshape(*ranges)


def patch_head_outputs(
    model: torch.nn.Module, setup: PatchingSetup, progress: bool = False
) -> Float[torch.Tensor, "layer head"]:
    """Normalised metric with each head's clean output (``hook_z``, all positions) patched in."""
    cfg = model.cfg
    return _generic_patch(
        model, setup, "z", tl_patching.layer_head_vector_patch_setter, (cfg.n_layers, cfg.n_heads), progress
    )


def patch_head_outputs_by_pos(
    model: torch.nn.Module, setup: PatchingSetup, progress: bool = False
) -> Float[torch.Tensor, "layer pos head"]:
    """Normalised metric with one head's clean output at one position patched in (the same
    absolute position in every prompt)."""
    cfg = model.cfg
    n_pos = setup.clean.n_positions
    return _generic_patch(
        model,
        setup,
        "z",
        tl_patching.layer_pos_head_vector_patch_setter,
        (cfg.n_layers, n_pos, cfg.n_heads),
        progress,
    )


def patch_resid_pre(
    model: torch.nn.Module, setup: PatchingSetup, progress: bool = False
) -> Float[torch.Tensor, "layer pos"]:
    """Normalised metric with the clean residual stream (``hook_resid_pre``) at one layer and position."""
    n_pos = setup.clean.n_positions
    return _generic_patch(
        model, setup, "resid_pre", tl_patching.layer_pos_patch_setter, (model.cfg.n_layers, n_pos), progress
    )


# ---------------------------------------------------------------------- path patching
@torch.no_grad()
def path_patch(
    model: torch.nn.Module, setup: PatchingSetup, inputs: Sequence[str] = QKV
) -> dict[str, Float[torch.Tensor, "sender receiver"]]:
    """Direct-path patching from every head into each later head's keys, queries or values.

    Returns ``{"k": T, "q": T, "v": T}`` (those in ``inputs``), each ``T`` of shape
    ``[n_layers * n_heads, n_layers * n_heads]`` indexed by flat head ``layer * n_heads + head``
    (sender rows, receiver columns): the normalised metric with only that path clean. Entries
    whose receiver layer is not after the sender's are NaN (no such path).
    """
    bad = [c for c in inputs if c not in QKV]
    if bad or not inputs:
        raise ValueError(f"inputs: must be a non-empty subset of {', '.join(QKV)}; got {list(inputs)!r}")
    cfg = model.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    size = n_layers * n_heads
    like = dict(device=setup.clean_logits.device, dtype=_value_dtype(setup))
    out = {c: torch.full((size, size), float("nan"), **like) for c in inputs}
    with _eval_mode(model):
        for s_layer in range(n_layers - 1):
            attn = model.blocks[s_layer].attn
            z_clean = setup.clean_cache[f"blocks.{s_layer}.attn.hook_z"]
            z_corrupt = setup.corrupt_cache[f"blocks.{s_layer}.attn.hook_z"]
            for s_head in range(n_heads):
                delta = (z_clean[:, :, s_head] - z_corrupt[:, :, s_head]) @ attn.W_O[s_head]
                for r_layer in range(s_layer + 1, n_layers):
                    block = model.blocks[r_layer]
                    resid = setup.corrupt_cache[f"blocks.{r_layer}.hook_resid_pre"]
                    x = block.ln1(resid + delta)
                    for r_head in range(n_heads):
                        for c in inputs:
                            w = getattr(block.attn, f"W_{c.upper()}")[r_head]
                            b = getattr(block.attn, f"b_{c.upper()}")[r_head]
                            new = x @ w + b
                            hook = (f"blocks.{r_layer}.attn.hook_{c}", _head_setter(r_head, new))
                            value = setup.run_corrupted(model, [hook])
                            out[c][s_layer * n_heads + s_head, r_layer * n_heads + r_head] = value
    return out


def _head_setter(head: int, value: torch.Tensor):
    def hook(act, hook):
        act = act.clone()
        act[:, :, head] = value
        return act

    return hook


# ---------------------------------------------------------------------- attribution patching
def attribution_patch(model: torch.nn.Module, setup: PatchingSetup) -> dict[str, torch.Tensor]:
    """Attribution patching: ``(clean - corrupt) . grad`` of the metric at the corrupted run.

    Returns ``head_out`` [layer, head] (``hook_z``, summed over positions),
    ``head_out_by_pos`` [layer, pos, head] and ``resid_pre`` [layer, pos], each a
    first-order estimate of the matching activation-patching result.
    """
    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    names += [f"blocks.{layer}.hook_resid_pre" for layer in range(n_layers)]
    acts: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        if not act.requires_grad:  # e.g. a frozen model on token ids: make it a leaf of the graph
            act.requires_grad_(True)
        acts[hook.name] = act

    prompts = setup.corrupted
    inputs = prompts.inputs.detach().clone()
    if inputs.is_floating_point():
        inputs.requires_grad_(True)
    with torch.enable_grad(), _eval_mode(model):
        out = model.run_with_hooks(inputs, **prompts.kwargs, fwd_hooks=[(name, keep) for name in names])
        metric = setup.output_metric(out)
        grads = dict(zip(names, torch.autograd.grad(metric, [acts[name] for name in names]), strict=True))
    by_pos, resid = [], []
    for layer in range(n_layers):
        z_name, r_name = names[layer], names[n_layers + layer]
        dz = setup.clean_cache[z_name] - setup.corrupt_cache[z_name]
        by_pos.append((dz * grads[z_name]).sum(dim=(0, 3)))  # [pos, head]
        dr = setup.clean_cache[r_name] - setup.corrupt_cache[r_name]
        resid.append((dr * grads[r_name]).sum(dim=(0, 2)))  # [pos]
    head_out_by_pos = torch.stack(by_pos).detach()
    return {
        "head_out": head_out_by_pos.sum(1),
        "head_out_by_pos": head_out_by_pos,
        "resid_pre": torch.stack(resid).detach(),
    }


# ---------------------------------------------------------------------- tidy table
def patching_table(
    model: torch.nn.Module,
    batch: Batch | PatchingSetup,
    task: Task | MultimodalTask | None = None,
    layout: Layout | None = None,
    kind: Corruption = "label",
    seed: int = 0,
    *,
    run: str = "",
    step: int = 0,
    suite: str = "icl",
) -> pd.DataFrame:
    """Head-level patching results as a tidy table.

    The shared long format (:mod:`~mmicl_interp.analyses.tidy`; position is NA). Metrics:
    ``act_patch_head`` and ``attr_patch_head`` (layer/head the patched head, src NA),
    ``path_patch_k`` / ``_q`` / ``_v`` (layer/head the receiver, src_layer/src_head the
    sender). Values are normalised logit differences under the ``kind`` corruption.
    ``patching_table(model, setup, run=..., ...)`` tabulates a ready :class:`PatchingSetup`
    (e.g. from :func:`patching_setup` on any prompts) instead.
    """
    if isinstance(batch, PatchingSetup):
        setup = batch
    else:
        if task is None or layout is None:
            raise ValueError("task, layout: patching_table(model, batch, task, layout, ...) needs both")
        setup = prepare_patching(model, batch, task, layout, kind, seed)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rows: list[dict] = []

    def add(metric, layer, head, value, src=(None, None)):
        rows.append(
            dict(
                run=run,
                step=step,
                suite=suite,
                metric=metric,
                layer=layer,
                head=head,
                src_layer=src[0],
                src_head=src[1],
                value=float(value),
            )
        )

    heads = patch_head_outputs(model, setup).cpu()  # one device sync, not one per value
    attr = attribution_patch(model, setup)["head_out"].cpu()
    for layer in range(n_layers):
        for head in range(n_heads):
            add("act_patch_head", layer, head, heads[layer, head])
            add("attr_patch_head", layer, head, attr[layer, head])
    for c, values in path_patch(model, setup).items():
        values = values.cpu()
        for s in range(n_layers * n_heads):
            for r in range(n_layers * n_heads):
                if not math.isnan(values[s, r]):
                    add(f"path_patch_{c}", r // n_heads, r % n_heads, values[s, r], divmod(s, n_heads))
    return tidy_table(rows)


__all__ = [
    "PatchingSetup",
    "attribution_patch",
    "corrupt_batch",
    "logit_diff",
    "normalised_logit_diff",
    "patch_head_outputs",
    "patch_head_outputs_by_pos",
    "patch_resid_pre",
    "path_patch",
    "patching_setup",
    "patching_table",
    "prepare_patching",
]
