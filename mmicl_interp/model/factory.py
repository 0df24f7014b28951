"""The model factory: a fresh model, and the task a run samples from, for a run config.

Both :mod:`mmicl_interp.runs` (reading a run back) and :mod:`mmicl_interp.train` (making
one) need them; they live here, below both, so neither imports the other
(``tests/test_packaging.py`` checks that the package has no import cycle).
"""

from __future__ import annotations

from torch import nn

from mmicl_interp.config import RunConfig
from mmicl_interp.data.encoder import EncoderTask
from mmicl_interp.data.multimodal import MultimodalTask
from mmicl_interp.data.task import Task
from mmicl_interp.model.encoder import EncoderClassifier
from mmicl_interp.model.transformer import ICLTransformer


def build_model(config: RunConfig) -> nn.Module:
    """A freshly initialised model for a run config (the decoder, or an encoder to pretrain)."""
    if config.kind == "encoder":
        return EncoderClassifier(config.model, config.task)
    return ICLTransformer.from_task(config.model, config.task)


def training_task(config: RunConfig, task: Task | MultimodalTask) -> Task | MultimodalTask | EncoderTask:
    """What a run samples its batches from: the task itself, or its M2 classification view."""
    return EncoderTask(task) if config.kind == "encoder" else task
