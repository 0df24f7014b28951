"""Causal tests on a real model: head knockouts against random heads, and head patching.

Knockout (:func:`knockout_table`): the ablation of :mod:`mmicl_interp.analyses.ablation`
(a head's ``hook_z`` replaced at every position by 0, ``zero``, or by its mean over the
prompts with a real token at that position, ``mean``), applied to

- the top-k heads of a measure (``ih`` for induction, ``prev_token`` for previous-token
  heads) or a given list of heads;
- ``n_random`` draws of k heads chosen uniformly among the heads outside the measured
  groups (all heads when too few remain): the control. Its interval is the 2.5-97.5
  percentile range of the draws' accuracies.

Each is reported as clean and ablated accuracy, loss over the candidate labels and mean
logit difference (target - alternative). Prompts run ``batch_size`` at a time, and mean
values are accumulated over all of them, so memory stays bounded; the formula is
:func:`~mmicl_interp.analyses.ablation.mean_head_outputs`.

Patching (:func:`patch_heads`): label-corrupted prompts (:func:`corrupt_labels`: the
labels of the exemplars that match the query's answer are overwritten with the tokens of
an alternative label of the same token length, so the context now points to it), then
:func:`~mmicl_interp.analyses.patching.patch_head_outputs` (each head's clean ``hook_z``
patched into the corrupted run) per batch of prompts, normalised with the logit
differences of all prompts: 0 = corrupted run, 1 = clean run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float

from mmicl_interp.analyses.ablation import (
    Head,
    check_heads,
    format_heads,
    logits_with_head_values,
    mean_head_outputs,
)
from mmicl_interp.analyses.patching import logit_diff, patch_head_outputs, patching_setup
from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.device import model_device
from mmicl_interp.progress import progress_bar
from mmicl_interp.prompts import ICLPrompts
from mmicl_interp.real.heads import chunks, label_logits, min_layer_of, top_heads

METHODS: tuple[str, ...] = ("zero", "mean")
GROUPS = {"ih": "induction", "prev_token": "previous-token"}
"""Measure -> the head kind its top-k heads are."""
KNOCKOUT_EXTRA = {
    "model": "string",
    "prompt_set": "string",
    "group": "string",
    "heads": "string",
    "method": "string",
    "k": "Int64",
    "draw": "Int64",
    "clean": "float64",
    "delta": "float64",
}
MIN_RANDOM_DRAWS = 10


# ---------------------------------------------------------------------- knockout
def _metrics(logits: torch.Tensor, prompts: ICLPrompts) -> dict[str, float]:
    targets = prompts.targets.cpu()
    out = {
        "accuracy": (logits.argmax(-1) == targets).float().mean().item(),
        "loss": F.cross_entropy(logits, targets).item(),
    }
    if prompts.alternatives is not None:
        out["logit_diff"] = logit_diff(logits, targets, prompts.alternatives.cpu()).mean().item()
    return out


@torch.no_grad()
def knocked_out_logits(
    model: torch.nn.Module,
    prompts: ICLPrompts,
    heads: Sequence[Head],
    method: str = "mean",
    batch_size: int = 8,
    means: dict[Head, torch.Tensor] | None = None,
) -> Float[torch.Tensor, "batch n_labels"]:
    """Label logits with ``heads`` knocked out by ``method`` (float32, CPU)."""
    if method not in METHODS:
        from mmicl_interp.config import ConfigError

        raise ConfigError("--method", f"must be one of {', '.join(METHODS)}; got {method!r}")
    heads = check_heads(list(heads), model)
    device = model_device(model)
    if method == "mean" and means is None:
        means = mean_head_outputs(model, prompts, heads, batch_size)
    out = []
    for part in chunks(len(prompts), batch_size):
        sub = prompts[part].to(device)
        n = len(sub)
        if method == "zero":
            zero = torch.zeros(n, sub.n_positions, model.cfg.d_head, device=device)
            values = {h: zero for h in heads}
        else:
            values = {h: means[h].to(device)[None].expand(n, -1, -1) for h in heads}
        out.append(logits_with_head_values(model, sub, values).float().cpu())
    return torch.cat(out)


def random_head_sets(
    n_layers: int, n_heads: int, k: int, n_draws: int, exclude: Sequence[Head] = (), seed: int = 0
) -> list[list[Head]]:
    """``n_draws`` sets of ``k`` distinct heads drawn uniformly from those not in ``exclude``
    (from all heads when fewer than ``k`` remain)."""
    every = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    pool = [h for h in every if h not in set(exclude)]
    if len(pool) < k:
        pool = every
    rng = np.random.default_rng(seed)
    return [[pool[i] for i in sorted(rng.choice(len(pool), k, replace=False))] for _ in range(n_draws)]


def knockout_table(
    model: torch.nn.Module,
    prompts: ICLPrompts,
    *,
    measures: dict[str, torch.Tensor] | None = None,
    top_k: int | None = None,
    heads: Sequence[Head] | None = None,
    methods: Sequence[str] = METHODS,
    n_random: int = MIN_RANDOM_DRAWS,
    seed: int = 0,
    batch_size: int = 8,
    model_name: str = "",
    prompt_set: str = "",
    progress: bool = False,
) -> pd.DataFrame:
    """Knock out the top-``top_k`` heads of each measure in :data:`GROUPS` (needs ``measures``)
    or the given ``heads``, and ``n_random`` random sets of as many heads, with each method.

    Returns a tidy table (run = model, suite = prompt set; metric accuracy / loss /
    logit_diff; value = the ablated value) with columns model, prompt_set, group
    (``induction``, ``previous-token``, ``given``, ``random``, ``clean``), heads, method, k,
    draw (random draws), clean and delta (= ablated - clean).
    """
    if (top_k is None) == (heads is None):
        raise ValueError("give either top_k (with measures) or heads")
    if n_random < MIN_RANDOM_DRAWS:
        from mmicl_interp.config import ConfigError

        raise ConfigError("--n-random", f"must be >= {MIN_RANDOM_DRAWS} (the control needs an interval)")
    groups: list[tuple[str, list[Head]]] = []
    if heads is not None:
        groups.append(("given", check_heads(list(heads), model)))
    else:
        if measures is None:
            raise ValueError("measures: top_k needs the head measures")
        groups += [(GROUPS[m], top_heads(measures[m], top_k, min_layer_of(m, model.cfg.n_layers)))
                   for m in GROUPS if m in measures]  # fmt: skip
    k = len(groups[0][1])
    exclude = [h for _, g in groups for h in g]
    draws = random_head_sets(model.cfg.n_layers, model.cfg.n_heads, k, n_random, exclude, seed)
    clean_logits = label_logits(model, prompts, batch_size)
    clean = _metrics(clean_logits, prompts)
    base = dict(model=model_name, prompt_set=prompt_set)
    rows = [dict(base, group="clean", heads="", method="none", k=0, metric=m, value=v, clean=v, delta=0.0)
            for m, v in clean.items()]  # fmt: skip
    every = sorted({h for _, g in groups for h in g} | {h for d in draws for h in d})
    bar = progress_bar(len(methods) * (len(groups) + len(draws)), "knockouts", progress, unit="set")
    try:
        for method in methods:
            means = mean_head_outputs(model, prompts, every, batch_size) if method == "mean" else None
            todo = [(name, g, None) for name, g in groups] + [("random", d, i) for i, d in enumerate(draws)]
            for name, group, draw in todo:
                logits = knocked_out_logits(model, prompts, group, method, batch_size, means)
                for metric, value in _metrics(logits, prompts).items():
                    rows.append(
                        dict(base, group=name, heads=format_heads(group), method=method, k=len(group),
                             draw=draw, metric=metric, value=value, clean=clean[metric],
                             delta=value - clean[metric])
                    )  # fmt: skip
                bar.update(1)
    finally:
        bar.close()
    return tidy_table(rows, KNOCKOUT_EXTRA, run=model_name, suite=prompt_set)


def accuracy_summary(table: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """One row per method and group: ablated value, and for ``random`` the mean and 95% range
    (2.5-97.5 percentiles) of the draws; ``clean`` the unablated value."""
    rows = []
    t = table[table["metric"] == metric]
    clean = t[t["group"] == "clean"]["value"]
    clean_value = float(clean.iloc[0]) if len(clean) else float("nan")
    for method in [m for m in t["method"].unique() if m != "none"]:
        sub = t[t["method"] == method]
        for group in [g for g in sub["group"].unique() if g != "random"]:
            r = sub[sub["group"] == group].iloc[0]
            rows.append(dict(method=method, group=group, heads=r["heads"], clean=clean_value,
                             ablated=float(r["value"]), low=np.nan, high=np.nan, n=1))  # fmt: skip
        rand = sub[sub["group"] == "random"]["value"].to_numpy(dtype=float)
        if len(rand):
            low, high = np.percentile(rand, [2.5, 97.5])
            rows.append(dict(method=method, group="random", heads=f"{len(rand)} draws", clean=clean_value,
                             ablated=float(rand.mean()), low=low, high=high, n=len(rand)))  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "group", "heads", "clean", "ablated", "low", "high", "n"])


# ---------------------------------------------------------------------- patching
def corrupt_labels(prompts: ICLPrompts) -> tuple[ICLPrompts, ICLPrompts]:
    """(clean, corrupted) prompts for label-corruption patching, aligned token by token.

    In each prompt the label tokens of every exemplar that matches the answer are
    overwritten with the tokens of another candidate label shown in the same prompt, whose
    label spans have the same length (the prompt's ``alternatives`` when it fits, else the
    first candidate that does); that label becomes both prompts' alternative. Prompts
    without such a candidate are dropped from both. Needs token-id prompts with a
    :class:`TokenReadout`.
    """
    if prompts.inputs.is_floating_point():
        raise ValueError("corrupt_labels: needs token-id prompts")
    ids = prompts.inputs.clone()
    spans, context, matches = prompts.label_spans, prompts.context_labels, prompts.matches
    keep, alts = [], []
    new_context = context.clone()
    for b in range(len(prompts)):
        present = prompts.exemplar_mask[b]
        length = (spans[b, :, 1] - spans[b, :, 0]).tolist()
        hit = [i for i in range(spans.shape[1]) if present[i] and matches[b, i]]
        if not hit:
            continue
        need = {length[i] for i in hit}
        options = []
        for c in sorted(set(context[b, present].tolist()) - {int(prompts.targets[b])}):
            shown = [i for i in range(spans.shape[1]) if present[i] and context[b, i] == c]
            if len(need) == 1 and length[shown[0]] in need:
                options.append((c, shown[0]))
        if not options:
            continue
        preferred = int(prompts.alternatives[b]) if prompts.alternatives is not None else -1
        c, source = next(((c, i) for c, i in options if c == preferred), options[0])
        s0, e0 = spans[b, source].tolist()
        for i in hit:
            s, e = spans[b, i].tolist()
            ids[b, s:e] = prompts.inputs[b, s0:e0]
            new_context[b, i] = c
        keep.append(b)
        alts.append(c)
    index = torch.tensor(keep, dtype=torch.long)
    alt = torch.tensor(alts, dtype=torch.long)
    clean = replace(prompts[index], alternatives=alt)
    corrupted = replace(
        prompts[index], inputs=ids[index], context_labels=new_context[index], alternatives=alt,
        matches=prompts.matches[index],
    )  # fmt: skip
    return clean, corrupted


@torch.no_grad()
def patch_heads(
    model: torch.nn.Module, prompts: ICLPrompts, batch_size: int = 8, progress: bool = False
) -> tuple[Float[torch.Tensor, "layer head"], dict[str, float]]:
    """Activation patching of every head's output under label corruption ([layer, head]).

    Returns the normalised logit difference with each head's clean output patched into the
    corrupted run (over all kept prompts), and ``clean_ld``, ``corrupt_ld``, ``n_prompts``.
    Runs ``n_layers * n_heads + 2`` forwards per batch of prompts.
    """
    clean, corrupted = corrupt_labels(prompts)
    if len(clean) == 0:
        raise ValueError("patching: no prompt has an alternative label of the answer's token length")
    alt = clean.alternatives
    clean_ld = logit_diff(label_logits(model, clean, batch_size), clean.targets, alt).mean().item()
    corrupt_ld = logit_diff(label_logits(model, corrupted, batch_size), clean.targets, alt).mean().item()
    if abs(clean_ld - corrupt_ld) < 1e-6:
        warnings.warn(
            f"the label corruption does not change the logit difference (clean {clean_ld:.3g}, corrupted "
            f"{corrupt_ld:.3g}); the patching values are meaningless here",
            stacklevel=2,
        )
    total = None
    parts = chunks(len(clean), batch_size)
    bar = progress_bar(len(parts), "patching heads", progress, unit="batch")
    try:
        for part in parts:  # one batch's caches at a time; normalised with all prompts' differences
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one batch may leave the difference unchanged
                setup = patching_setup(model, clean[part], corrupted[part], kind="label")
            setup = replace(setup, clean_ld=clean_ld, corrupt_ld=corrupt_ld)
            value = patch_head_outputs(model, setup).double().cpu() * (len(setup.clean) / len(clean))
            total = value if total is None else total + value
            del setup
            bar.update(1)
    finally:
        bar.close()
    info = {"clean_ld": clean_ld, "corrupt_ld": corrupt_ld, "n_prompts": float(len(clean))}
    return total.float(), info


__all__ = [
    "METHODS",
    "accuracy_summary",
    "corrupt_labels",
    "knocked_out_logits",
    "knockout_table",
    "patch_heads",
    "random_head_sets",
]
