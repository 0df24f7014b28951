"""Several seeds of one config trained at once, with stacked weights.

Small models leave much of a machine idle between small ops (a GPU most of all), so S
seeds of the same config train in one process by stacking their parameters (``torch.func.stack_module_state``)
and running the model over the stack with ``torch.func.vmap`` of ``functional_call``:
one batched matmul per layer instead of S small ones. The loss is the sum of the S
per-seed mean cross-entropies, so each seed's gradient is exactly its own; Adam, AdamW and
SGD act elementwise, so each seed's update is that of a separate run. Seed s uses
``model.seed = s`` and ``train.seed = s`` (its own init and data stream, the same task), so
its weights equal those of ``mmicl train --set model.seed=s --set train.seed=s`` up to
float rounding (checked by a test). Eval and checkpoints are left to separate runs: this
is for sweeps over seeds where only the final weights and a final eval are needed.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from mmicl_interp.config import RunConfig
from mmicl_interp.data.task import Task
from mmicl_interp.device import resolve_device
from mmicl_interp.model.transformer import ICLTransformer


def train_seeds(
    config: RunConfig, seeds: list[int], task: Task | None = None, device: str | None = None
) -> list[dict[str, torch.Tensor]]:
    """Train ``config`` for every seed in ``seeds`` at once; return each seed's final state dict
    (on the CPU).

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
