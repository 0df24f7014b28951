"""Token-level head scores on repeated random tokens (the TransformerLens convention).

A batch of sequences ``[bos, r_1 .. r_n, r_1 .. r_n]`` (``r`` drawn uniformly, with
replacement, from the tokenizer's ordinary tokens; no BOS when the tokenizer has none).
With ``o`` the offset of ``r_1`` (1 with a BOS, else 0), for every head:

- ``rep_induction``: the mean attention from each second-copy position ``q`` in
  ``[o + n, o + 2n)`` to ``q - (n - 1)``, the token after the first occurrence of the
  token at ``q`` (the "induction stripe");
- ``rep_prev_token``: the mean attention ``A[t, t - 1]`` over every position ``t >= 1``;
- each with the score of uniform attention over the same positions, the mean of
  ``1 / (t + 1)`` (``rep_induction_uniform``, ``rep_prev_token_uniform``), which every
  head has at initialisation;
- ``rep_loss_first`` / ``rep_loss_second``: the model's mean next-token loss on the
  first copy (``r_2 .. r_n``, unpredictable: about log(vocab)) and the second copy
  (``r_2 .. r_n`` again: low once induction heads copy).

Everything here is a plain function of attention patterns ``[batch, head, q, k]`` and
logits, so it serves a TransformerLens bridge (patterns from ``hook_pattern``) and a
Hugging Face model (``output_attentions``) alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

REP_METRICS: tuple[str, ...] = ("rep_induction", "rep_prev_token")
"""Per-head metrics on repeated random tokens."""


def ordinary_token_ids(tokenizer: Any, vocab_size: int | None = None) -> torch.Tensor:
    """The ids random tokens are drawn from: every id of the tokenizer but its special tokens
    (and below ``vocab_size``, the model's embedding size, when given)."""
    n = len(tokenizer)
    if vocab_size is not None:
        n = min(n, int(vocab_size))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = [i for i in range(n) if i not in special]
    if len(ids) < 2:
        raise ValueError(f"the tokenizer has {len(ids)} ordinary tokens; repeated random tokens need >= 2")
    return torch.tensor(ids, dtype=torch.long)


def repeated_tokens(ids: torch.Tensor, n: int, n_seqs: int, bos: int | None, seed: int = 0) -> torch.Tensor:
    """``n_seqs`` sequences ``[bos, r_1..r_n, r_1..r_n]`` (no BOS when ``bos`` is None), seeded."""
    gen = torch.Generator().manual_seed(seed)
    half = ids[torch.randint(len(ids), (n_seqs, n), generator=gen)]
    seqs = torch.cat([half, half], dim=1)
    if bos is not None:
        seqs = torch.cat([torch.full((n_seqs, 1), int(bos), dtype=torch.long), seqs], dim=1)
    return seqs


def _offset(seq_len: int, n: int) -> int:
    offset = seq_len - 2 * n
    if offset not in (0, 1):
        raise ValueError(f"a repeated sequence of half length {n} has 2n or 2n + 1 tokens; got {seq_len}")
    return offset


def induction_queries(seq_len: int, n: int) -> torch.Tensor:
    """The second-copy positions ``q`` (their keys are ``q - (n - 1)``)."""
    o = _offset(seq_len, n)
    return torch.arange(o + n, o + 2 * n)


def pattern_scores(pattern: torch.Tensor, n: int) -> dict[str, torch.Tensor]:
    """``rep_induction`` and ``rep_prev_token`` per head ([head], float32) from a pattern
    ``[batch, head, q, k]`` of repeated sequences (averaged over the batch)."""
    seq_len = pattern.shape[-1]
    q = induction_queries(seq_len, n).to(pattern.device)
    stripe = pattern[:, :, q, q - (n - 1)]
    t = torch.arange(1, seq_len, device=pattern.device)
    prev = pattern[:, :, t, t - 1]
    return {
        "rep_induction": stripe.float().mean(dim=(0, 2)),
        "rep_prev_token": prev.float().mean(dim=(0, 2)),
    }


def uniform_baselines(seq_len: int, n: int) -> dict[str, float]:
    """What uniform causal attention scores: the mean of 1/(t + 1) over each measure's positions."""
    q = induction_queries(seq_len, n).double()
    t = torch.arange(1, seq_len).double()
    return {
        "rep_induction_uniform": float((1 / (q + 1)).mean()),
        "rep_prev_token_uniform": float((1 / (t + 1)).mean()),
    }


def copy_losses(logits: torch.Tensor, seqs: torch.Tensor, n: int) -> dict[str, float]:
    """Mean next-token loss on the first copy's ``r_2..r_n`` and on the second copy's."""
    o = _offset(seqs.shape[1], n)
    logp = F.log_softmax(logits.float(), dim=-1)
    nll = -logp[:, :-1].gather(-1, seqs[:, 1:, None].to(logp.device))[..., 0]  # nll[:, p] predicts p + 1
    first = nll[:, o : o + n - 1]  # predicting r_2..r_n of the first copy
    second = nll[:, o + n : o + 2 * n - 1]  # predicting r_2..r_n of the second copy
    return {"rep_loss_first": float(first.mean()), "rep_loss_second": float(second.mean())}


@torch.no_grad()
def hf_repeated_scores(model: Any, seqs: torch.Tensor, n: int) -> dict[str, Any]:
    """The scores of a Hugging Face causal LM from ``output_attentions`` (eager attention):
    per-head ``[layer, head]`` tensors and the copy losses. Used while training (and as a
    cross-check); the series command reads the same patterns from the TransformerLens bridge."""
    previous = getattr(model.config, "_attn_implementation", None)
    switch = previous != "eager"  # a model loaded eager (the series' scorer) is not switched back and forth
    if switch:
        _set_attention(model, "eager")
    try:
        out = model(input_ids=seqs, output_attentions=True)  # no padding: no mask needed
    finally:
        if switch and previous is not None:
            _set_attention(model, previous)
    if not out.attentions:
        raise ValueError("the model returned no attentions")
    per_layer = [pattern_scores(a, n) for a in out.attentions]
    scores: dict[str, Any] = {m: torch.stack([p[m] for p in per_layer]).cpu() for m in REP_METRICS}
    scores.update(uniform_baselines(seqs.shape[1], n))
    scores.update(copy_losses(out.logits, seqs, n))
    return scores


def _set_attention(model: Any, name: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        try:
            setter(name)
            return
        except Exception:  # older transformers or a model that cannot switch: set the config field
            pass
    model.config._attn_implementation = name


def best_head(values: torch.Tensor, min_layer: int = 0) -> tuple[int, int, float]:
    """(layer, head, value) of the largest value at ``layer >= min_layer``."""
    sub = values[min_layer:]
    flat = int(torch.argmax(sub.flatten()))
    layer, head = divmod(flat, sub.shape[1])
    return layer + min_layer, head, float(sub[layer, head])


__all__ = [
    "REP_METRICS",
    "best_head",
    "copy_losses",
    "hf_repeated_scores",
    "induction_queries",
    "knockout_second_copy_loss",
    "ordinary_token_ids",
    "pattern_scores",
    "repeated_tokens",
    "uniform_baselines",
]


@torch.no_grad()
def knockout_second_copy_loss(
    bridge: Any,
    seqs: Int[torch.Tensor, "batch seq"],
    n: int,
    heads: list[tuple[int, int]] | tuple[tuple[int, int], ...] = (),
    batch_size: int = 16,
) -> Float[torch.Tensor, " batch"]:
    """Per-sequence mean next-token loss on the second copy (``r_2..r_n``) with ``heads``
    zero-ablated (their ``hook_z`` set to 0 at every position); no heads: the clean loss."""
    from mmicl_interp.device import model_device

    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))

    def make_hook(chosen: list[int]):
        def hook(z, hook):
            z = z.clone()
            z[:, :, chosen] = 0.0
            return z

        return hook

    hooks = [(f"blocks.{layer}.attn.hook_z", make_hook(hs)) for layer, hs in sorted(by_layer.items())]
    o = _offset(seqs.shape[1], n)
    device = model_device(bridge)
    out = []
    for start in range(0, len(seqs), batch_size):
        part = seqs[start : start + batch_size].to(device)
        logits = bridge.run_with_hooks(part, fwd_hooks=hooks) if hooks else bridge(part)
        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp[:, :-1].gather(-1, part[:, 1:, None])[..., 0]
        out.append(nll[:, o + n : o + 2 * n - 1].mean(1).cpu())
    return torch.cat(out)
