"""Several runs of one model shape trained at once, with stacked weights.

Small models leave much of a machine idle between small ops (a GPU most of all), so S runs
whose models have the same shapes train in one process by stacking their parameters and
running the model over the stack with ``torch.func.vmap`` of ``functional_call``: one batched
matmul per layer instead of S small ones. The loss is the sum of the S per-run mean
cross-entropies, so each run's gradient is exactly its own (up to float rounding: see below).

:func:`train_group` is what ``mmicl sweep`` uses (:func:`~mmicl_interp.sweep.runner.run_sweep`):
each run keeps its own model, optimiser, task, data generator and eval suites, built exactly
as :func:`~mmicl_interp.train.trainer.train` builds them, and writes the same run folder
(manifest, task, metrics, checkpoints at the same steps, train state); only the forward and
backward pass are shared. So each run's data stream, init, optimiser, learning rate and loss
are those of a separate ``mmicl train`` of its config. The one difference from separate runs
is float rounding in the batched matmuls of ``vmap``, which also depends on the stack's size
(a test measured 6e-8 on the weights after 10 fp32 steps; about 2e-5 under bf16 autocast).
A killed stack resumes each run from its own checkpoint, equal bit for bit to the
uninterrupted stack; only a kill between two runs' checkpoint writes leaves them at different
steps, and they then resume as one stack per step, equal to the rounding above.

Which runs stack (:func:`stack_key`): unimodal runs without head clamping, early stopping or
``torch.compile`` whose model config agrees except in its seed and init (``model.seed``,
``init_std``, ``mlp_init``, ``embed_init``: the forward pass and buffers do not read them),
whose task agrees in the fields that set input and output shapes (``task.L``, ``D``, ``N``;
``K``, ``B``, ``p_B``, ``eps``, ``alpha``, seeds, ... only change what is sampled), and whose
train config agrees except in ``train.seed`` (same steps, batch, optimiser, lr, schedule,
device, precision, threads).

:func:`train_seeds` is the older in-memory form: several seeds of one config, final weights
only (no run folders), for the speed bench.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch.func import functional_call, stack_module_state, vmap

from mmicl_interp.config import ConfigError, RunConfig, TrainConfig, check_resources
from mmicl_interp.data.task import Task
from mmicl_interp.device import resolve_device
from mmicl_interp.io import Interrupted, WriteFailed, describe_write_error, is_write_error, write_remedy
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.progress import progress_bar
from mmicl_interp.train import trainer
from mmicl_interp.train.trainer import TrainResult

INIT_ONLY_MODEL_FIELDS: tuple[str, ...] = ("seed", "init_std", "mlp_init", "embed_init")
"""``[model]`` fields that only set the initial weights: runs of one stack may differ in them."""
SHAPE_TASK_FIELDS: tuple[str, ...] = ("L", "D", "N")
"""``[task]`` fields that set the model's input and output shapes: equal within a stack."""
PER_RUN_TRAIN_FIELDS: tuple[str, ...] = ("seed",)
"""``[train]`` fields runs of one stack may differ in (each run has its own data generator)."""


def stack_key(config: RunConfig) -> tuple | None:
    """What must be equal for runs to train in one stack, as a hashable key; None for a run
    that never stacks (not unimodal, head clamping, ``train.stop_plateau``, ``train.compile``).

    Two runs with equal keys have models of equal parameter and buffer shapes and values of
    every buffer, inputs of equal shapes, and the same training loop (steps, batch, optimiser,
    lr, checkpoint and eval schedule, device, precision, threads).
    """
    tc = config.train
    if config.kind != "unimodal" or tc.clamp_pattern != "none" or tc.stop_plateau > 0 or tc.compile:
        return None
    model = {k: v for k, v in asdict(config.model).items() if k not in INIT_ONLY_MODEL_FIELDS}
    task = {k: getattr(config.task, k) for k in SHAPE_TASK_FIELDS}
    train = {k: v for k, v in asdict(tc).items() if k not in PER_RUN_TRAIN_FIELDS}
    return tuple(
        (section, key, repr(value))
        for section, values in (
            ("model", model),
            ("task", task),
            ("train", train),
            ("pipeline", asdict(config.pipeline)),
        )
        for key, value in sorted(values.items())
    )


def make_stacked_update(
    models: Sequence[ICLTransformer],
    optimizers: Sequence[torch.optim.Optimizer],
    tasks: Sequence[Task],
    generators: Sequence[torch.Generator],
    tc: TrainConfig,
    device: torch.device,
    max_shift: int = 0,
) -> Callable[[], tuple[Float[torch.Tensor, " stack"], Int[torch.Tensor, " stack"]]]:
    """One training update of S runs at once, as a function of nothing.

    Run s samples ``tc.batch_size`` sequences from ``tasks[s]`` with ``generators[s]`` on the CPU
    (as :func:`~mmicl_interp.train.trainer.make_update` does), the S models' parameters are
    stacked (``torch.stack``, so the gradients flow back to each model's own parameters) and run
    with ``vmap(functional_call)`` under bf16 autocast if ``tc.precision = "bf16"``; the loss is
    the sum of the S mean cross-entropies, and each run's own optimiser steps. Returns each
    run's loss and number of correct predictions (device tensors, no host sync). The models
    must be on ``device``, with equal shapes and buffers (:func:`stack_key`).
    """
    template = models[0]  # functional_call swaps the stacked tensors in for the call only
    names = [name for name, p in template.named_parameters() if p.requires_grad]
    per_model = [dict(model.named_parameters()) for model in models]
    buffers = dict(template.named_buffers())  # equal across the stack (masks, rope tables)
    bf16 = tc.precision == "bf16"

    def forward(params, inputs, shift):
        return functional_call(template, (params, buffers), (inputs, shift))

    batched_forward = vmap(forward)
    batched_loss = vmap(F.cross_entropy)

    def update() -> tuple[torch.Tensor, torch.Tensor]:
        batches = [
            task.sample(tc.batch_size, g, max_shift=max_shift)
            for task, g in zip(tasks, generators, strict=True)
        ]
        inputs, shifts, targets = (
            torch.stack([getattr(b, field) for b in batches]).to(device, non_blocking=True)
            for field in ("inputs", "pos_shift", "targets")
        )
        params = {name: torch.stack([p[name] for p in per_model]) for name in names}
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            logits = batched_forward(params, inputs, shifts)  # [stack, batch, L]
            losses = batched_loss(logits, targets)  # [stack]: each run's mean, as F.cross_entropy
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        for optimizer in optimizers:
            optimizer.step()
        return losses.detach(), (logits.detach().argmax(-1) == targets).sum(-1)

    return update


def train_group(
    configs: Sequence[RunConfig],
    outs: Sequence[str | Path],
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[TrainResult]:
    """Train each ``configs[i]`` into ``outs[i]`` as one stack, like ``train(config, out,
    resume="auto")`` for each; results in order.

    The configs must share a :func:`stack_key` (a ValueError otherwise). Before any work each
    run is checked against this machine (:func:`~mmicl_interp.config.check_resources`), and
    the stack's memory as that of one run with S times the batch (a ConfigError saying so).
    A complete run is not retrained; an unfinished one continues from its last checkpoint.
    Runs that resume from different steps (a kill between two runs' checkpoint writes) train
    as one stack per start step, one after the other. ``log`` receives each eval line prefixed
    with the run's folder name. Ctrl-C raises :class:`~mmicl_interp.io.Interrupted`, a failed write
    :class:`~mmicl_interp.io.WriteFailed` (each run keeps its checkpoints; rerunning resumes).
    A run whose loss or weights become nan or inf leaves the stack (its manifest says
    ``diverged``, as :func:`~mmicl_interp.train.trainer.train` writes it), the others finish, and
    then its :class:`~mmicl_interp.train.trainer.Diverged` is raised.
    """
    if not configs or len(configs) != len(outs):
        raise ValueError(
            f"train_group: needs one folder per config, got {len(configs)} configs, {len(outs)} folders"
        )
    for config in configs:
        config.validate()
    keys = [stack_key(c) for c in configs]
    if keys[0] is None or any(k != keys[0] for k in keys):
        raise ValueError("train_group: the configs do not stack (see stack_key); train them separately")
    paths = [Path(out) for out in outs]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError(f"train_group: two runs share a folder: {[str(p) for p in paths]}")
    device = resolve_device(configs[0].train.device, "train.device")
    with ExitStack() as held:
        for path in paths:
            held.enter_context(trainer.run_folder(path, "auto", log))
        return _train_group_locked(list(configs), paths, device, progress, log)


def _train_group_locked(
    configs: list[RunConfig],
    outs: list[Path],
    device: torch.device,
    progress: bool,
    log: Callable[[str], None] | None,
) -> list[TrainResult]:
    results: list[TrainResult | None] = [None] * len(configs)
    manifests: dict[int, dict | None] = {}
    for i, (config, out) in enumerate(zip(configs, outs, strict=True)):
        manifest = trainer._prepare_run_dir(out, config, "auto", log)
        if manifest is not None and manifest.get("status") == "complete":
            results[i] = trainer.complete_result(out)
        else:
            manifests[i] = manifest
            check_resources(config, out, device)
    if len(manifests) > 1:  # the stack's activations: about those of one run with S times the batch
        first = configs[next(iter(manifests))]
        tc = first.train
        try:
            stack = replace(first, train=replace(tc, batch_size=tc.batch_size * len(manifests)))
            check_resources(stack, None, device)
        except ConfigError as err:
            raise ConfigError(
                err.field, f"{err.message} (a stack of {len(manifests)} runs; --stack off trains them apart)"
            ) from None
    threads = torch.get_num_threads()
    wheres = {
        i: trainer._Where(last_step=(m or {}).get("last_step"), started=m is not None)
        for i, m in manifests.items()
    }
    try:
        if configs[0].train.threads:
            torch.set_num_threads(configs[0].train.threads)
        sessions: dict[int, trainer._Session] = {}
        for i, manifest in manifests.items():
            named = (lambda line, name=outs[i].name: log(f"{name}: {line}")) if log is not None else None
            sessions[i] = trainer._Session(configs[i], outs[i], manifest, named, wheres[i])
        diverged: list[trainer.Diverged] = []
        for start in sorted({s.start_step for s in sessions.values()}):
            part = [i for i, s in sessions.items() if s.start_step == start]
            done, failed = _train_stack([sessions[i] for i in part], progress)
            diverged += failed
            for i, result in zip(part, done, strict=True):
                results[i] = result
        if diverged:  # the other runs are complete (on disk); the first divergence is the error
            raise diverged[0]
    except KeyboardInterrupt as err:
        if isinstance(err, Interrupted):
            raise
        raise Interrupted(
            f"stopped a stack of {len(configs)} runs; {_kept(outs, wheres)}; rerun to resume"
        ) from None
    except OSError as err:
        if not is_write_error(err):
            raise
        raise WriteFailed(
            f"{describe_write_error(err)}; {_kept(outs, wheres)} (each file whole: writes are atomic); "
            f"{write_remedy(err)}, then rerun to resume"
        ) from None
    finally:
        torch.set_num_threads(threads)
    return [r for r in results if r is not None]


def _kept(outs: list[Path], wheres: dict[int, Any]) -> str:
    """What a stopped stack kept, in a few words."""
    steps = [w.last_step for w in wheres.values() if w.last_step is not None]
    if not steps:
        return f"no checkpoint was written yet to its {len(wheres)} unfinished runs"
    return f"checkpoints up to step {min(steps)} or later kept in {outs[0].parent}"


def _train_stack(
    sessions: list[trainer._Session], progress: bool
) -> tuple[list[TrainResult | None], list[trainer.Diverged]]:
    """The training loop of :func:`~mmicl_interp.train.trainer.train` over several runs that
    start from the same step: each boundary (eval, checkpoint) per run, one stacked update.

    A run that diverges (its manifest then says so) leaves the stack and the others train on;
    its result is None and its :class:`~mmicl_interp.train.trainer.Diverged` is returned."""
    tc = sessions[0].config.train
    for run in sessions:
        run.begin(stacked=len(sessions))
    start = sessions[0].start_step
    label = f"{len(sessions)} stacked" if len(sessions) > 1 else sessions[0].config.name
    bar = progress_bar(tc.steps, label, progress, initial=start, unit="step")
    for run in sessions:
        run.bar = bar
    active = list(sessions)
    diverged: list[trainer.Diverged] = []

    def stacked_update(runs: list[trainer._Session]) -> Callable:
        return make_stacked_update(
            [run.model for run in runs],
            [run.optimizer for run in runs],
            [run.task for run in runs],
            [run.generator for run in runs],
            tc,
            runs[0].device,
            runs[0].max_shift,
        )

    update = stacked_update(active)
    hooks = trainer.crash_hooks()
    step = start
    try:
        while True:
            stops = []
            for run in list(active):
                try:
                    stops.append(run.boundary(step))
                except trainer.Diverged as err:  # its nan never reaches the others: own weights, own loss
                    diverged.append(err)
                    active.remove(run)
                    update = stacked_update(active) if active else update
            if not active or any(stops):  # the runs share their schedule (no plateau stops: stack_key)
                break
            losses, correct = update()
            for k, run in enumerate(active):
                run.record(losses[k], correct[k])
            step += 1
            for run in active:
                run.where.step = step
            bar.update(1)
            trainer.fire_test_hooks(step, hooks)
    finally:
        bar.close()
    return [run.finish(step) if run in active else None for run in sessions], diverged


def train_seeds(
    config: RunConfig, seeds: list[int], task: Task | None = None, device: str | None = None
) -> list[dict[str, torch.Tensor]]:
    """Train ``config`` for every seed in ``seeds`` at once; return each seed's final state dict
    (on the CPU). Seed s uses ``model.seed = s`` and ``train.seed = s`` (its own init and data
    stream, the same task); no run folder, eval or checkpoint (:func:`train_group` writes runs).

    ``device`` (default: ``train.device``) is where the stack trains; the data is sampled on the
    CPU and copied there, as in :func:`~mmicl_interp.train.trainer.train`.
    """
    where = resolve_device(config.train.device if device is None else device, "device")
    if config.kind != "unimodal":
        raise ValueError(f"kind: stacked training supports unimodal runs, got {config.kind!r}")
    if config.train.clamp_pattern != "none":
        raise ValueError("train.clamp_pattern: stacked training does not clamp heads; use train() per seed")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: must be distinct integers, got {seeds!r}")
    tc = config.train
    task = task or Task.create(config.task)
    models = [ICLTransformer.from_task(replace(config.model, seed=s), config.task) for s in seeds]
    template = models[0]
    template.check_inputs = False  # no data-dependent checks under vmap
    template.readout_only = True  # as in train(): the last block at the query position only
    for model in models:
        model.to(where)
    params, buffers = stack_module_state(models)
    buffers = {k: v[0] for k, v in buffers.items()}  # identical across seeds (masks, rope tables)
    opt_params = list(params.values())
    if tc.optimizer == "sgd":
        optimizer = torch.optim.SGD(opt_params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    elif tc.optimizer == "adam":
        optimizer = torch.optim.Adam(opt_params, lr=tc.lr, weight_decay=tc.weight_decay)
    else:
        optimizer = torch.optim.AdamW(opt_params, lr=tc.lr, weight_decay=tc.weight_decay)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    max_shift = template.max_shift_for(task.layout.n_ctx)

    def forward(p, x, shift):
        return functional_call(template, (p, buffers), (x, shift))

    batched = vmap(forward)
    for _ in range(tc.steps):
        batches = [task.sample(tc.batch_size, g, max_shift=max_shift) for g in generators]
        inputs = torch.stack([b.inputs for b in batches]).to(where, non_blocking=True)
        shifts = torch.stack([b.pos_shift for b in batches]).to(where, non_blocking=True)
        targets = torch.stack([b.targets for b in batches]).to(where, non_blocking=True)
        logits = batched(params, inputs, shifts)  # [seeds, batch, L]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        loss = loss.view(len(seeds), -1).mean(1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return [{k: v[i].detach().cpu().clone() for k, v in params.items()} for i in range(len(seeds))]


__all__ = ["make_stacked_update", "stack_key", "train_group", "train_seeds"]
