"""`make bench`: speed of training and analysis, every figure a ratio measured in this one run.

Prints, and writes to ``benchmarks/results.json`` (atomically; ``null`` where a part could not
run, with the reason printed):

- ``ours_vs_plain``: our hooked model's full-forward training step over a plain-PyTorch model
  of the same math (``reference.PlainICLModel``, no hooks), timed interleaved on one batch, at
  the default config and at the paper's point; the worse of the two (target <= 1.15). Also the
  ``readout_only`` step over the full one and the data-generation share of a step (< 10%).
- ``paper_point_fastest_vs_reference`` / ``paper_point_fp32_vs_reference``: at the paper's point
  (the ``published`` config: K 8192, D 64, N 8, B 2, one-hot APE of width 65, 2 layers, 1 head
  without W_O, the gated MLP, batch 128) the whole training step as ``train()`` runs it
  (``trainer.make_update``: sampling, forward, backward, Adam) for fp32 / bf16 autocast x eager /
  ``torch.compile``, over the published code's stage-1 step rebuilt from the spec
  (``reference.make_reference_step``: its model, its data in one DataLoader worker, Adam),
  timed side by side in interleaved rounds, medians. Targets: fastest <= 0.35x, fp32 <= 0.6x.
- ``analysis_100x1000_s``: all attention measures of every head for 100 checkpoints x 1000 icl
  sequences of the default model (target <= 2 s).
- ``stacked_8_ratio``: 8 seeds trained stacked in one process (``train/stacked.py``) over one
  seed the same way, time per step (target <= 3x); ``sweep_runs_per_hour_stacked`` /
  ``_single``: runs per hour of a claim-1-K-like run (the default config at K 256, the claim's
  1000-step budget, training steps only) trained 8 stacked as ``mmicl sweep`` stacks seed points
  (``train/stacked.py: make_stacked_update``) vs one at a time as ``train()`` steps.
- ``real_scoring_vs_forward``: from ``benchmarks/bench_real.py`` when it exists.

Every timing is a median over interleaved rounds, so machine noise hits all sides alike; run it
on a quiet machine (``flock /tmp/mmicl-heavy.lock make bench`` where others share it).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reference import PaperPoint, PlainICLModel, make_reference_step  # noqa: E402

from mmicl_interp.config import load_config  # noqa: E402
from mmicl_interp.data.task import Task  # noqa: E402
from mmicl_interp.device import resolve_device, synchronize  # noqa: E402
from mmicl_interp.io import write_json  # noqa: E402
from mmicl_interp.model.transformer import ICLTransformer  # noqa: E402

RESULTS = HERE / "results.json"
RESULT_KEYS = (
    "stacked_8_ratio",
    "sweep_runs_per_hour_stacked",
    "sweep_runs_per_hour_single",
    "analysis_100x1000_s",
    "paper_point_fastest_vs_reference",
    "paper_point_fp32_vs_reference",
    "real_scoring_vs_forward",
    "ours_vs_plain",
)
OURS_VS_PLAIN_TARGET, DATA_SHARE_TARGET = 1.15, 0.10
ANALYSIS_TARGET_S = 2.0
STACKED_TARGET = 3.0
FASTEST_TARGET, FP32_TARGET = 0.35, 0.6
OPTIONS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
PAPER_POINT = ["task.D=64", "model.n_max=32", "model.mlp=paper_gated", "train.batch_size=128"]
"""The paper's point on top of the default config, for the ours-vs-plain comparison."""
SPEC_REFERENCE_MS = 41.0
"""The published code's step at the paper's point on this CPU, as PUBLISHED.md measured it
(quiet machine): a check that the rebuilt reference is faithful, never a denominator."""


@dataclass(frozen=True)
class Sizes:
    """How much each part runs; :data:`QUICK` is for tests (no timing meaning)."""

    repeats: int = 9
    inner: int = 10
    analysis_checkpoints: int = 100
    analysis_seqs: int = 1000
    stacked_seeds: int = 8
    stacked_steps: int = 40
    stacked_repeats: int = 3
    sweep_budget: int = 1000
    options: tuple[tuple[str, bool], ...] = OPTIONS
    reference_workers: int = 1
    real: bool = True
    cuda: bool = True


QUICK = Sizes(
    repeats=1,
    inner=1,
    analysis_checkpoints=2,
    analysis_seqs=8,
    stacked_seeds=2,
    stacked_steps=1,
    stacked_repeats=1,
    options=(("fp32", False), ("bf16", False)),
    reference_workers=0,
    real=False,
    cuda=False,
)


def _interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, inner: int, sync: Callable = lambda: None
) -> dict[str, float]:
    """Median ms per call of each function, timed in ``repeats`` interleaved rounds of ``inner`` calls."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            times[key].append((time.perf_counter() - t0) / inner * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _train_step_fn(model, batch):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(model(batch.inputs, batch.pos_shift), batch.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_point(label: str, overrides: list[str], mlp: str, sizes: Sizes = Sizes()) -> dict[str, float]:
    """Our full-forward step vs the plain model of the same math, the readout-only step, and the
    data share, on one fixed batch, interleaved."""
    config = load_config("default", overrides)
    task = Task.create(config.task)
    ours = ICLTransformer.from_task(config.model, config.task)
    plain = PlainICLModel(
        config.task.D, config.task.L, config.model.n_layers, config.model.n_heads, ours.pos_width, mlp
    )
    g = torch.Generator().manual_seed(0)
    shift = ours.max_shift_for(task.layout.n_ctx)
    batch = task.sample(config.train.batch_size, g, max_shift=shift)
    fast = ICLTransformer.from_task(config.model, config.task)
    fast.load_state_dict(ours.state_dict())
    fast.readout_only = True  # what train() runs: the last block at the query position only
    fns = {
        "ours": _train_step_fn(ours, batch),
        "plain": _train_step_fn(plain, batch),
        "fast": _train_step_fn(fast, batch),
        "data": lambda: task.sample(config.train.batch_size, g, max_shift=shift),
    }
    _interleaved(fns, 1, 5)  # warm-up
    ms = _interleaved(fns, sizes.repeats, sizes.inner)
    step_ms = ms["fast"] + ms["data"]
    return {
        "label": label,
        "d_model": ours.cfg.d_model,
        "step_ms": step_ms,
        "steps_per_s": 1000 / step_ms,
        "model_ms": ms["ours"],
        "plain_ms": ms["plain"],
        "ratio": ms["ours"] / ms["plain"],
        "train_ms": ms["fast"],
        "readout_ratio": ms["fast"] / ms["ours"],
        "data_ms": ms["data"],
        "data_share": ms["data"] / step_ms,
    }


def print_points(points: list[dict]) -> None:
    print(
        f"{'point':<16}{'d_model':>8}{'steps/s':>9}{'step ms':>9}{'ours ms':>9}{'plain ms':>9}"
        f"{'ours/plain':>11}{'train ms':>9}{'train/ours':>11}{'data ms':>9}{'data share':>11}"
    )
    for p in points:
        print(
            f"{p['label']:<16}{p['d_model']:>8}{p['steps_per_s']:>9.1f}{p['step_ms']:>9.2f}"
            f"{p['model_ms']:>9.2f}{p['plain_ms']:>9.2f}{p['ratio']:>11.3f}{p['train_ms']:>9.2f}"
            f"{p['readout_ratio']:>11.3f}{p['data_ms']:>9.2f}{p['data_share']:>10.1%}"
        )


def bench_paper_point(device: str = "cpu", sizes: Sizes = Sizes(), reference: bool = True) -> dict:
    """Our whole training step at the paper's point for each option, with the published step
    rebuilt from the spec timed in the same interleaved rounds (on the CPU: ``reference``)."""
    from mmicl_interp.train.trainer import make_optimizer, make_update

    where = resolve_device(device)
    config = load_config("published")
    task = Task.create(config.task)
    fns: dict[str, Callable[[], object]] = {}
    first_s: dict[str, float] = {}
    for precision, compiled in sizes.options:
        name = f"{precision} {'compile' if compiled else 'eager'}"
        tc = replace(config.train, precision=precision, compile=compiled)
        model = ICLTransformer.from_task(config.model, config.task)
        model.readout_only, model.check_inputs = True, False  # as train() runs it
        model.to(where)
        g = torch.Generator().manual_seed(0)
        update = make_update(
            model, make_optimizer(model, config), task, tc, where, g, model.max_shift_for(task.layout.n_ctx)
        )
        t0 = time.perf_counter()
        update()  # compiles, when compiled
        synchronize(where)
        first_s[name] = time.perf_counter() - t0
        fns[name] = update
    close = None
    if reference:
        step, close = make_reference_step(PaperPoint(), seed=0, num_workers=sizes.reference_workers)
        fns["reference"] = step
    try:
        _interleaved(fns, 1, 5, lambda: synchronize(where))  # warm-up (and the worker's first batches)
        ms = _interleaved(fns, sizes.repeats, sizes.inner, lambda: synchronize(where))
    finally:
        if close is not None:
            close()
    rows = [{"option": k, "step_ms": v, "first_s": first_s[k]} for k, v in ms.items() if k != "reference"]
    out: dict = {"device": str(where), "rows": rows, "reference_ms": ms.get("reference")}
    if reference:
        for row in rows:
            row["vs_reference"] = row["step_ms"] / ms["reference"]
        out["fastest"] = min(rows, key=lambda r: r["step_ms"])
        fp32 = [r for r in rows if r["option"].startswith("fp32")]
        out["fp32"] = min(fp32, key=lambda r: r["step_ms"]) if fp32 else None
    return out


def print_paper_point(result: dict, reference_ms: float | None = None) -> None:
    ref = result["reference_ms"] or reference_ms
    where = result["device"]
    if result["reference_ms"] is not None:
        print(
            f"paper point, whole training step with data, on {where}; the published step rebuilt from "
            f"the spec, measured alongside: {ref:.2f} ms (PUBLISHED.md measured the published code "
            f"at {SPEC_REFERENCE_MS:.0f} ms on a quiet 2-core CPU):"
        )
    else:
        print(f"paper point on {where} (ratios over the CPU reference measured above):")
    print(f"{'option':<16}{'step ms':>9}{'x reference':>13}{'first call s':>14}")
    for r in result["rows"]:
        ratio = f"{r['step_ms'] / ref:>13.2f}" if ref else f"{'-':>13}"
        print(f"{r['option']:<16}{r['step_ms']:>9.2f}{ratio}{r['first_s']:>14.1f}")
    if result["reference_ms"] is None:
        return
    for label, row, target in (
        ("fastest", result["fastest"], FASTEST_TARGET),
        ("best fp32", result["fp32"], FP32_TARGET),
    ):
        if row is None:
            continue
        ratio = row["vs_reference"]
        verdict = (
            "met" if ratio <= target else f"MISSED by {ratio - target:.2f}x ({ratio / target - 1:.0%} over)"
        )
        print(f"target {label} ({row['option']}) <= {target}x: {ratio:.2f}x, {verdict}")


def bench_analysis(n_checkpoints: int = 100, n_seqs: int = 1000) -> dict[str, float]:
    """Time all attention measures of every head over ``n_checkpoints`` default-model checkpoints."""
    from mmicl_interp.analyses.attention import attention_measures

    config = load_config("default")
    task = Task.create(config.task)
    models = []
    for seed in range(n_checkpoints):  # distinct weights, as a checkpoint sequence has
        config.model.seed = seed
        models.append(ICLTransformer.from_task(config.model, config.task).eval())
    shift = models[0].max_shift_for(task.layout.n_ctx)
    icl = task.suites(config.task.eval_seed, n_seqs, max_shift=shift)["icl"]
    attention_measures(models[0], icl, task.layout)  # warm-up
    t0 = time.perf_counter()
    for model in models:
        attention_measures(model, icl, task.layout)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "per_ckpt_ms": seconds / n_checkpoints * 1000}


SWEEP_BASE = ["task.K=256"]
"""A claim-1-K-like run: the default config at a K of the claim-1 grid (``grids/claim1_K.toml``)."""


def bench_stacked(sizes: Sizes = Sizes()) -> dict[str, float]:
    """Time per step of ``stacked_seeds`` seeds trained stacked (``train_seeds``) vs one seed the
    same way vs one run's step as ``train()`` runs it (``make_update``), interleaved; and the runs
    per hour of a ``sweep_budget``-step claim-1-K-like run, as ``mmicl sweep`` trains a stack of
    ``stacked_seeds`` seed points (``make_stacked_update``: each point its own task, data,
    model and optimiser) vs one at a time."""
    from mmicl_interp.model.factory import build_model
    from mmicl_interp.train.stacked import make_stacked_update, train_seeds
    from mmicl_interp.train.trainer import make_optimizer, make_update

    steps = sizes.stacked_steps
    config = load_config("default", [*SWEEP_BASE, f"train.steps={steps}"])
    task = Task.create(config.task)
    seeds = list(range(sizes.stacked_seeds))
    model = ICLTransformer.from_task(config.model, config.task)
    model.readout_only = True
    update = make_update(
        model, make_optimizer(model, config), task, config.train, torch.device("cpu"),
        torch.Generator().manual_seed(0), model.max_shift_for(task.layout.n_ctx),
    )  # fmt: skip
    # the sweep's stack: one point per seed (the grid's ``seed`` key: task, model and data seeds)
    seed_sets = [[f"{section}.seed={s}" for section in ("task", "model", "train")] for s in seeds]
    points = [load_config("default", [*SWEEP_BASE, f"train.steps={steps}", *sets]) for sets in seed_sets]
    models = [build_model(c) for c in points]
    for m in models:
        m.readout_only, m.check_inputs = True, False  # as the trainer sets them
    group_update = make_stacked_update(
        models, [make_optimizer(m, c) for m, c in zip(models, points, strict=True)],
        [Task.create(c.task) for c in points], [torch.Generator().manual_seed(s) for s in seeds],
        config.train, torch.device("cpu"), models[0].max_shift_for(task.layout.n_ctx),
    )  # fmt: skip
    train_seeds(replace(config, train=replace(config.train, steps=2)), seeds[:2], task)  # warm-up
    fns = {
        "one": lambda: train_seeds(config, [0], task),
        "stacked": lambda: train_seeds(config, seeds, task),
        "single": lambda: [update() for _ in range(steps)],
        "sweep": lambda: [group_update() for _ in range(steps)],
    }
    _interleaved({"single": fns["single"], "sweep": fns["sweep"]}, 1, 1)  # warm-up
    ms = {k: v / steps for k, v in _interleaved(fns, sizes.stacked_repeats, 1).items()}
    per_hour = 3600 * 1000 / sizes.sweep_budget
    return {
        "one_ms": ms["one"],
        "stacked_ms": ms["stacked"],
        "single_ms": ms["single"],
        "sweep_ms": ms["sweep"],
        "ratio": ms["stacked"] / ms["one"],
        "runs_per_hour_stacked": per_hour * len(seeds) / ms["sweep"],
        "runs_per_hour_single": per_hour / ms["single"],
    }


def bench_real() -> dict | None:
    """``benchmarks/bench_real.py: bench_real_scoring()``, or None (printed) when it is missing."""
    if not (HERE / "bench_real.py").exists():
        print("real_scoring_vs_forward: benchmarks/bench_real.py is missing: null")
        return None
    import importlib

    module = importlib.import_module("bench_real")
    fn = getattr(module, "bench_real_scoring", None)
    if fn is None:
        print("real_scoring_vs_forward: bench_real.bench_real_scoring is missing: null")
        return None
    return fn()


def _number(value: object) -> float | None:
    """A finite float, or None."""
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def run(sizes: Sizes = Sizes(), results_path: Path | None = RESULTS) -> dict[str, float | None]:
    """Run every part, print it, and write the results (``results_path``; None: do not write)."""
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}"
    )
    points = [
        bench_point("default config", [], "none", sizes),
        bench_point("paper point", PAPER_POINT, "paper_gated", sizes),
    ]
    print_points(points)
    paper = bench_paper_point("cpu", sizes)
    print_paper_point(paper)
    if sizes.cuda and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        print_paper_point(bench_paper_point("cuda", sizes, reference=False), paper["reference_ms"])
    elif sizes.cuda:
        print("GPU: none found (CUDA figures are printed when torch sees a GPU)")
    analysis = bench_analysis(sizes.analysis_checkpoints, sizes.analysis_seqs)
    print(
        f"attention measures, {sizes.analysis_checkpoints} checkpoints x {sizes.analysis_seqs} icl "
        f"sequences: {analysis['seconds']:.2f} s ({analysis['per_ckpt_ms']:.1f} ms per checkpoint; "
        f"target <= {ANALYSIS_TARGET_S:.0f} s for 100 x 1000)"
    )
    stacked = bench_stacked(sizes)
    print(
        f"{sizes.stacked_seeds} seeds stacked: {stacked['stacked_ms']:.1f} ms/step vs one seed stacked "
        f"{stacked['one_ms']:.1f} ms/step: {stacked['ratio']:.2f}x (target <= {STACKED_TARGET:.0f}x); "
        f"one run as train() steps it: {stacked['single_ms']:.1f} ms/step"
    )
    print(
        f"claim-1-K-like sweep (default config, K 256, {sizes.sweep_budget} steps, training only): "
        f"{stacked['runs_per_hour_stacked']:.0f} runs/hour stacked by {sizes.stacked_seeds} "
        f"({stacked['sweep_ms']:.1f} ms/step, as `mmicl sweep` stacks points) vs "
        f"{stacked['runs_per_hour_single']:.0f} one at a time"
    )
    real = bench_real() if sizes.real else None
    if real is not None:
        print(f"real-model scoring vs a plain forward: {real.get('real_scoring_vs_forward')}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")

    ours_vs_plain = max(p["ratio"] for p in points)
    ok = ours_vs_plain <= OURS_VS_PLAIN_TARGET and all(p["data_share"] < DATA_SHARE_TARGET for p in points)
    print(
        f"targets ours/plain <= {OURS_VS_PLAIN_TARGET}, data share < {DATA_SHARE_TARGET:.0%}:",
        "met" if ok else "NOT met",
    )
    for label, value, target in (
        ("analysis 100 x 1000 (s)", analysis["seconds"], ANALYSIS_TARGET_S),
        ("8 stacked / one", stacked["ratio"], STACKED_TARGET),
    ):
        verdict = (
            "met" if value <= target else f"MISSED by {value - target:.2f} ({value / target - 1:.0%} over)"
        )
        print(f"target {label} <= {target}: {value:.2f}, {verdict}")

    results = {
        "stacked_8_ratio": stacked["ratio"],
        "sweep_runs_per_hour_stacked": stacked["runs_per_hour_stacked"],
        "sweep_runs_per_hour_single": stacked["runs_per_hour_single"],
        "analysis_100x1000_s": analysis["seconds"],
        "paper_point_fastest_vs_reference": paper["fastest"]["vs_reference"],
        "paper_point_fp32_vs_reference": paper["fp32"]["vs_reference"] if paper["fp32"] else None,
        "real_scoring_vs_forward": (real or {}).get("real_scoring_vs_forward"),
        "ours_vs_plain": ours_vs_plain,
    }
    results = {k: _number(results[k]) for k in RESULT_KEYS}
    if results_path is not None:
        write_json(results_path, results)
        print(f"wrote {results_path}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    run(Sizes(), args.out)


if __name__ == "__main__":
    main()
