"""Synthetic few-shot tasks (unimodal and multimodal): samplers, batches and sequence layouts."""

from mmicl_interp.data.layout import Layout
from mmicl_interp.data.multimodal import MultimodalTask, load_task, make_task
from mmicl_interp.data.task import Batch, Task, zipf_probs

__all__ = ["Batch", "Layout", "MultimodalTask", "Task", "load_task", "make_task", "zipf_probs"]
