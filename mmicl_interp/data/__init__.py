"""Synthetic few-shot tasks: the task sampler, its batches and the sequence layout."""

from mmicl_interp.data.layout import Layout
from mmicl_interp.data.task import Batch, Task, zipf_probs

__all__ = ["Batch", "Layout", "Task", "zipf_probs"]
