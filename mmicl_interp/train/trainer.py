"""Online training that writes a checkpoint sequence, resumable bit for bit.

Each step draws a fresh batch from the task (online data), minimises cross-entropy at the
query, and at the schedule's steps scores the four eval suites and writes a checkpoint.
The data stream comes from its own ``torch.Generator``; its state and the optimiser state
are saved with each checkpoint, so ``resume`` after a kill continues exactly where the
uninterrupted run would be: same batches, same updates, same weights.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mmicl_interp import __version__
from mmicl_interp import checkpoints as ck
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.data.multimodal import load_task
from mmicl_interp.model.transformer import ICLTransformer, parameter_count
from mmicl_interp.train.evaluate import evaluate_suites
from mmicl_interp.train.pipeline import build_model, build_task_and_model, freeze_parts, training_task
from mmicl_interp.train.schedule import checkpoint_steps, eval_steps

KILL_ENV = "MMICL_TEST_KILL_AT_STEP"
"""Test hook: SIGKILL the training process right after this step's update (crash tests)."""


@dataclass
class TrainResult:
    """What a finished (or already complete) run reports."""

    run_dir: Path
    final_metrics: dict[str, float]
    """Suite name -> accuracy at the last step."""
    wall_time_s: float
    steps_trained: int
    already_complete: bool = False


def make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the trainable parameters."""
    tc = config.train
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parents[2] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _prepare_run_dir(out: Path, config: RunConfig, resume: bool) -> dict | None:
    """Check what ``out`` holds; return its manifest if it is this config's run."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a directory")
    if not (out / ck.MANIFEST).is_file():
        if any(out.iterdir()):
            raise ConfigError(
                "--out", f"{out} is not empty and holds no run (no {ck.MANIFEST}); choose another"
            )
        return None
    manifest = ck.read_manifest(out)
    old = RunConfig.from_dict(manifest["config"]).to_dict()
    new = config.to_dict()
    if old != new:
        diffs = [
            f"{section}.{key}: {old[section][key]!r} -> {new[section][key]!r}"
            for section in ("task", "model", "train", "pipeline")
            for key in new[section]
            if old[section].get(key) != new[section][key]
        ]
        raise ConfigError(
            "--out",
            f"{out} holds a different run ({'; '.join(diffs[:3]) or 'name differs'}); choose another --out",
        )
    if manifest.get("status") != "complete" and not resume:
        raise ConfigError(
            "--out", f"{out} holds an unfinished run of this config; pass --resume to continue it"
        )
    return manifest


def train(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` into the run directory ``out``; resume a killed run if asked.

    ``log`` receives one line per eval step (per-suite accuracy); ``progress`` shows a bar.
    A run that is already complete is not retrained.
    """
    config.validate()
    out = Path(out)
    manifest = _prepare_run_dir(out, config, resume)
    if manifest is not None and manifest.get("status") == "complete":
        rows = ck.read_metrics(out)
        last = max((r["step"] for r in rows), default=0)
        final = {r["suite"]: r["accuracy"] for r in rows if r["step"] == last}
        return TrainResult(out, final, 0.0, 0, already_complete=True)

    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ckpts = checkpoint_steps(tc)
    evals = set(eval_steps(tc))

    start_step = 0
    resuming = (
        manifest is not None
        and (out / ck.TRAIN_STATE).is_file()
        and any(s in ckpts for s in ck.list_checkpoints(out))
    )
    if resuming:
        task = training_task(config, load_task(out / ck.TASK))
        model = build_model(config)
        provenance: dict = {}
    else:  # a fresh run, or one killed before its first checkpoint: start over
        task, model, provenance = build_task_and_model(config)
    if isinstance(model, ICLTransformer):
        model.readout_only = True  # the same logits for less work; the model is not returned
    frozen = freeze_parts(model, config.pipeline.freeze)
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(tc.seed)
    max_shift = model.max_shift_for(task.layout.n_ctx) if task.layout else 0
    suites = task.suites(config.task.eval_seed, config.task.eval_size, max_shift=max_shift)

    if resuming:
        start_step = ck.load_train_state(out / ck.TRAIN_STATE, optimizer, generator)
        ck.load_weights(model, ck.ckpt_path(out, start_step))
        ck.write_metrics(out, [r for r in ck.read_metrics(out) if r["step"] <= start_step])
    elif manifest is not None:  # the same folder, restarted from scratch
        ck.write_metrics(out, [])
    if manifest is None:
        out.mkdir(parents=True, exist_ok=True)
        task.save(out / ck.TASK)
        manifest = {
            "format": "mmicl-run-1",
            "name": config.name,
            "package_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "git_commit": _git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config.to_dict(),
            "seeds": {
                "task": config.task.seed,
                "eval": config.task.eval_seed,
                "model": config.model.seed,
                "train": tc.seed,
            },
            "layout": task.layout.to_dict() if task.layout else None,
            "schedule": {"checkpoints": ckpts, "eval": sorted(evals)},
            "n_params": parameter_count(model),
            "frozen_params": frozen,
            **provenance,
            "status": "running",
            "last_step": None,
            "wall_time_s": 0.0,
        }
        ck.write_metrics(out, [])
    manifest["status"] = "running"
    ck.write_manifest(out, manifest)

    kill_at = int(os.environ.get(KILL_ENV, "-1"))
    wall_before = float(manifest.get("wall_time_s") or 0.0)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=tc.steps, initial=start_step, desc=config.name, disable=not progress, unit="step")
    train_loss_sum, train_correct, train_seen = 0.0, 0, 0
    final: dict[str, float] = {}
    step = start_step
    while True:
        if step in evals and not (step == start_step and start_step > 0):
            rows = evaluate_suites(model, suites, step)
            if train_seen:
                rows.append(
                    {
                        "step": step,
                        "suite": "train",
                        "accuracy": train_correct / train_seen,
                        "loss": train_loss_sum / train_seen,
                        "chance": rows[0]["chance"],
                    }
                )
                train_loss_sum, train_correct, train_seen = 0.0, 0, 0
            ck.append_metrics(out, rows)
            final = {r["suite"]: r["accuracy"] for r in rows}
            line = f"step {step:>7d} | " + "  ".join(
                f"{r['suite']} {r['accuracy']:.3f}" for r in rows if r["suite"] != "train"
            )
            bar.set_postfix({k: f"{v:.2f}" for k, v in final.items() if k in ("icl", "iwl")})
            if log is not None:
                bar.clear()
                log(line)
                bar.refresh()
        if step in ckpts and not (step == start_step and start_step > 0):
            ck.save_weights(model, ck.ckpt_path(out, step), step)
            ck.save_train_state(out / ck.TRAIN_STATE, step, optimizer, generator)
            manifest["last_step"] = step
            manifest["wall_time_s"] = wall_before + time.perf_counter() - t0
            ck.write_manifest(out, manifest)
        if step >= tc.steps:
            break
        batch = task.sample(tc.batch_size, generator, max_shift=max_shift)
        logits = model(batch.inputs, batch.pos_shift)
        loss = F.cross_entropy(logits, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_loss_sum += loss.item() * len(batch)
        train_correct += int((logits.argmax(-1) == batch.targets).sum())
        train_seen += len(batch)
        step += 1
        bar.update(1)
        if step == kill_at:
            os.kill(os.getpid(), 9)
    bar.close()
    wall = time.perf_counter() - t0
    manifest["status"] = "complete"
    manifest["wall_time_s"] = wall_before + wall
    ck.write_manifest(out, manifest)
    if not final:
        rows = ck.read_metrics(out)
        final = {r["suite"]: r["accuracy"] for r in rows if r["step"] == tc.steps}
    return TrainResult(out, final, wall, tc.steps - start_step)
