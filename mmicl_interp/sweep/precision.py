"""Which training precision a sweep uses when its grid leaves ``train.precision`` open.

``train.precision = "bf16"`` (autocast) learns the default task as fast as fp32 per step
(``tests/train/test_precision.py``: icl >= 0.9 first reached within 25% of fp32's step), but
whether it is *faster* depends on the model's size and the machine: at the paper's point on
a 2-core CPU it takes 0.34x the published step against fp32's 0.53x (``make bench``), while
the default model is overhead-bound and gains little. So a sweep measures instead of
guessing: it times ``steps`` updates of the first point's config in each precision, on the
device the sweep trains on, interleaved over ``rounds`` (the median per step), and takes bf16
only when it is at least ``1 - margin`` faster.

Precision is part of a run's identity (a bf16 run is another run than its fp32 twin), so the
choice is made once per sweep, printed, and written into every point's config. A sweep whose
output folder already holds runs keeps the precision they were trained in, so a rerun resumes
them instead of refusing them as different runs; a grid that sets ``train.precision`` (every
claim grid pins fp32, so committed results stay comparable) is never overridden.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.device import resolve_device

PrecisionOption = Literal["auto", "fp32", "bf16"]
PRECISION_OPTIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a sweep trains in and why (``ms`` holds the measured ms per step)."""

    precision: str
    reason: str
    ms: dict[str, float]

    def line(self) -> str:
        """One line for the terminal."""
        return f"precision: {self.precision} ({self.reason})"


def time_updates(
    config: RunConfig,
    precisions: tuple[str, ...],
    steps: int = 20,
    rounds: int = 3,
    threads: int | None = None,
) -> dict[str, float]:
    """Median ms per training update of ``config`` in each precision (eager), interleaved.

    Each precision gets its own model and optimiser, built as :func:`~mmicl_interp.train.trainer.train`
    builds them; two warm-up updates each are not timed. ``threads``: torch threads while timing
    (a sweep's worker gets ``cores // workers``); default: as set."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _time_updates(config, precisions, steps, rounds)
    finally:
        torch.set_num_threads(before)


def _time_updates(
    config: RunConfig, precisions: tuple[str, ...], steps: int, rounds: int
) -> dict[str, float]:
    from mmicl_interp.train.pipeline import build_task_and_model
    from mmicl_interp.train.trainer import make_optimizer, make_update

    device = resolve_device(config.train.device, "train.device")
    updates = {}
    for precision in precisions:
        task, model, _ = build_task_and_model(config)
        model.readout_only, model.check_inputs = True, False  # as train() runs it
        model.to(device)
        tc = replace(config.train, precision=precision, compile=False)
        gen = torch.Generator().manual_seed(config.train.seed)
        updates[precision] = make_update(
            model,
            make_optimizer(model, config),
            task,
            tc,
            device,
            gen,
            model.max_shift_for(task.layout.n_ctx),
        )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for round_ in range(rounds + 1):
        for precision, update in updates.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps if round_ else 2):
                update()
            sync()
            if round_:  # round 0 is the warm-up
                times[precision].append((time.perf_counter() - t0) * 1000 / steps)
    return {p: statistics.median(v) for p, v in times.items()}


def check_precision_option(option: str) -> None:
    """ConfigError naming ``--precision`` unless ``option`` is one of auto, fp32, bf16."""
    if option not in PRECISION_OPTIONS:
        raise ConfigError("--precision", f"must be one of {', '.join(PRECISION_OPTIONS)}, got {option!r}")


def recorded_precision(out: Path) -> str | None:
    """The precision the runs already in a sweep folder were trained in (None: no runs yet)."""
    found = set()
    for manifest in sorted(Path(out).glob("*/manifest.json")):
        try:
            found.add(json.loads(manifest.read_text())["config"]["train"]["precision"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if len(found) > 1:
        raise ConfigError("--precision", f"{out} holds runs in {sorted(found)}; pass --precision to choose")
    return found.pop() if found else None


def choose_precision(
    option: str,
    config: RunConfig,
    out: Path | None = None,
    grid_sets_it: bool = False,
    margin: float = 0.9,
    steps: int = 20,
    threads: int | None = None,
) -> PrecisionChoice:
    """The precision a sweep of points like ``config`` trains in (see the module docstring).

    ``option`` is ``--precision``: ``fp32`` / ``bf16`` force it, ``auto`` measures unless the
    grid sets ``train.precision`` (``grid_sets_it``) or ``out`` already holds runs."""
    check_precision_option(option)
    if option != "auto":
        return PrecisionChoice(option, "--precision", {})
    if grid_sets_it:
        return PrecisionChoice(config.train.precision, "the grid sets train.precision", {})
    if out is not None and (kept := recorded_precision(out)) is not None:
        return PrecisionChoice(kept, f"the runs already in {out} were trained in it", {})
    if config.kind != "unimodal" or config.train.clamp_pattern != "none":
        return PrecisionChoice("fp32", "bf16 is only measured for unclamped unimodal runs", {})
    ms = time_updates(config, ("fp32", "bf16"), steps=steps, threads=threads)
    faster = ms["bf16"] <= margin * ms["fp32"]
    verdict = "faster" if faster else "not faster"
    reason = (
        f"bf16 {ms['bf16']:.1f} ms/step against fp32 {ms['fp32']:.1f} ms at the first point: {verdict}; "
        f"it is taken when <= {margin:g}x"
    )
    return PrecisionChoice("bf16" if faster else "fp32", reason, ms)


__all__ = [
    "PRECISION_OPTIONS",
    "PrecisionChoice",
    "PrecisionOption",
    "check_precision_option",
    "choose_precision",
    "recorded_precision",
    "time_updates",
]
