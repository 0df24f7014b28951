"""The checks that depend on the machine: memory, disk and CPU count, with the estimates.

``train()`` calls :func:`check_resources` before any work, so a config too big for this
machine is refused with the estimate and the field that sizes it instead of crashing minutes
later.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mmicl_interp.config.errors import ConfigError
from mmicl_interp.config.multimodal import MultimodalTaskConfig
from mmicl_interp.config.run import RunConfig, decoder_dims
from mmicl_interp.config.task import TaskConfig
from mmicl_interp.config.train import n_checkpoints, n_dense_checkpoints

_F32 = 4
_N_SUITES = {"unimodal": 4, "multimodal": 6, "encoder": 1}


def parameter_estimate(config: RunConfig) -> dict[str, int]:
    """Trainable parameters by the field that sizes them (sums to the model's parameter count)."""
    mc, tc = config.model, config.task
    if config.kind == "encoder":
        d_out = mc.d_encoder or tc.D2
        h = mc.encoder_hidden
        return {"model.encoder_hidden": tc.D2 * h + h + h * d_out + d_out, "task.K2": d_out * tc.K2 + tc.K2}
    dims = decoder_dims(config)
    d, dh, H, n_labels = dims["d_model"], dims["d_head"], mc.n_heads, tc.L
    attn = (4 if mc.has_w_o() else 3) * H * d * dh + (3 * H * dh + d if mc.attn_bias else 0)
    mlp = 0
    if mc.mlp != "none":
        gated = mc.mlp in ("swiglu", "paper_gated")
        mlp = (3 if gated else 2) * d * dims["d_mlp"] + (2 if gated else 1) * dims["d_mlp"] + d
    norms = {"rms": 1, "ln": 2, "none": 0}[mc.norm] * d * (2 if mc.mlp != "none" else 1)
    out = {"model.n_layers": mc.n_layers * (attn + mlp + norms)}
    out["model.n_max"] = dims["n_ctx_max"] * d if mc.positions == "learned" else 0
    out["model.d_embed"] = dims["d_input"] * (mc.d_embed or 0)
    readout_bias = n_labels if mc.readout_bias else 0
    out["task.L"] = d * n_labels + readout_bias + {"rms": 1, "ln": 2, "none": 0}[mc.norm] * d
    if isinstance(tc, MultimodalTaskConfig):
        d2 = tc.D2
        if mc.encoder == "mlp":
            d_enc, h = mc.d_encoder or tc.D2, mc.encoder_hidden
            out["model.encoder_hidden"] = tc.D2 * h + h + h * d_enc + d_enc
            d2 = d_enc
        hp = mc.d_proj or tc.D1
        out["model.d_proj"] = d2 * hp + hp + hp * tc.D1 + tc.D1
    return out


def memory_estimate(config: RunConfig) -> list[tuple[str, float, str]]:
    """Rough bytes of the big allocations of training ``config``, as (field, bytes, what).

    Task tensors, parameters with gradients, Adam moments and a checkpoint copy, the fixed eval
    suites, one training step's activations (kept for backward), buffers (causal masks) and
    the schedule lists. Generous by design: it only has to tell a run that cannot fit.
    """
    tc, mc, tr = config.task, config.model, config.train
    F = _F32
    parts: list[tuple[str, float, str]] = []
    # class means (float32) and the Zipf law (float64 ranks and weights, float32 probabilities)
    if isinstance(tc, TaskConfig):
        parts.append(("task.K", tc.K * (tc.D * F + 20.0), f"class means, K={tc.K} x D={tc.D}"))
    else:
        parts.append(("task.K1", tc.K1 * (tc.D1 * F + 20.0), f"M1 class means, K1={tc.K1} x D1={tc.D1}"))
        parts.append(("task.K2", tc.K2 * (tc.D2 * F + 28.0), f"M2 class means, K2={tc.K2} x D2={tc.D2}"))
    for name, count in parameter_estimate(config).items():
        # weights, gradients, two Adam moments, one copy while a checkpoint is written
        parts.append((name, 5.0 * F * count, f"{count} parameters with gradients and optimiser state"))
    n_suites = _N_SUITES[config.kind]
    if config.kind == "encoder":
        d_out, h = mc.d_encoder or tc.D2, mc.encoder_hidden
        per_item = 3.0 * F * (tc.D2 + h + d_out + tc.K2) + 32
        parts.append(("train.batch_size", tr.batch_size * per_item, f"a batch of {tr.batch_size} items"))
        parts.append(("task.eval_size", tc.eval_size * per_item, f"the eval suite of {tc.eval_size} items"))
    else:
        dims = decoder_dims(config)
        T, d, H, dh = dims["n_ctx"], dims["d_model"], mc.n_heads, dims["d_head"]
        d_in = tc.D if isinstance(tc, TaskConfig) else tc.D1 + tc.D2
        d_mlp = 0 if mc.mlp == "none" else dims["d_mlp"] * (3 if mc.mlp in ("swiglu", "paper_gated") else 2)
        # per layer: residuals, norms, q/k/v (+ rotated), z, outputs, MLP; scores and pattern per head
        layer = T * (6.0 * d + 6.0 * H * dh + 1.5 * d_mlp) + 3.0 * H * T * T
        sample = 5.0 * T * d_in + 8.0 * tc.N * 2  # inputs with the sampler's temporaries; int labels
        if isinstance(tc, MultimodalTaskConfig):
            hp = mc.d_proj or tc.D1
            enc = mc.encoder_hidden if mc.encoder == "mlp" else 0
            sample += 3.0 * (tc.N + 1) * (hp + tc.D1 + tc.D2 + enc)  # projector (and encoder) activations
        per_seq = F * (1.2 * mc.n_layers * layer + 2.0 * T * d + sample)  # 1.2: gradient buffers
        parts.append(
            (
                "train.batch_size",
                tr.batch_size * per_seq,
                f"one step's activations, batch_size={tr.batch_size} x length {T} x d_model {d} "
                f"x {mc.n_layers} layers",
            )
        )
        chunk = min(tc.eval_size, 2048)  # evaluation runs without gradients, 2048 sequences at a time
        suites = F * tc.eval_size * (n_suites * (T * d_in + 4.0 * tc.N) + 4.0 * T * d_in)
        parts.append(
            (
                "task.eval_size",
                suites + chunk * F * (2.0 * layer + T * d),
                f"{n_suites} eval suites of eval_size={tc.eval_size} sequences",
            )
        )
        n_max = dims["n_ctx_max"]
        buffers = mc.n_layers * (
            n_max * n_max * (3.0 + (F * H if mc.positions == "alibi" else 0))
            + (2.0 * F * n_max * dh if mc.positions in ("rope", "rope_paper") else 0)
            + (F * d * d if not mc.has_w_o() else 0)
        )
        parts.append(("model.n_max", buffers, f"causal masks of 2*n_max+1={n_max} positions per layer"))
    n_evals = tr.steps // tr.eval_every + 1
    n_linear = tr.steps // tr.ckpt_every + 1 if tr.ckpt_schedule in ("linear", "union") else 0
    n_linear += n_dense_checkpoints(tr)
    parts.append(("train.steps", 150.0 * (n_evals + n_linear), f"the schedule's {n_evals} eval steps"))
    return parts


def available_memory() -> int | None:
    """Bytes this process can still allocate, or None when unknown.

    Linux ``MemAvailable`` (else ``os.sysconf``), capped by the cgroup (container) limit less
    its non-reclaimable usage. No psutil needed.
    """
    avail: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    cgroup = Path("/sys/fs/cgroup")
    for limit_file, usage_file, stat_file, stat_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),  # cgroup v2
        (
            "memory/memory.limit_in_bytes",
            "memory/memory.usage_in_bytes",
            "memory/memory.stat",
            "total_inactive_file",
        ),  # cgroup v1
    ):
        try:
            limit = int((cgroup / limit_file).read_text().split()[0])  # v2 "max" (no limit): ValueError
            usage = int((cgroup / usage_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:  # page cache the kernel can reclaim is not in use
            lines = (cgroup / stat_file).read_text().splitlines()
            stats = dict(line.split() for line in lines if line.count(" ") == 1)
            usage -= int(stats.get(stat_key, 0))
        except (OSError, ValueError):
            pass
        room = max(limit - usage, 0)
        avail = room if avail is None else min(avail, room)
        break
    return avail


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e9:.2f} GB"


def _device_memory(device: Any) -> tuple[int | None, str]:
    """Free bytes where a run trains (``device``: a ``torch.device`` or None for the host), and
    how to name that place."""
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"the GPU {device}"
    return available_memory(), "this machine"


def check_resources(config: RunConfig, out: str | Path | None = None, device: Any = None) -> None:
    """Refuse, before any work, a run this machine cannot do: more threads than CPUs, more
    memory than available (with the estimate and the field that sizes it; on a CUDA
    ``device``, the resolved ``torch.device`` the run trains on, the GPU's free memory,
    ``torch.cuda.mem_get_info``, else the host's), more checkpoint bytes than the disk under
    ``out`` holds. Raises :class:`ConfigError`."""
    cpus = usable_cpus()
    if config.train.threads > cpus:
        raise ConfigError(
            "train.threads",
            f"must be in [0, {cpus}] (0 = torch's default; this machine has {cpus} usable CPUs), "
            f"got {config.train.threads}",
        )
    parts = memory_estimate(config)
    need = sum(b for _, b, _ in parts)
    avail, where = _device_memory(device)
    if avail is not None and need > avail:
        field, part, what = max(parts, key=lambda p: p[1])
        raise ConfigError(
            field,
            f"too large for {where}: training needs about {_gb(need)}, {_gb(avail)} available "
            f"(largest part: {what}, about {_gb(part)}); lower {field}",
        )
    if out is None:
        return
    per_ckpt = _F32 * sum(parameter_estimate(config).values()) + 4096
    n_ckpts = n_checkpoints(config.train)
    disk = n_ckpts * per_ckpt + 3 * per_ckpt + parts[0][1]  # + train state (weights, 2 moments) + task
    folder = Path(out).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if disk > free:
        linear = config.train.ckpt_schedule in ("linear", "union")
        raise ConfigError(
            "train.ckpt_every" if linear else "train.ckpt_schedule",
            f"{n_ckpts} checkpoints of {_gb(per_ckpt)} need about {_gb(disk)} on disk, {_gb(free)} free "
            f"under {folder}; write fewer checkpoints",
        )
