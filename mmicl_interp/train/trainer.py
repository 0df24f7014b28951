"""Online training that writes a checkpoint sequence, resumable bit for bit.

Each step draws a fresh batch from the task (online data), minimises cross-entropy at the
query, and at the schedule's steps scores the four eval suites and writes a checkpoint.
The data stream comes from its own ``torch.Generator``; its state and the optimiser state
are saved with each checkpoint, so ``resume`` after a kill continues exactly where the
uninterrupted run would be: same batches, same updates, same weights.

Devices. The model, its optimiser state and the eval suites live on ``train.device``; the
loop does not wait for the device between eval steps: each update's loss stays on the device
and is read back, with the accuracy count, once per eval interval (a nan/inf loss is then
named by its step, and no checkpoint is written after it).

Where the data is sampled: on the CPU, from a CPU ``torch.Generator``, then copied to the
device (``non_blocking``). The trade-off: a device generator would skip the copy and the CPU
work (about 1 ms a batch at the paper's point, 3% of a CPU step; on a GPU, whose step is a
few ms, a larger share, partly hidden because the GPU runs the previous step's kernels while
the CPU samples), but the CPU stream is the same on every machine: the same config and seed
give the same batches on CPU, CUDA and MPS, the generator state in ``train_state`` resumes on
any device, and the task's class means stay in host memory (K x D can be large). Hence: the
same config, seed and device give identical results (tested on the CPU; on CUDA up to the
non-determinism of its atomic-add kernels, which the multimodal index ops use); across devices
(and with ``train.compile``) the data are identical but float rounding differs, so results
agree statistically, not bitwise.
"""

from __future__ import annotations

import math
import os
import platform
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from mmicl_interp import __version__
from mmicl_interp import checkpoints as ck
from mmicl_interp.config import (
    EXECUTION_FIELDS,
    ConfigError,
    RunConfig,
    TrainConfig,
    check_resources,
    load_config,
)
from mmicl_interp.data.multimodal import load_task
from mmicl_interp.device import resolve_device
from mmicl_interp.io import (
    LOCK_FILE,
    Interrupted,
    RunBusy,
    WriteFailed,
    describe_write_error,
    is_write_error,
    run_lock,
    write_remedy,
)
from mmicl_interp.model.factory import build_model, training_task
from mmicl_interp.model.transformer import ICLTransformer, parameter_count
from mmicl_interp.progress import progress_bar
from mmicl_interp.train.clamp import Clamp, clamped
from mmicl_interp.train.evaluate import evaluate_suites
from mmicl_interp.train.pipeline import build_task_and_model, freeze_parts
from mmicl_interp.train.plateau import trend_change
from mmicl_interp.train.schedule import checkpoint_steps, eval_steps

KILL_ENV = "MMICL_TEST_KILL_AT_STEP"
"""Test hook: SIGKILL the training process right after this step's update (crash tests)."""
INTERRUPT_ENV = "MMICL_TEST_INTERRUPT_AT_STEP"
"""Test hook: send this process SIGINT (Ctrl-C) right after this step's update."""


class Diverged(ConfigError):
    """The training loss (or a weight) became nan or inf: training stopped, no bad checkpoint written.

    ``step`` is the update that produced it; ``last_step`` the last checkpoint kept (None if none).
    A ConfigError naming ``train.lr``, so the CLI prints one line and exits with status 2.
    """

    def __init__(self, what: str, step: int, last_step: int | None, out: Path):
        kept = (
            f"kept checkpoints up to step {last_step} in {out}"
            if last_step is not None
            else f"no checkpoint was written to {out}"
        )
        super().__init__(
            "train.lr",
            f"{what} at step {step}; {kept}; lower train.lr and train into a new --out",
        )
        self.step = step
        self.last_step = last_step


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
    """The commit of the source this package runs from, or None when it is not a git checkout.

    Asks ``git`` in this module's folder, and only when this file is tracked there: an installed
    copy (site-packages, even inside someone's repository) or a tree without git gives None.
    Never reads a ``.git`` folder by a path relative to the source.
    """
    here = Path(__file__).resolve()
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    try:
        for args in (["ls-files", "--error-unmatch", here.name], ["rev-parse", "--verify", "HEAD"]):
            done = subprocess.run(
                ["git", *args], cwd=here.parent, env=env, capture_output=True, text=True, timeout=10
            )
            done.check_returncode()
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _is_stale_temp(path: Path) -> bool:
    """A temporary file an atomic write left behind when killed (``.NAME.xxxx.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _identity(config: RunConfig) -> dict[str, Any]:
    """What a run trains, as a dict: its config without where and how it executes
    (``train.device``, ``train.compile``), so a run resumes or is reused on another device."""
    data = config.to_dict()
    data["train"] = {k: v for k, v in data["train"].items() if k not in EXECUTION_FIELDS}
    return data


def _is_own_file(path: Path) -> bool:
    """A file this package leaves in a run folder that holds no run yet: a killed atomic
    write's temp file, or the writer lock (see :func:`~mmicl_interp.io.run_lock`)."""
    return _is_stale_temp(path) or path.name == LOCK_FILE


def _missing_resume(out: Path) -> ConfigError:
    return ConfigError("--resume", f"nothing to resume in {out} (no run there); drop --resume to start")


def _prepare_run_dir(
    out: Path, config: RunConfig, resume: bool | str, log: Callable[[str], None] | None = None
) -> dict | None:
    """Check what ``out`` holds; return its manifest if it is this config's run.

    ``--resume`` on an empty folder (a run killed before its first save leaves one) starts the
    run, and ``log`` is told so in one line."""
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a directory")
    if not (out / ck.MANIFEST).is_file():
        leftovers = [p for p in out.iterdir() if not _is_own_file(p)] if out.exists() else []
        if resume is True:
            if not out.exists():
                raise _missing_resume(out)
            if not leftovers and log is not None:
                log(
                    f"nothing to resume in {out} (an empty folder, as a run stopped before its first save "
                    "leaves); starting the run"
                )
        if leftovers:
            raise ConfigError(
                "--out", f"{out} is not empty and holds no run (no {ck.MANIFEST}); choose another"
            )
        return None
    manifest = ck.read_manifest(out)
    old = _identity(RunConfig.from_dict(manifest["config"]))
    new = _identity(config)
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
    if manifest.get("status") == "diverged":
        raise ConfigError(
            "--out",
            f"{out} holds a run of this config that diverged ({manifest.get('diverged', 'loss nan')}); "
            "it would diverge again: lower train.lr and choose another --out",
        )
    if manifest.get("status") != "complete" and not resume:
        raise ConfigError(
            "--out", f"{out} holds an unfinished run of this config; pass --resume to continue it"
        )
    return manifest


def _config_ref(config: RunConfig) -> str:
    """How the resume hint names the config: its shipped name when it is exactly that config."""
    try:
        if load_config(config.name) == config:
            return config.name
    except (ConfigError, OSError, ValueError):
        pass
    return "CONFIG"


@dataclass
class _Where:
    """How far a run got, for the Ctrl-C message."""

    step: int | None = None
    last_step: int | None = None
    started: bool = False


def _interrupted(config: RunConfig, out: Path, where: _Where, resume_command: str | None) -> Interrupted:
    ref = _config_ref(config)
    command = resume_command or f"mmicl train {ref} --out {out} --resume" + (
        " (with the same config and --set options)" if ref == "CONFIG" else ""
    )
    if not where.started:
        return Interrupted(f"stopped before training started; nothing to keep in {out}")
    at = f"stopped at step {where.step}" if where.step is not None else "stopped while setting up"
    if where.last_step is None:
        return Interrupted(f"{at}, before the first checkpoint; start over with: {command}")
    return Interrupted(
        f"{at}; checkpoints up to step {where.last_step} kept in {out}; resume with: {command}"
    )


def train(
    config: RunConfig,
    out: str | Path,
    *,
    resume: bool | Literal["auto"] = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    resume_command: str | None = None,
) -> TrainResult:
    """Train ``config`` into the run directory ``out``; resume a killed run if asked.

    ``resume=True`` continues the run in ``out`` (there must be one); ``"auto"`` continues
    it if there is one, else starts it (what a sweep does). ``log`` receives one line per
    eval step (per-suite accuracy); ``progress`` shows a bar (plain lines off a terminal).
    A run that is already complete is not retrained. Before any work the config is checked
    against this machine (threads, memory, disk: :func:`~mmicl_interp.config.check_resources`).

    Ctrl-C raises :class:`~mmicl_interp.io.Interrupted` saying what was kept and how to resume
    (``resume_command``, if given, is the command it suggests). A loss or weight that becomes
    nan or inf stops training with :class:`Diverged` (a ConfigError): the checkpoints before it
    are kept, none after, and the manifest's status becomes ``diverged``. torch's thread count
    is restored on return.

    ``train.device`` says where it trains (a device this machine lacks is refused before any
    work, naming ``train.device`` and what is available); ``train.precision = "bf16"`` runs the
    forward pass under bf16 autocast and ``train.compile`` compiles the model for the training
    step. Neither device nor compile is part of the run's identity: a run trained on one device
    resumes, or is found complete, with any other. Checkpoints are CPU float32 whatever the
    device and precision.
    """
    config.validate()
    device = resolve_device(config.train.device, "train.device")
    out = Path(out)
    with run_folder(out, resume, log):
        return _train_locked(config, out, device, resume, progress, log, resume_command)


@contextmanager
def run_folder(
    out: Path, resume: bool | Literal["auto"], log: Callable[[str], None] | None
) -> Iterator[None]:
    """Hold ``out``'s writer lock for the ``with`` block, creating the folder if needed (and
    removing it again if the block leaves it empty); ``train()`` runs inside it, and the stacked
    trainer (:func:`~mmicl_interp.train.stacked.train_group`) holds one per run of its stack.
    Another writer, a path that is a file, or ``resume=True`` without the folder: ConfigError."""
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} exists and is not a directory")
    if resume is True and not out.exists():
        raise _missing_resume(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError("--out", f"cannot create folder {out}: {err.strerror or err}") from None
    try:
        with run_lock(out, command="train") as stale:
            if stale and log is not None:
                log(
                    f"took over the lock of {out} left by pid {stale.get('pid', '?')} on host "
                    f"{stale.get('host', '?')} (that process no longer holds it)"
                )
            yield
    except RunBusy as busy:
        raise ConfigError(
            "--out",
            f"another `mmicl train` ({busy.describe()}) is writing {out}; wait for it to finish or stop "
            "it, then rerun with --resume",
        ) from None
    finally:
        if created:  # a command that wrote nothing leaves no empty folder behind
            try:
                out.rmdir()
            except OSError:
                pass


def _train_locked(
    config: RunConfig,
    out: Path,
    device: torch.device,
    resume: bool | Literal["auto"],
    progress: bool,
    log: Callable[[str], None] | None,
    resume_command: str | None,
) -> TrainResult:
    """:func:`train` under the run folder's writer lock."""
    manifest = _prepare_run_dir(out, config, resume, log)
    if manifest is not None and manifest.get("status") == "complete":
        return complete_result(out)
    check_resources(config, out, device)

    threads = torch.get_num_threads()
    where = _Where(last_step=manifest.get("last_step") if manifest else None, started=manifest is not None)
    try:
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        return _train(config, out, manifest, progress, log, where)
    except KeyboardInterrupt as err:
        if isinstance(err, Interrupted):
            raise
        raise _interrupted(config, out, where, resume_command) from None
    except OSError as err:
        if not is_write_error(err):
            raise
        raise _write_failed(err, config, out, where, resume_command) from None
    finally:
        torch.set_num_threads(threads)


def complete_result(out: Path) -> TrainResult:
    """What :func:`train` reports for a run that is already complete (nothing trained)."""
    rows = ck.read_metrics(out)
    last = max((r["step"] for r in rows), default=0)
    final = {r["suite"]: r["accuracy"] for r in rows if r["step"] == last}
    return TrainResult(out, final, 0.0, 0, already_complete=True)


def _write_failed(
    err: OSError, config: RunConfig, out: Path, where: _Where, resume_command: str | None
) -> WriteFailed:
    """One line for a write that failed during training: the file, why, what was kept."""
    ref = _config_ref(config)
    command = resume_command or f"mmicl train {ref} --out {out} --resume"
    if where.last_step is None:
        kept = f"no checkpoint was written to {out}"
    else:
        kept = (
            f"checkpoints up to step {where.last_step} kept in {out} (each file whole: writes are atomic)"
        )
    remedy = write_remedy(err)
    return WriteFailed(f"{describe_write_error(err)}; {kept}; {remedy}, then resume with: {command}")


def _new_manifest(
    config: RunConfig,
    out: Path,
    task: Any,
    model: torch.nn.Module,
    schedule: dict[str, list[int]],
    frozen: list[str],
    provenance: dict[str, Any],
) -> dict:
    """A new run's manifest; ``run_id`` is the folder's name (two runs of one config are two runs)."""
    tc = config.train
    return {
        "format": "mmicl-run-1",
        "name": config.name,
        "run_id": out.name,
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
        "schedule": schedule,
        "n_params": parameter_count(model),
        "frozen_params": frozen,
        **provenance,
        "status": "running",
        "last_step": None,
        "wall_time_s": 0.0,
    }


def make_update(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Any,
    tc: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    max_shift: int = 0,
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """One training update as :func:`train` runs it, as a function of the step it takes.

    Each call samples ``tc.batch_size`` sequences on the CPU from ``generator``, copies them to
    ``device``, runs the forward pass (compiled when ``tc.compile``, under bf16 autocast when
    ``tc.precision = "bf16"``), the backward pass and the optimiser step, and returns the loss
    and the number of correct predictions as device tensors (reading them syncs the host).
    ``model`` must already be on ``device``; its weights stay float32 and are ``model``'s own
    (the compiled wrapper shares them).

    With ``train.clamp_pattern`` set, ``update(step)`` says which step it is: inside
    ``[clamp_start, clamp_end)`` the forward pass runs eagerly (a compiled graph would not see
    the hook) with the head clamped (:mod:`~mmicl_interp.train.clamp`); ``update()`` is
    refused then, so no caller forgets the clamp.
    """
    step_model = torch.compile(model) if tc.compile else model
    bf16 = tc.precision == "bf16"
    clamp = Clamp.from_config(tc)

    def update(step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if clamp is not None and step is None:
            raise ValueError("update(step): train.clamp_pattern is set, so the step must be given")
        on = clamp is not None and clamp.active(step)
        batch = task.sample(tc.batch_size, generator, max_shift=max_shift)
        inputs, shift, targets = (
            t.to(device, non_blocking=True) for t in (batch.inputs, batch.pos_shift, batch.targets)
        )
        with (
            torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext(),
            clamped(model, clamp, task.layout, batch) if on else nullcontext(),
        ):
            logits = (model if on else step_model)(inputs, shift)
            loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), (logits.detach().argmax(-1) == targets).sum()

    return update


def _execution(device: torch.device, tc: TrainConfig, start_step: int, stacked: int = 1) -> dict[str, Any]:
    """Where and how one training session ran (the manifest's ``trained_on`` list); ``stacked``:
    how many runs trained in one stacked model (:mod:`~mmicl_interp.train.stacked`), when > 1."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or None
    return {
        "from_step": start_step,
        "device": str(device),
        "device_name": name,
        "precision": tc.precision,
        "compile": tc.compile,
        "torch_version": torch.__version__,
        **({"stacked": stacked} if stacked > 1 else {}),
    }


def _all_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter is finite (one host sync)."""
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())


class _Session:
    """One run's training in its folder, driven step by step by a loop that owns the updates.

    It holds what a run trains with (task, model, optimiser, data generator, eval suites; built
    fresh, or restored from the last checkpoint and train state) and writes what a run writes
    (manifest, task, metrics, checkpoints, train state). :func:`_train` drives one session with
    :func:`make_update`; the stacked trainer (:func:`~mmicl_interp.train.stacked.train_group`)
    drives several with one stacked update, so both write the same files the same way.
    """

    def __init__(
        self,
        config: RunConfig,
        out: Path,
        manifest: dict | None,
        log: Callable[[str], None] | None,
        where: _Where,
    ):
        tc = config.train
        self.config, self.out, self.log, self.where = config, out, log, where
        self.device = device = resolve_device(tc.device, "train.device")
        self.ckpts = checkpoint_steps(tc)
        self.evals = set(eval_steps(tc))
        self.bar: Any = None
        """The caller's progress bar (tqdm-like), or None."""
        start_step = 0
        self.resuming = resuming = (
            manifest is not None
            and (out / ck.TRAIN_STATE).is_file()
            and any(s in self.ckpts for s in ck.list_checkpoints(out))
        )
        if resuming:
            task = training_task(config, load_task(out / ck.TASK))
            model = build_model(config)
            provenance: dict = {}
        else:  # a fresh run, or one killed before its first checkpoint: start over
            task, model, provenance = build_task_and_model(config)
        if isinstance(model, ICLTransformer):
            model.readout_only = True  # the same logits for less work; the model is not returned
            model.check_inputs = False  # shifts come from our sampler; the check would sync every step
        frozen = freeze_parts(model, config.pipeline.freeze)
        model.to(device)  # before the optimiser: its state lives beside the weights
        self.task, self.model = task, model
        self.optimizer = make_optimizer(model, config)
        self.generator = torch.Generator().manual_seed(tc.seed)  # a CPU generator: see the module docstring
        self.max_shift = model.max_shift_for(task.layout.n_ctx) if task.layout else 0
        suites = task.suites(config.task.eval_seed, config.task.eval_size, max_shift=self.max_shift)
        self.suites = {name: batch.to(device) for name, batch in suites.items()}

        if resuming:
            start_step = ck.load_train_state(out / ck.TRAIN_STATE, self.optimizer, self.generator)
            where.last_step = start_step
            ck.load_weights(model, ck.ckpt_path(out, start_step))
            # rows past the checkpoint are retrained; a row written twice keeps its last copy
            kept = [r for r in ck.read_metrics(out, warn=False) if r["step"] <= start_step]
            ck.write_metrics(out, kept)
            self.plateau_evals = [(r["step"], r["accuracy"]) for r in kept if r["suite"] == PLATEAU_SUITE]
        else:
            if manifest is None:  # the manifest first: from here on the folder is a (resumable) run
                out.mkdir(parents=True, exist_ok=True)
                schedule = {"checkpoints": self.ckpts, "eval": sorted(self.evals)}
                manifest = _new_manifest(config, out, task, model, schedule, frozen, provenance)
                ck.write_manifest(out, manifest)
                where.started = True
            manifest["last_step"] = None
            where.last_step = None
            ck.write_metrics(out, [])
            task.save(out / ck.TASK)
            self.plateau_evals = []
        self.manifest = manifest
        self.start_step = start_step
        self.clamp = Clamp.from_config(tc)
        self.final: dict[str, float] = {}
        self.train_seen = 0
        self.train_correct = torch.zeros((), dtype=torch.long, device=device)  # summed on the device
        # each update's loss, kept on the device until the next eval step (the only host syncs):
        # there the interval's train loss is summed and the first nan/inf loss, if any, is named
        eval_list = sorted(self.evals)
        window = max([1, *(b - a for a, b in zip(eval_list, eval_list[1:], strict=False))])
        self.step_losses = torch.zeros(window, device=device)
        self.pending = 0

    def begin(self, stacked: int = 1) -> None:
        """Record this training session in the manifest (status running) and start its clock."""
        manifest = self.manifest
        manifest.setdefault("run_id", self.out.name)
        manifest.setdefault("trained_on", []).append(
            _execution(self.device, self.config.train, self.start_step, stacked)
        )
        manifest["status"] = "running"
        ck.write_manifest(self.out, manifest)
        self.where.started = True
        self.where.step = self.start_step
        self.wall_before = float(manifest.get("wall_time_s") or 0.0)
        self.t0 = time.perf_counter()
        self.model.train()

    def _clamp_around(self, at: int) -> Callable | None:
        """Inside the clamp's steps an eval scores the model as that step trains it: clamped."""
        clamp = self.clamp
        if clamp is None or not clamp.active(at):
            return None
        return lambda part: clamped(self.model, clamp, self.task.layout, part)

    def diverge(self, what: str, at: int) -> Diverged:
        """Mark the run diverged in its manifest; the error to raise."""
        manifest = self.manifest
        manifest["status"] = "diverged"
        manifest["diverged"] = f"{what} at step {at}"
        manifest["wall_time_s"] = self.wall_before + time.perf_counter() - self.t0
        ck.write_manifest(self.out, manifest)
        return Diverged(what, at, manifest.get("last_step"), self.out)

    def boundary(self, step: int) -> bool:
        """Before the update from ``step``: score the suites and write a checkpoint where the
        schedule says (not again at a resumed run's first step: they exist); whether training
        stops here (the last step, or a plateau: ``train.stop_plateau``)."""
        tc = self.config.train
        self.where.step = step
        fresh = not (self.resuming and step == self.start_step)  # a resumed step's eval and checkpoint exist
        if step in self.evals and fresh:
            self._evaluate(step)
        if step in self.ckpts and fresh:
            self._checkpoint(step)
        if step >= tc.steps:
            return True
        # a resumed step decides as it did before: the evals are on disk
        return step in self.ckpts and _at_plateau(tc, step, self.plateau_evals, self.manifest)

    def _evaluate(self, step: int) -> None:
        pending = self.pending
        losses = self.step_losses[:pending].tolist()  # one host sync for the whole interval
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is not None:
            raise self.diverge(f"loss became {losses[bad]}", step - pending + bad + 1)
        if step > self.start_step and not _all_finite(self.model):
            raise self.diverge("a weight became nan or inf", step)
        rows = evaluate_suites(self.model, self.suites, step, self._clamp_around(step))
        if self.train_seen:
            per_step = self.train_seen // pending
            rows.append(
                {
                    "step": step,
                    "suite": "train",
                    "accuracy": int(self.train_correct) / self.train_seen,
                    "loss": sum(v * per_step for v in losses) / self.train_seen,
                    "chance": rows[0]["chance"],
                }
            )
            self.train_seen, self.pending = 0, 0
            self.train_correct.zero_()
        ck.append_metrics(self.out, rows)
        self.final = {r["suite"]: r["accuracy"] for r in rows}
        self.plateau_evals += [(step, r["accuracy"]) for r in rows if r["suite"] == PLATEAU_SUITE]
        line = f"step {step:>7d} | " + "  ".join(
            f"{r['suite']} {r['accuracy']:.3f}" for r in rows if r["suite"] != "train"
        )
        bar = self.bar
        if bar is not None:
            bar.set_postfix_str(
                "  ".join(f"{k} {v:.2f}" for k, v in self.final.items() if k in ("icl", "iwl"))
            )
        if self.log is not None:
            if bar is not None:
                bar.clear()  # a tqdm bar: keep the log line off the bar's line
            self.log(line)
            if bar is not None:
                bar.refresh()

    def _checkpoint(self, step: int) -> None:
        ck.save_weights(self.model, ck.ckpt_path(self.out, step), step)
        ck.save_train_state(self.out / ck.TRAIN_STATE, step, self.optimizer, self.generator)
        self.manifest["last_step"] = step
        self.where.last_step = step
        self.manifest["wall_time_s"] = self.wall_before + time.perf_counter() - self.t0
        ck.write_manifest(self.out, self.manifest)

    def record(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        """Count one update's loss and correct predictions (device tensors; no host sync)."""
        self.step_losses[self.pending] = loss  # checked at the next eval step
        self.pending += 1
        self.train_correct += correct
        self.train_seen += self.config.train.batch_size

    def finish(self, step: int) -> TrainResult:
        """Mark the run complete (it stopped at ``step``) and report it."""
        wall = time.perf_counter() - self.t0
        self.manifest["status"] = "complete"
        self.manifest["wall_time_s"] = self.wall_before + wall
        ck.write_manifest(self.out, self.manifest)
        final = self.final
        if not final:
            rows = ck.read_metrics(self.out)
            final = {r["suite"]: r["accuracy"] for r in rows if r["step"] == step}
        return TrainResult(self.out, final, wall, step - self.start_step)


def crash_hooks() -> tuple[int, int]:
    """The steps of the crash-test hooks (:data:`KILL_ENV`, :data:`INTERRUPT_ENV`; -1: off)."""
    return int(os.environ.get(KILL_ENV, "-1")), int(os.environ.get(INTERRUPT_ENV, "-1"))


def fire_test_hooks(step: int, hooks: tuple[int, int]) -> None:
    """SIGKILL or SIGINT this process after the update that reached ``step``, if a hook says so."""
    kill_at, interrupt_at = hooks
    if step == kill_at:
        os.kill(os.getpid(), 9)
    if step == interrupt_at:
        os.kill(os.getpid(), signal.SIGINT)


def _train(
    config: RunConfig,
    out: Path,
    manifest: dict | None,
    progress: bool,
    log: Callable[[str], None] | None,
    where: _Where,
) -> TrainResult:
    tc = config.train
    run = _Session(config, out, manifest, log, where)
    run.begin()
    hooks = crash_hooks()
    bar = progress_bar(tc.steps, config.name, progress, initial=run.start_step, unit="step")
    run.bar = bar
    update = make_update(run.model, run.optimizer, run.task, tc, run.device, run.generator, run.max_shift)
    step = run.start_step
    try:
        while not run.boundary(step):
            loss, correct = update(step)
            run.record(loss, correct)
            step += 1
            where.step = step
            bar.update(1)
            fire_test_hooks(step, hooks)
    finally:
        bar.close()
    return run.finish(step)


PLATEAU_SUITE = "icl"
"""The suite whose accuracy ``train.stop_plateau`` watches."""
PLATEAU_TAIL = 0.2
"""The window of ``train.stop_plateau``: the last 20% of the steps so far."""


def _at_plateau(tc: TrainConfig, step: int, evals: list[tuple[int, float]], manifest: dict) -> bool:
    """Whether training stops early at checkpoint ``step`` (``train.stop_plateau``); if so the
    manifest records where and why under ``stopped``."""
    if tc.stop_plateau <= 0 or step < max(tc.stop_min_step, 1):
        return False
    seen = [(s, a) for s, a in evals if s <= step]
    change = trend_change([s for s, _ in seen], [a for _, a in seen], PLATEAU_TAIL)
    if not change < tc.stop_plateau:  # nan (too few evals in the window) keeps training
        return False
    manifest["stopped"] = {
        "step": step,
        "reason": f"{PLATEAU_SUITE} accuracy moved {change:.4f} < train.stop_plateau={tc.stop_plateau:g} "
        f"over the last {PLATEAU_TAIL:.0%} of training",
        "change": change,
    }
    return True
