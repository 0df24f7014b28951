"""Shared fixtures: tiny task, tiny model and tiny run configs, built in seconds.

Tests never reach the network: the hub is switched off here, before any test module imports
``huggingface_hub`` (it reads these variables once, at import; TransformerLens otherwise retries
the hub and may pip-install torchvision).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from mmicl_interp.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from mmicl_interp.data.task import Task  # noqa: E402
from mmicl_interp.model.transformer import ICLTransformer  # noqa: E402


def tiny_task_config(**changes) -> TaskConfig:
    """A small task: 64 classes, 8 labels, 8 dims, 4 exemplars."""
    values = dict(K=64, L=8, D=8, N=4, B=2, eps=0.1, eval_size=64)
    values.update(changes)
    cfg = TaskConfig(**values)
    cfg.validate()
    return cfg


def tiny_run_config(**sections) -> RunConfig:
    """A run of a few steps on the tiny task, with every section overridable by dict."""
    task = tiny_task_config(**sections.get("task", {}))
    model = ModelConfig(**{"n_max": 4, **sections.get("model", {})})
    train = TrainConfig(
        **{
            "steps": 12,
            "batch_size": 16,
            "eval_every": 4,
            "ckpt_log_points": 4,
            "ckpt_every": 6,
            **sections.get("train", {}),
        }
    )
    return RunConfig(task=task, model=model, train=train, name="tiny").validate()


TINY_TOML = """\
name = "tiny"
[task]
K = 64
L = 8
D = 8
N = 4
B = 2
eval_size = 64
[model]
n_max = 4
[train]
steps = 6
batch_size = 16
eval_every = 3
ckpt_schedule = "linear"
ckpt_every = 3
"""
"""The tiny config as a TOML file's text (for sweep grids and scripts that read files)."""


@pytest.fixture
def tiny_task() -> Task:
    return Task.create(tiny_task_config())


@pytest.fixture
def tiny_model(tiny_task: Task) -> ICLTransformer:
    return ICLTransformer.from_task(ModelConfig(n_max=4, mlp="gelu", n_heads=2), tiny_task.config)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def fp32_sweeps(monkeypatch):
    """``mmicl sweep --precision auto`` times fp32 against bf16 on the machine; tests pin that
    measurement to a tie (so fp32), so no test's runs depend on how fast this machine is.
    ``tests/sweep/test_precision_choice.py`` tests the measurement itself."""
    from mmicl_interp.sweep import precision

    monkeypatch.setattr(precision, "time_updates", lambda *a, **k: {"fp32": 1.0, "bf16": 1.0})
