"""Shared fixtures: tiny task, tiny model and tiny run configs, built in seconds.

Tests never reach the network: the hub is switched off here, before any test module imports
``huggingface_hub`` (it reads these variables once, at import; TransformerLens otherwise retries
the hub and may pip-install torchvision).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from mmicl_interp.config import ModelConfig, RunConfig, TaskConfig, TrainConfig  # noqa: E402
from mmicl_interp.data.task import Task  # noqa: E402
from mmicl_interp.model.transformer import ICLTransformer  # noqa: E402

EXAMPLE_RUN = Path(__file__).resolve().parents[1] / "checkpoints" / "example"
"""The shipped example run."""


def copy_example(dst: Path) -> Path:
    """A copy of the shipped example run at ``dst``, without its reports; returns ``dst``."""
    shutil.copytree(EXAMPLE_RUN, dst, ignore=shutil.ignore_patterns("reports", "report.html"))
    return dst


@pytest.fixture(scope="module")
def run_copy(tmp_path_factory) -> Path:
    """A copy of the shipped example run (without its reports), one per test module."""
    return copy_example(tmp_path_factory.mktemp("runs") / "example")


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


ICL_RUN_CONFIG = {
    "name": "icl-small",
    "task": {"K": 1024, "L": 16, "D": 16, "N": 8, "B": 2, "eps": 0.1, "eval_size": 256},
    "model": {"positions": "onehot", "n_max": 8, "mlp": "none"},
    "train": {
        "steps": 400,
        "batch_size": 64,
        "lr": 3e-3,
        "eval_every": 200,
        "ckpt_schedule": "linear",
        "ckpt_every": 200,
        "threads": 1,
    },
}
"""A 2-layer attention-only run on a bursty, high-diversity task where ICL emerges in 400 steps."""


def icl_run_config(**changes: dict | str) -> RunConfig:
    """:data:`ICL_RUN_CONFIG` with ``changes`` (``name=`` or section dicts) merged over it."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in ICL_RUN_CONFIG.items()}
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(data)


def toml_text(data: dict, value: Callable[[Any], str] = json.dumps) -> str:
    """``data`` as TOML text: its plain keys first, then a table per dict; ``value`` writes each
    value (JSON's spelling by default)."""
    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


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
