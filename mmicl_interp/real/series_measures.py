"""The per-checkpoint measures of a series (``mmicl series``): head scores on repeated random
tokens from a plain transformers copy with eager attention (:func:`hf_scores`; the bridge's
``hook_pattern`` path :func:`repeated_scores` gives the same numbers and serves as the
cross-check), and the in-context loss score of Olsson et al. 2022 on held-out text
(:func:`text_losses`), with the text windows and sequences they read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int

from mmicl_interp.config import ConfigError

POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


# ---------------------------------------------------------------------- measures
def position_limit(config: Any, cap: int) -> int:
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return min(cap, value)
    return cap


def text_windows(length: int) -> tuple[list[int], list[int]]:
    """Token indices averaged for the early and the late loss in a context of ``length`` tokens."""
    early, late = round(50 * length / 512), min(length - 1, round(500 * length / 512))
    half = max(1, length // 64)
    lo = lambda c: [i for i in range(c - half, c + half + 1) if 1 <= i <= length - 1]  # noqa: E731
    return lo(max(1, early)), lo(late)


def read_text_source(spec: str, held_out_every: int = 10) -> list[str]:
    """The texts of ``--text``: ``stdlib-held-out`` or a file / folder of text files."""
    if spec == "stdlib-held-out":
        from mmicl_interp.real.train_lm import held_out_texts

        return held_out_texts(held_out_every)
    path = Path(spec)
    if path.is_file():
        return [path.read_text(encoding="utf-8", errors="replace")]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".py", ".md", ".rst")
        )
        if files:
            return [p.read_text(encoding="utf-8", errors="replace") for p in files]
    raise ConfigError(
        "--text", f"{spec}: give a text file, a folder of .txt/.py/.md/.rst files, or stdlib-held-out"
    )


def text_sequences(tokenizer: Any, texts: list[str], length: int, n_seqs: int) -> torch.Tensor:
    """``n_seqs`` sequences of ``length`` tokens (BOS first when the tokenizer has one), taken at
    evenly spaced places of the texts' joined token stream (deterministic)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    sep = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        if sep is not None:
            stream.append(sep)
    body = length - (1 if bos is not None else 0)
    available = len(stream) // body
    if available < 1:
        raise ConfigError("--text", f"the text has {len(stream)} tokens; a sequence needs {body}")
    n = min(n_seqs, available)
    stride = len(stream) // n
    rows = [stream[i * stride : i * stride + body] for i in range(n)]
    seqs = torch.tensor(rows, dtype=torch.long)
    if bos is not None:
        seqs = torch.cat([torch.full((n, 1), int(bos), dtype=torch.long), seqs], dim=1)
    return seqs


@torch.no_grad()
def repeated_scores(
    bridge: Any, seqs: Int[torch.Tensor, "batch seq"], n: int, batch_size: int = 8
) -> dict[str, Any]:
    """Per-head ``rep_induction`` / ``rep_prev_token`` ([layer, head]) from the bridge's
    ``hook_pattern`` (reduced inside the hook), the uniform baselines and copy losses."""
    from mmicl_interp.device import model_device
    from mmicl_interp.real.repeated import REP_METRICS, copy_losses, pattern_scores, uniform_baselines

    device = model_device(bridge)
    n_layers = bridge.cfg.n_layers
    sums: dict[str, list[Any]] = {m: [None] * n_layers for m in REP_METRICS}
    losses = {"rep_loss_first": 0.0, "rep_loss_second": 0.0}
    total = len(seqs)
    for start in range(0, total, batch_size):
        part = seqs[start : start + batch_size].to(device)
        weight = len(part) / total

        def reducer(layer: int, weight: float = weight):
            def reduce(pattern, hook):
                for metric, value in pattern_scores(pattern, n).items():
                    value = value.cpu() * weight
                    old = sums[metric][layer]
                    sums[metric][layer] = value if old is None else old + value

            return reduce

        hooks = [(f"blocks.{layer}.attn.hook_pattern", reducer(layer)) for layer in range(n_layers)]
        logits = bridge.run_with_hooks(part, fwd_hooks=hooks)
        for key, value in copy_losses(logits, part, n).items():
            losses[key] += value * weight
    missing = [layer for layer in range(n_layers) if sums["rep_induction"][layer] is None]
    if missing:
        raise ConfigError("model", f"no attention pattern came from layers {missing}")
    out: dict[str, Any] = {m: torch.stack(v) for m, v in sums.items()}
    out.update(uniform_baselines(seqs.shape[1], n))
    out.update(losses)
    return out


def load_scorer(folder: Path, label: str, device: Any, dtype: str) -> Any:
    """A plain transformers copy of a checkpoint with eager attention, in eval mode: what the
    series scores with (its ``output_attentions`` cost about 1.02x a plain forward, where the
    TransformerLens bridge's forward alone costs about 1.4x; ``make bench``)."""
    from transformers import AutoModelForCausalLM

    from mmicl_interp.real.load import torch_dtype

    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, attn_implementation="eager", dtype=torch_dtype(dtype)
        )
    except (OSError, ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("model", f"checkpoint {label}: transformers could not load it ({first})") from None
    return model.to(device).eval()


def _no_attention(label: str) -> ConfigError:
    return ConfigError(
        "model",
        f"checkpoint {label}: the model has no attention patterns (transformers returns no "
        "attentions per layer); series scores need attention heads",
    )


@torch.no_grad()
def check_attentions(model: Any, label: str) -> None:
    """ConfigError naming ``label`` unless a two-token forward of the plain model returns one
    attention pattern per layer (``output_attentions``)."""
    from mmicl_interp.device import model_device

    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    ids = torch.zeros(1, 2, dtype=torch.long, device=model_device(model))
    try:
        attentions = model(input_ids=ids, output_attentions=True).attentions
    except (TypeError, ValueError, AttributeError):  # a model without attention outputs
        attentions = None
    if not n_layers or not attentions or len(attentions) != n_layers or any(a is None for a in attentions):
        raise _no_attention(label)


@torch.no_grad()
def hf_scores(
    model: Any, seqs: Int[torch.Tensor, "batch seq"], n: int, label: str, batch_size: int = 8
) -> dict[str, Any]:
    """:func:`repeated_scores` from a plain transformers model's eager ``output_attentions``
    (:func:`~mmicl_interp.real.repeated.hf_repeated_scores` per batch, weighted by its size);
    ConfigError naming ``label`` when the model returns no attention pattern per layer."""
    from mmicl_interp.device import model_device
    from mmicl_interp.real.repeated import REP_METRICS, hf_repeated_scores

    device = model_device(model)
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    total, sums = len(seqs), {}
    for start in range(0, total, batch_size):
        part = seqs[start : start + batch_size].to(device)
        try:
            scores = hf_repeated_scores(model, part, n)
        except (TypeError, ValueError):  # no output_attentions, or none returned
            scores = None
        if scores is None or n_layers == 0 or scores["rep_induction"].shape[0] != n_layers:
            raise _no_attention(label)
        weight = len(part) / total
        for key in (*REP_METRICS, "rep_loss_first", "rep_loss_second"):
            sums[key] = sums.get(key, 0) + scores[key] * weight
        sums.update({k: v for k, v in scores.items() if k.endswith("_uniform")})
    return sums


@torch.no_grad()
def text_losses(bridge: Any, seqs: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """The in-context loss score (Olsson et al. 2022) and its parts on ``seqs``, from a bridge
    or a plain transformers model (``bridge`` is either)."""
    from mmicl_interp.device import model_device

    device = model_device(bridge)
    rows = []
    for start in range(0, len(seqs), batch_size):
        part = seqs[start : start + batch_size].to(device)
        out = bridge(part)
        logits = getattr(out, "logits", out).float()  # a bridge returns logits, transformers an output
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), part[:, 1:], reduction="none"
        )  # nll[:, i - 1] is the loss of token i
        rows.append(nll.double().cpu())
    nll = torch.cat(rows)
    per_pos = nll.mean(0)
    early, late = text_windows(seqs.shape[1])
    per_seq = nll[:, [i - 1 for i in late]].mean(1) - nll[:, [i - 1 for i in early]].mean(1)
    se = float(per_seq.std() / len(per_seq) ** 0.5) if len(per_seq) > 1 else float("nan")
    loss_early = float(per_pos[[i - 1 for i in early]].mean())
    loss_late = float(per_pos[[i - 1 for i in late]].mean())
    return {
        "icl_score": loss_late - loss_early,
        "icl_score_se": se,
        "loss_early": loss_early,
        "loss_late": loss_late,
        "text_loss": float(per_pos.mean()),
        "early_token": float(early[len(early) // 2]),
        "late_token": float(late[len(late) // 2]),
        "n_text_seqs": float(len(seqs)),
        "text_context": float(seqs.shape[1]),
    }
