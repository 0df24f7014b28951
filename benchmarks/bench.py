"""`make bench`: speed and memory of training, as ratios measured in this one run.

Prints, for the default config and for the paper's point (K 8192, L 32, D 64, N 8, B 2,
one-hot APE of width 65, 2 layers, 1 head, the published gated MLP):

- training steps/s of our hooked model as ``train()`` runs it (one step = fresh batch +
  forward + backward + Adam, with ``readout_only``: the last block at the query only);
- the ratio of our model's full-forward step time to a plain-PyTorch model of the same math
  (``benchmarks/reference.py``, no hooks), timed interleaved on the same batch
  (target <= 1.15), and of the ``readout_only`` training step to the full one;
- the data-generation share of a step (target < 10%);
- all attention measures of every head for 100 checkpoints x 1000 icl sequences of the
  default model (target <= 10 s);
- 8 seeds of the default config trained stacked in one process (``train/stacked.py``)
  vs one seed, time per step (target <= 3x);
- the speed options at the paper's point without W_O (as published): the whole training
  step as ``train()`` runs it (``trainer.make_update``: CPU sampling, copy to the device,
  read-out forward, backward, Adam) for fp32 / bf16 autocast x eager / ``torch.compile``, as
  ratios to the published code's 41 ms (targets: fastest <= 0.5x, best fp32 <= 0.75x), on the
  CPU, and on CUDA when a GPU is present;
- peak resident memory of the process.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import PlainICLModel  # noqa: E402

from mmicl_interp.config import load_config  # noqa: E402
from mmicl_interp.data.task import Task  # noqa: E402
from mmicl_interp.device import resolve_device, synchronize  # noqa: E402
from mmicl_interp.model.transformer import ICLTransformer  # noqa: E402

PUBLISHED_MS_PER_STEP = 41.0  # published code at the paper's point on this machine (34 model + 7 data)


def _median_ms(fn, repeats: int, inner: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner * 1000)
    return statistics.median(times)


def _train_step_fn(model, batch):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(model(batch.inputs, batch.pos_shift), batch.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_point(label: str, overrides: list[str], mlp: str) -> dict[str, float]:
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
    step_ours, step_plain = _train_step_fn(ours, batch), _train_step_fn(plain, batch)
    step_fast = _train_step_fn(fast, batch)
    for fn in (step_ours, step_plain, step_fast):  # warm-up
        for _ in range(5):
            fn()

    def sample():
        task.sample(config.train.batch_size, g, max_shift=shift)

    ours_ms, plain_ms, fast_ms, data_times = [], [], [], []
    for _ in range(9):  # interleaved, so machine noise hits all four alike
        ours_ms.append(_median_ms(step_ours, 1, 10))
        plain_ms.append(_median_ms(step_plain, 1, 10))
        fast_ms.append(_median_ms(step_fast, 1, 10))
        data_times.append(_median_ms(sample, 1, 10))
    model_ms, ref_ms = statistics.median(ours_ms), statistics.median(plain_ms)
    train_ms = statistics.median(fast_ms)
    data_ms = statistics.median(data_times)
    step_ms = train_ms + data_ms
    return {
        "label": label,
        "d_model": ours.cfg.d_model,
        "step_ms": step_ms,
        "steps_per_s": 1000 / step_ms,
        "model_ms": model_ms,
        "plain_ms": ref_ms,
        "ratio": model_ms / ref_ms,
        "train_ms": train_ms,
        "readout_ratio": train_ms / model_ms,
        "data_ms": data_ms,
        "data_share": data_ms / step_ms,
    }


ANALYSIS_TARGET_S = 10.0  # all attention measures, 100 checkpoints x 1000 icl sequences


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


STACKED_TARGET = 3.0  # 8 seeds in one process vs one seed, time per step


def bench_stacked(n_seeds: int = 8, steps: int = 40) -> dict[str, float]:
    """Time per step of ``n_seeds`` default-config seeds trained stacked vs one seed alone."""
    from mmicl_interp.train.stacked import train_seeds

    config = load_config("default", [f"train.steps={steps}"])
    task = Task.create(config.task)
    train_seeds(load_config("default", ["train.steps=3"]), [0, 1], task)  # warm-up
    times = {}
    for seeds in ([0], list(range(n_seeds))):
        t0 = time.perf_counter()
        train_seeds(config, seeds, task)
        times[len(seeds)] = (time.perf_counter() - t0) / steps * 1000
    return {"one_ms": times[1], "stacked_ms": times[n_seeds], "ratio": times[n_seeds] / times[1]}


PAPER_POINT = ["task.D=64", "model.n_max=32", "model.mlp=paper_gated", "train.batch_size=128"]
"""The paper's point on top of the default config (K 8192, L 32, N 8, B 2, rms, 2 layers, 1 head)."""
OPTIONS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))
FASTEST_TARGET, FP32_TARGET = 0.5, 0.75  # x the published 41 ms, whole step with data


def bench_options(device: str, repeats: int = 9, inner: int = 10) -> list[dict]:
    """Whole training step (data included) at the paper's point (no W_O), for each precision x
    compile option on ``device``: ms per step (median of interleaved rounds) and first-call time."""
    from mmicl_interp.train.trainer import make_optimizer, make_update

    where = resolve_device(device)
    config = load_config("default", [*PAPER_POINT, "model.use_w_o=false"])
    task = Task.create(config.task)
    updates = {}
    for precision, compiled in OPTIONS:
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
        first_s = time.perf_counter() - t0
        for _ in range(5):
            update()
        updates[(precision, compiled)] = (update, first_s)
    times: dict[tuple[str, bool], list[float]] = {k: [] for k in updates}
    for _ in range(repeats):  # interleaved, so machine noise hits all options alike
        for key, (update, _) in updates.items():
            synchronize(where)
            t0 = time.perf_counter()
            for _ in range(inner):
                update()
            synchronize(where)
            times[key].append((time.perf_counter() - t0) / inner * 1000)
    return [
        {
            "device": str(where),
            "precision": precision,
            "compile": compiled,
            "step_ms": statistics.median(times[(precision, compiled)]),
            "first_s": updates[(precision, compiled)][1],
        }
        for precision, compiled in OPTIONS
    ]


def print_options(rows: list[dict]) -> bool:
    """Print the options table; return whether the CPU targets are met (checked on the CPU only)."""
    print(
        f"paper point without W_O, whole training step with data, on {rows[0]['device']} "
        f"(published code: {PUBLISHED_MS_PER_STEP:.0f} ms per step on this CPU):"
    )
    print(f"{'option':<16}{'step ms':>9}{'x published':>13}{'first call s':>14}")
    for r in rows:
        name = f"{r['precision']} {'compile' if r['compile'] else 'eager'}"
        ratio = r["step_ms"] / PUBLISHED_MS_PER_STEP
        print(f"{name:<16}{r['step_ms']:>9.2f}{ratio:>13.2f}{r['first_s']:>14.1f}")
    fastest = min(r["step_ms"] for r in rows) / PUBLISHED_MS_PER_STEP
    fp32 = min(r["step_ms"] for r in rows if r["precision"] == "fp32") / PUBLISHED_MS_PER_STEP
    ok = fastest <= FASTEST_TARGET and fp32 <= FP32_TARGET
    if rows[0]["device"] == "cpu":
        print(
            f"targets (fastest <= {FASTEST_TARGET}x: {fastest:.2f}x; best fp32 <= {FP32_TARGET}x: "
            f"{fp32:.2f}x):",
            "met" if ok else "NOT met",
        )
    return ok


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    points = [
        bench_point("default config", [], "none"),
        bench_point("paper point", PAPER_POINT, "paper_gated"),
    ]
    header = (
        f"{'point':<16}{'d_model':>8}{'steps/s':>9}{'step ms':>9}{'ours ms':>9}{'plain ms':>9}"
        f"{'ours/plain':>11}{'train ms':>9}{'train/ours':>11}{'data ms':>9}{'data share':>11}"
    )
    print(header)
    for p in points:
        print(
            f"{p['label']:<16}{p['d_model']:>8}{p['steps_per_s']:>9.1f}{p['step_ms']:>9.2f}"
            f"{p['model_ms']:>9.2f}{p['plain_ms']:>9.2f}{p['ratio']:>11.3f}{p['train_ms']:>9.2f}"
            f"{p['readout_ratio']:>11.3f}{p['data_ms']:>9.2f}"
            f"{p['data_share']:>10.1%}"
        )
    default = points[0]
    print(
        f"default step vs published code at the paper's point ({PUBLISHED_MS_PER_STEP:.0f} ms): "
        f"{default['step_ms'] / PUBLISHED_MS_PER_STEP:.2f}x"
    )
    analysis = bench_analysis()
    print(
        f"attention measures, 100 checkpoints x 1000 icl sequences: {analysis['seconds']:.1f} s "
        f"({analysis['per_ckpt_ms']:.0f} ms per checkpoint; {analysis['seconds'] / ANALYSIS_TARGET_S:.2f}x "
        f"the {ANALYSIS_TARGET_S:.0f} s target)"
    )
    stacked = bench_stacked()
    print(
        f"8 seeds stacked in one process: {stacked['stacked_ms']:.1f} ms/step vs one seed "
        f"{stacked['one_ms']:.1f} ms/step: {stacked['ratio']:.2f}x (target <= {STACKED_TARGET:.0f}x)"
    )
    print_options(bench_options("cpu"))
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        print_options(bench_options("cuda"))
    else:
        print("GPU: none found (CUDA figures are printed when torch sees a GPU)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")
    ok = all(p["ratio"] <= 1.15 and p["data_share"] < 0.10 for p in points)
    ok = ok and analysis["seconds"] <= ANALYSIS_TARGET_S
    print("targets (ours/plain <= 1.15, data share < 10%, analysis <= 10 s):", "met" if ok else "NOT met")
    print(
        "target (8 stacked seeds <= 3x one seed):", "met" if stacked["ratio"] <= STACKED_TARGET else "NOT met"
    )


if __name__ == "__main__":
    main()
