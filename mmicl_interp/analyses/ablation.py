"""Head ablation: knock out a set of attention heads and measure every suite's accuracy and loss.

Method (Olsson et al. 2022; Wang et al. 2022; Chan et al. 2022 "causal scrubbing" for
resampling): a head's output ``z`` (``blocks.{l}.attn.hook_z``, [batch, pos, head, d_head],
before ``W_O``) is replaced, at every position, by

- ``zero``: 0 (the head writes nothing but ``b_O``);
- ``mean``: its mean over the suite's prompts, per position:
  ``z_abl[b, t, h] = mean_b' z[b', t, h]``; with padding (``prompts.token_mask``), over the
  prompts with a real token at t only:
  ``z_abl[b, t, h] = sum_b' m[b', t] z[b', t, h] / sum_b' m[b', t]`` (0 where no prompt has one);
- ``resample``: its value on another sequence of the same suite,
  ``z_abl[b, t, h] = z[pi(b), t, h]`` with pi a seeded derangement (no sequence keeps its
  own value).

Mean and resampled values are taken from the clean (unablated) run of the suite; heads of
later layers then see the ablated residual stream. The effect is reported per suite and
metric (accuracy, loss) as clean, ablated and ``delta = ablated - clean``, in the shared long
format of :mod:`~mmicl_interp.analyses.tidy`: ``value`` is the ablated value, ``layer``/
``head`` the ablated head when it is one head alone (NA for a set), and the extra columns
``heads`` (the set, e.g. ``"L1H0,L0H0"``), ``method``, ``clean`` and ``delta``; an induction
head's ablation should drop icl accuracy to chance (SCIENCE.md section 6, claim 5).

Every function takes ``(model, prompts)`` (:class:`~mmicl_interp.prompts.ICLPrompts`; a
synthetic-task :class:`Batch` is converted): the model is called as
``model.run_with_hooks(prompts.inputs, **prompts.kwargs, ...)`` (so sequences keep their own
``pos_shift``) and its output read through ``prompts.label_logits``; values are computed on
the model's device. Resampling takes the other prompt's value at the same position, so it
means most when prompts share their positions.

Heads are written ``L{layer}H{head}`` and joined by commas (``"L1H0,L0H0"``); see
:func:`parse_heads` and :func:`format_heads`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral

import pandas as pd
import torch
from jaxtyping import Float

from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.data.task import Batch
from mmicl_interp.prompts import ICLPrompts, as_prompt_suites, as_prompts
from mmicl_interp.runs import Run
from mmicl_interp.train.evaluate import accuracy_and_loss
from mmicl_interp.types import ABLATION_METHODS, AblationMethod

Head = tuple[int, int]
"""A head as ``(layer, head)``."""

ABLATION_EXTRA: dict[str, str] = {
    "heads": "string",
    "method": "string",
    "clean": "float64",
    "delta": "float64",
}
"""The columns an ablation table adds to the shared ones (:mod:`~mmicl_interp.analyses.tidy`)."""

_HEAD_RE = re.compile(r"^\s*L(\d+)\s*H(\d+)\s*$", re.IGNORECASE)


def parse_heads(text: str) -> list[Head]:
    """Parse ``"L1H0,L0H1"`` into ``[(1, 0), (0, 1)]`` (order kept; case and spaces ignored)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"heads: expected a comma-separated list like 'L1H0,L0H1', got {text!r}")
    heads: list[Head] = []
    for part in text.split(","):
        match = _HEAD_RE.match(part)
        if match is None:
            raise ValueError(
                f"heads: {part.strip()!r} is not a head; write L<layer>H<head>, "
                f"comma-separated, e.g. 'L1H0,L0H1' (got {text!r})"
            )
        heads.append((int(match.group(1)), int(match.group(2))))
    return heads


def format_heads(heads: Iterable[Head]) -> str:
    """Format ``[(1, 0), (0, 1)]`` as ``"L1H0,L0H1"`` (the inverse of :func:`parse_heads`)."""
    return ",".join(f"L{layer}H{head}" for layer, head in heads)


def check_heads(heads: Sequence[Head] | str, model: torch.nn.Module) -> list[Head]:
    """Validate heads against ``model.cfg``: a list of in-range, distinct ``(layer, head)`` pairs."""
    if isinstance(heads, str):
        heads = parse_heads(heads)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    out: list[Head] = []
    for item in heads:
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not all(isinstance(v, Integral) and not isinstance(v, bool) for v in item)
        ):
            raise ValueError(f"heads: each head must be a (layer, head) pair of integers, got {item!r}")
        layer, head = int(item[0]), int(item[1])
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise ValueError(
                f"heads: ({layer}, {head}) is out of range; the model has layers 0..{n_layers - 1} "
                f"and heads 0..{n_heads - 1}"
            )
        if (layer, head) in out:
            raise ValueError(f"heads: L{layer}H{head} is listed twice")
        out.append((layer, head))
    if not out:
        raise ValueError("heads: expected at least one (layer, head) pair")
    return out


def _check_method(method: str) -> None:
    if method not in ABLATION_METHODS:
        raise ValueError(f"method: must be one of {', '.join(ABLATION_METHODS)}; got {method!r}")


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` without fixed points (identity when n < 2)."""
    if n < 2:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(1)  # one cycle through all n: nobody maps to itself
    return perm


def _z_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _heads_by_layer(heads) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    return by_layer


@torch.no_grad()
def mean_head_outputs(
    model: torch.nn.Module,
    prompts: ICLPrompts | Batch,
    heads: Sequence[Head],
    batch_size: int | None = None,
) -> dict[Head, Float[torch.Tensor, "pos d_head"]]:
    """Each head's ``hook_z`` averaged over the prompts with a real token at each position,
    ``mean[t] = sum_b m[b, t] z[b, t] / max(1, sum_b m[b, t])`` (``m`` = ``real_tokens``; all
    ones without padding), accumulated in float32 and returned in z's dtype, on the model's
    device. ``batch_size`` prompts run at a time (default: all at once), so a large model's
    caches stay bounded.
    """
    prompts = as_prompts(prompts)
    param = next(model.parameters(), None)
    device = param.device if param is not None else prompts.device
    names = sorted({_z_name(layer) for layer, _ in heads})
    step = batch_size or len(prompts)
    sums: dict[Head, torch.Tensor] = {}
    count = torch.zeros(prompts.n_positions, 1, device=device)
    dtype = None
    for start in range(0, len(prompts), step):
        part = prompts[start : start + step].to(device)
        _, cache = part.run(model, cache=names)
        real = part.real_tokens().to(torch.float32)[..., None]  # [batch, pos, 1]
        count += real.sum(0)
        for layer, head in heads:
            z = cache[_z_name(layer)][:, :, head]
            dtype = z.dtype
            sums[(layer, head)] = sums.get((layer, head), 0) + (z.float() * real).sum(0)
    return {h: (s / count.clamp(min=1.0)).to(dtype) for h, s in sums.items()}


@torch.no_grad()
def ablation_values(
    model: torch.nn.Module,
    prompts: ICLPrompts | Batch,
    heads: Sequence[Head],
    method: AblationMethod,
    seed: int = 0,
) -> dict[Head, Float[torch.Tensor, "batch pos d_head"]]:
    """The value each head's ``hook_z`` is replaced by, for every prompt (on the model's device).

    With padding (``prompts.token_mask``) the mean at a position is taken over the prompts
    with a real token there (0 where none has): :func:`mean_head_outputs`.
    """
    _check_method(method)
    prompts = as_prompts(prompts)
    layers = sorted({layer for layer, _ in heads})
    n_batch, n_pos = prompts.inputs.shape[:2]
    d_head = model.cfg.d_head
    if method == "zero":
        param = next(model.parameters(), None)
        device = param.device if param is not None else prompts.device
        zero = torch.zeros(n_batch, n_pos, d_head, device=device)
        return {head: zero for head in heads}
    if method == "mean":
        means = mean_head_outputs(model, prompts, heads)
        return {head: mean[None].expand(n_batch, -1, -1) for head, mean in means.items()}
    _, cache = prompts.run(model, cache=sorted({_z_name(layer) for layer in layers}))
    perm = derangement(n_batch, seed).to(prompts.device)
    return {(layer, head): cache[_z_name(layer)][:, :, head][perm] for layer, head in heads}


@torch.no_grad()
def ablated_logits(
    model: torch.nn.Module,
    prompts: ICLPrompts | Batch,
    heads: Sequence[Head] | str,
    method: AblationMethod = "mean",
    seed: int = 0,
) -> Float[torch.Tensor, "batch n_labels"]:
    """Label logits of ``model`` on ``prompts`` with ``heads`` ablated by ``method``."""
    heads = check_heads(heads, model)
    prompts = as_prompts(prompts)
    values = ablation_values(model, prompts, heads, method, seed)
    return logits_with_head_values(model, prompts, values)


def logits_with_head_values(
    model: torch.nn.Module, prompts: ICLPrompts, values: Mapping[Head, torch.Tensor]
) -> Float[torch.Tensor, "batch n_labels"]:
    """Label logits of ``model`` on ``prompts`` with each head's output ``z`` (``hook_z``)
    replaced by ``values[(layer, head)]`` (broadcast to ``[batch, pos, d_head]``), in eval mode.

    The one forward pass every ablation here shares (:func:`ablation_values` gives the values);
    the real-model knockout uses it too. Empty ``values``: the clean logits."""
    by_layer = _heads_by_layer(values)

    def make_hook(layer: int):
        def hook(z, hook):
            z = z.clone()
            for head in by_layer[layer]:
                z[:, :, head] = values[(layer, head)]
            return z

        return hook

    fwd_hooks = [(_z_name(layer), make_hook(layer)) for layer in sorted(by_layer)]
    was_training = model.training
    model.eval()
    try:
        return prompts.label_logits(prompts.run(model, fwd_hooks)[0])
    finally:
        model.train(was_training)


def _on_model(model: torch.nn.Module, suites: dict[str, ICLPrompts]) -> dict[str, ICLPrompts]:
    param = next(model.parameters(), None)
    if param is None:
        return suites
    return {name: prompts.to(param.device) for name, prompts in suites.items()}


def _rows(
    suite: str, heads: Sequence[Head], method: str, clean: tuple[float, float], ablated: tuple[float, float]
) -> list[dict]:
    layer, head = heads[0] if len(heads) == 1 else (None, None)
    return [
        dict(
            suite=suite,
            metric=metric,
            layer=layer,
            head=head,
            value=a,
            heads=format_heads(heads),
            method=method,
            clean=c,
            delta=a - c,
        )
        for metric, c, a in zip(("accuracy", "loss"), clean, ablated, strict=True)
    ]


def _frame(rows: list[dict], **constants) -> pd.DataFrame:
    return tidy_table(rows, ABLATION_EXTRA, **constants)


def heads_above(
    scores: Float[torch.Tensor, "layer head"], threshold: float, *, at_least: int = 1
) -> list[Head]:
    """Every head whose score (e.g. induction strength ``ih``) is at least ``threshold``,
    best first; the best ``at_least`` heads are always included (so the set is never empty).

    For a joint ablation of a model's whole circuit: in a multi-head or deeper model the
    induction mechanism can be spread over several heads, and knocking out the best one
    alone understates it.
    """
    flat = scores.detach().flatten().cpu()
    order = torch.argsort(flat, descending=True, stable=True).tolist()
    n_heads = scores.shape[1]
    keep = [i for rank, i in enumerate(order) if rank < at_least or float(flat[i]) >= threshold]
    return [divmod(i, n_heads) for i in keep]


@torch.no_grad()
def ablate_heads(
    model: torch.nn.Module,
    suites: Mapping[str, ICLPrompts | Batch] | ICLPrompts | Batch,
    heads: Sequence[Head] | str,
    method: AblationMethod = "mean",
    seed: int = 0,
) -> pd.DataFrame:
    """Ablate a set of heads together; effect on every suite's accuracy and loss.

    ``suites`` maps suite names to prompts (:class:`ICLPrompts`, or synthetic-task
    batches); they run on the model's device. Returns the shared long table (run and step
    NA) with, per suite and metric ('accuracy', 'loss'), ``value`` = the ablated value and
    the extra columns heads (e.g. ``"L1H0,L0H0"``), method, clean and delta (= ablated -
    clean); see the module docstring. A single prompts object or batch is suite ``"batch"``.
    """
    _check_method(method)
    heads = check_heads(heads, model)
    rows: list[dict] = []
    for name, prompts in _on_model(model, as_prompt_suites(suites)).items():
        clean = accuracy_and_loss(logits_with_head_values(model, prompts, {}), prompts.targets)
        values = ablation_values(model, prompts, heads, method, seed)
        ablated = accuracy_and_loss(logits_with_head_values(model, prompts, values), prompts.targets)
        rows.extend(_rows(name, heads, method, clean, ablated))
    return _frame(rows)


@torch.no_grad()
def ablate_each_head(
    model: torch.nn.Module,
    suites: Mapping[str, ICLPrompts | Batch] | ICLPrompts | Batch,
    method: AblationMethod = "mean",
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`ablate_heads` for every single head in turn (layer-major), one table."""
    _check_method(method)
    all_heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    rows: list[dict] = []
    for name, prompts in _on_model(model, as_prompt_suites(suites)).items():
        clean = accuracy_and_loss(logits_with_head_values(model, prompts, {}), prompts.targets)
        values = ablation_values(model, prompts, all_heads, method, seed)
        for head in all_heads:
            logits = logits_with_head_values(model, prompts, {head: values[head]})
            ablated = accuracy_and_loss(logits, prompts.targets)
            rows.extend(_rows(name, [head], method, clean, ablated))
    return _frame(rows)


def ablation_over_checkpoints(
    run: Run,
    heads: Sequence[Head] | str | None = None,
    method: AblationMethod = "mean",
    steps: Iterable[int] | None = None,
    *,
    n_seqs: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Ablation across a run's checkpoints: the :func:`ablate_heads` table with run and step.

    ``heads=None`` ablates each head in turn (:func:`ablate_each_head`); ``steps`` defaults
    to every checkpoint; ``n_seqs`` caps the sequences per suite; ``device`` (default: where
    the run's model loads) runs the models and prompts there.
    """
    _check_method(method)
    available = run.steps
    steps = available if steps is None else list(steps)
    missing = sorted(set(steps) - set(available))
    if missing:
        raise ValueError(f"steps: {missing} have no checkpoint in {run.path}; available: {available}")
    suites = as_prompt_suites(run.suites(n_seqs), run.layout)
    frames = []
    for step in steps:
        model = run.model(step)
        if device is not None:
            model = model.to(device)
        if heads is None:
            df = ablate_each_head(model, suites, method, seed)
        else:
            df = ablate_heads(model, suites, heads, method, seed)
        frames.append(_frame(df, run=run.run_id, step=step))
    return pd.concat(frames, ignore_index=True) if frames else _frame([])


__all__ = [
    "ABLATION_EXTRA",
    "Head",
    "ablate_each_head",
    "ablate_heads",
    "ablated_logits",
    "ablation_over_checkpoints",
    "ablation_values",
    "check_heads",
    "derangement",
    "format_heads",
    "heads_above",
    "logits_with_head_values",
    "mean_head_outputs",
    "parse_heads",
]
