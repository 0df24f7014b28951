"""Accuracy and loss on the eval suites (SCIENCE.md section 2).

accuracy = mean over sequences of ``[argmax_j logits_j == target]``; loss = mean
cross-entropy over the L labels at the query; chance = 1/L.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from mmicl_interp.data.task import Batch
from mmicl_interp.device import model_device

Around = Callable[[Batch], AbstractContextManager]
"""What wraps each chunk's forward pass, given that chunk (e.g. a head clamp's hooks)."""


@torch.no_grad()
def suite_logits(
    model: torch.nn.Module, batch: Batch, chunk: int = 2048, around: Around | None = None
) -> Float[torch.Tensor, "batch n_labels"]:
    """Logits of a model on a batch, in chunks, without gradients, on the model's device (the
    batch is moved there chunk by chunk if it is elsewhere). ``around(chunk_batch)``, if given,
    is entered around each chunk's forward pass (the trainer's head clamp)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    parts = []
    for i in range(0, len(batch), chunk):
        inputs, shift = batch.inputs[i : i + chunk].to(device), batch.pos_shift[i : i + chunk].to(device)
        with around(batch[i : i + chunk]) if around is not None else nullcontext():
            parts.append(model(inputs, shift))
    model.train(was_training)
    return torch.cat(parts)


def accuracy_and_loss(
    logits: Float[torch.Tensor, "batch n_labels"], targets: Int[torch.Tensor, " batch"]
) -> tuple[float, float]:
    """Accuracy of argmax predictions and mean cross-entropy."""
    targets = targets.to(logits.device)
    acc = (logits.argmax(-1) == targets).float().mean().item()
    loss = F.cross_entropy(logits.float(), targets).item()
    return acc, loss


def evaluate_suites(
    model: torch.nn.Module, suites: dict[str, Batch], step: int, around: Around | None = None
) -> list[dict]:
    """One metrics row per suite: step, suite, accuracy, loss, chance (``around``: see
    :func:`suite_logits`)."""
    rows = []
    for name, batch in suites.items():
        logits = suite_logits(model, batch, around=around)
        acc, loss = accuracy_and_loss(logits, batch.targets)
        rows.append(
            {"step": step, "suite": name, "accuracy": acc, "loss": loss, "chance": 1.0 / logits.shape[-1]}
        )
    return rows
