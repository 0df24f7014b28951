"""Accuracy and loss on the eval suites (SCIENCE.md section 2).

accuracy = mean over sequences of ``[argmax_j logits_j == target]``; loss = mean
cross-entropy over the L labels at the query; chance = 1/L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int

from mmicl_interp.data.task import Batch
from mmicl_interp.device import model_device


@torch.no_grad()
def suite_logits(
    model: torch.nn.Module, batch: Batch, chunk: int = 2048
) -> Float[torch.Tensor, "batch n_labels"]:
    """Logits of a model on a batch, in chunks, without gradients, on the model's device (the
    batch is moved there chunk by chunk if it is elsewhere)."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    out = torch.cat(
        [
            model(batch.inputs[i : i + chunk].to(device), batch.pos_shift[i : i + chunk].to(device))
            for i in range(0, len(batch), chunk)
        ]
    )
    model.train(was_training)
    return out


def accuracy_and_loss(
    logits: Float[torch.Tensor, "batch n_labels"], targets: Int[torch.Tensor, " batch"]
) -> tuple[float, float]:
    """Accuracy of argmax predictions and mean cross-entropy."""
    targets = targets.to(logits.device)
    acc = (logits.argmax(-1) == targets).float().mean().item()
    loss = F.cross_entropy(logits.float(), targets).item()
    return acc, loss


def evaluate_suites(model: torch.nn.Module, suites: dict[str, Batch], step: int) -> list[dict]:
    """One metrics row per suite: step, suite, accuracy, loss, chance."""
    rows = []
    for name, batch in suites.items():
        logits = suite_logits(model, batch)
        acc, loss = accuracy_and_loss(logits, batch.targets)
        rows.append(
            {"step": step, "suite": name, "accuracy": acc, "loss": loss, "chance": 1.0 / logits.shape[-1]}
        )
    return rows
