"""The run directory: its files, and safe reading and writing of each.

::

    RUN/
      manifest.json              config, seeds, versions, schedule, status
      task.safetensors           class means + label vectors (the task itself)
      ckpt/step_0000000.safetensors ...   model weights at each checkpoint step
      train_state.safetensors    optimiser + data-RNG state at the last checkpoint (resume)
      metrics.jsonl              one row per (step, suite): accuracy, loss, chance

Every write is atomic (temp file, fsync, rename). Weights are safetensors: loading a run
never unpickles anything. A truncated or corrupt file raises :class:`CorruptFileError`
naming its path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mmicl_interp.io import CorruptFileError, atomic_write, read_json, write_json

MANIFEST = "manifest.json"
TASK = "task.safetensors"
TRAIN_STATE = "train_state.safetensors"
METRICS = "metrics.jsonl"
CKPT_DIR = "ckpt"
_CKPT_RE = re.compile(r"^step_(\d{7})\.safetensors$")


def ckpt_path(run_dir: str | Path, step: int) -> Path:
    """Path of the weights at ``step``."""
    return Path(run_dir) / CKPT_DIR / f"step_{step:07d}.safetensors"


def list_checkpoints(run_dir: str | Path) -> list[int]:
    """Steps with a weights file, sorted."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(steps)


def save_weights(model: nn.Module, path: str | Path, step: int) -> None:
    """Write a model's parameters (float32 safetensors) atomically."""
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    meta = {"step": str(step), "format": "mmicl-weights-1"}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(path, err) from None
    return tensors, meta


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (CorruptFileError naming it when unreadable)."""
    return _read_safetensors(Path(path))[0]


def load_weights(model: nn.Module, path: str | Path) -> int:
    """Load weights saved by :func:`save_weights` into ``model``; return their step."""
    path = Path(path)
    tensors, meta = _read_safetensors(path)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CorruptFileError(path, f"weights do not fit the model: {err}") from None
    return int(meta.get("step", -1))


def save_train_state(
    path: str | Path, step: int, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> None:
    """Write the optimiser state and the data generator's state (what resume needs)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {"rng.train": generator.get_state()}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{index}.{key}"] = value.detach().contiguous()
            elif value is not None:
                scalars.setdefault(str(index), {})[key] = value
    meta = {
        "step": str(step),
        "param_groups": json.dumps(state["param_groups"]),
        "scalars": json.dumps(scalars),
        "format": "mmicl-train-state-1",
    }
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_train_state(path: str | Path, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    """Restore what :func:`save_train_state` wrote; return its step."""
    path = Path(path)
    tensors, meta = _read_safetensors(path)
    try:
        state: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("opt."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        for index, entry in json.loads(meta.get("scalars", "{}")).items():
            state.setdefault(int(index), {}).update(entry)
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        generator.set_state(tensors["rng.train"])
        return int(meta["step"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CorruptFileError(path, err) from None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The run's manifest (FileNotFoundError if the folder is not a run)."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"not a run directory (no {MANIFEST}): {run_dir}")
    data = read_json(path)
    if not isinstance(data, dict) or "config" not in data:
        raise CorruptFileError(path, "no config in manifest")
    return data


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    write_json(Path(run_dir) / MANIFEST, manifest)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl; a torn last line (killed mid-append) is skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            raise CorruptFileError(path, f"line {i + 1}: {err}") from None
    return rows


def write_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl atomically (used when a resumed run drops rows past its checkpoint)."""
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(Path(run_dir) / METRICS, lambda tmp: tmp.write_text(text))


def append_metrics(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to metrics.jsonl and fsync (a kill can tear only the last line)."""
    import os

    with open(Path(run_dir) / METRICS, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())
