"""Pretraining data for the M2 encoder: K2-way classification of M2 items (SCIENCE.md section 4).

An item of M2 class k: ``x = (mu2_k + eps2 * eta / sqrt(D2)) / sqrt(1 + eps2^2)``, classes
drawn from the task's Zipf law (alpha2); the target is the class k itself (K2-way). The class
means are those of a :class:`~mmicl_interp.data.multimodal.MultimodalTask`, stored with the
encoder run, so a stage-2 run that loads the encoder also loads these very means.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmicl_interp.data.multimodal import MultimodalTask, noisy_items
from mmicl_interp.data.task import Batch


class EncoderTask:
    """K2-way classification batches over a multimodal task's M2 classes."""

    def __init__(self, task: MultimodalTask):
        self.task = task
        self.config = task.config
        self.layout = None  # single vectors, no sequence

    def sample(self, n: int, generator: torch.Generator, max_shift: int = 0) -> Batch:
        """``n`` noisy M2 items; ``targets`` are their classes (``inputs``: [n, D2])."""
        g = generator
        classes = torch.multinomial(self.task.m2_probs, n, replacement=True, generator=g)
        items = noisy_items(self.task.m2_means[classes], self.config.eps2, g)
        empty = torch.zeros(n, 0, dtype=torch.long)
        zeros = torch.zeros(n, dtype=torch.long)
        return Batch(items, classes, empty, empty, classes, torch.zeros(n, dtype=torch.bool), zeros)

    def suites(self, eval_seed: int, size: int, max_shift: int = 0) -> dict[str, Batch]:
        """One held-out suite, ``test``: fresh items of the training classes."""
        return {"test": self.sample(size, torch.Generator().manual_seed(eval_seed))}

    def save(self, path: str | Path) -> None:
        self.task.save(path)
