"""The published-code reference as a command (``analyses/published_reference.py``): its options,
input checks, run folders and summary table, so that the script holds only its documentation.

The script's docstring says what the command does and why; the script calls :func:`main`. Here:
:func:`build_parser` (bad input is one line naming the option, through
:class:`~mmicl_interp.sweep.published_code.UsageError`), :func:`validate` (settings the published
code cannot run), :func:`run` (check and import the published code, plan the (K, seed) runs,
reuse finished ones, train the rest with :func:`~mmicl_interp.sweep.published_code.train_run`,
rewrite the table after each run) and :func:`main` (one torch thread; the process's thread count
and random states restored afterwards, so it can be called in-process; exit 2 for bad input,
130 for Ctrl-C). The program name in messages and the command line recorded in manifests are the
script's.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shlex
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.io import FolderBusy, atomic_write_text, check_writable_dir, folder_lock, write_json
from mmicl_interp.sweep.published_code import (
    LR,
    N_NOVEL,
    NMAX,
    PINNED_COMMIT,
    PINNED_SHA256,
    SUITES,
    WEIGHT_DECAY,
    UsageError,
    check_code,
    import_published,
    train_run,
    width_of,
)
from mmicl_interp.sweep.reference_table import (
    CSV_NAME,
    MANIFEST,
    MD_NAME,
    METRICS,
    STEP_CONVENTION,
    finished,
    merge_table,
    metrics_text,
    read_rows,
    read_table,
    table_csv,
    table_markdown,
)

SCRIPT = "analyses/published_reference.py"
"""The script, as the command line recorded in manifests and tables names it."""
DESCRIPTION = "A rerunnable reference of the paper's published research code: stage-1 trajectories."
"""The ``--help`` description: the first paragraph of the script's docstring."""
PROG = "published_reference.py"
"""The program name in messages."""
POSITIONS = ("ape", "rope", "alibi", "hybrid")
OPTIMIZERS = ("Adam", "SGD", "AdamW")
FORMAT = "published-reference-1"
"""The manifest's format tag."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line naming the option, instead of usage + message
        if m := re.match(r"argument (\S+?)(?:/\S+)?: (.*)$", message):
            raise UsageError(m.group(1), f"{m.group(2)} (see --help for the allowed values)")
        if m := re.match(r"the following arguments are required: (.*)$", message):
            raise UsageError(m.group(1), "is required (see --help)")
        raise UsageError("arguments", f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command's options; a parse error raises UsageError (one line naming the option)."""
    p = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--code", required=True, help=f"a local checkout of the published code (commit {PINNED_COMMIT})"
    )
    p.add_argument("--allow-other-commit", action="store_true", help="run code that is not the pinned commit")
    p.add_argument("--K", type=int, nargs="+", default=[2048, 4096], help="class counts (multiples of L)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="replace the published SEED = 0")
    p.add_argument("--steps", type=int, default=2000, help="optimizer updates per run")
    p.add_argument("--eval-every", type=int, default=100, help="eval interval in steps")
    p.add_argument("--eval-size", type=int, default=1000, help="sequences per eval suite (the published S)")
    p.add_argument("--N", type=int, default=8, help="exemplar pairs per context")
    p.add_argument("--D", type=int, default=64, help="feature dimension")
    p.add_argument("--L", type=int, default=32, help="number of labels")
    p.add_argument("--alpha", type=float, default=0.0, help="Zipf exponent of the class distribution")
    p.add_argument("--B", type=int, default=2, help="burstiness (0: no bursty sequences)")
    p.add_argument("--p-B", dest="p_B", type=float, default=1.0, help="fraction of bursty sequences")
    p.add_argument("--p-C", dest="p_C", type=float, default=0.0, help="fraction of novel-class sequences")
    p.add_argument("--eps", type=float, default=0.1, help="within-class noise")
    p.add_argument(
        "--no-repeats", type=int, choices=(0, 1), default=0, help="bursty contexts use distinct labels"
    )
    p.add_argument("--heads", type=int, default=1, help="attention heads (must divide the model width)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers")
    p.add_argument(
        "--positions",
        choices=POSITIONS,
        default="ape",
        help="ape: one-hot block (default); rope / alibi / hybrid: the published flags",
    )
    p.add_argument("--rope-theta", type=int, default=10000, help="RoPE base (with --positions rope)")
    p.add_argument("--norm", choices=("rms", "none"), default="rms", help="RMSNorm or no norm")
    p.add_argument("--batch", type=int, default=128, help="sequences per training batch")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="Adam", help="the published choices")
    p.add_argument("--out", default="checkpoints/published_reference", help="folder of the run folders")
    p.add_argument("--results", default="analyses/results", help=f"folder of {CSV_NAME} and {MD_NAME}")
    return p


# ----------------------------------------------------------------------------- input checks


def validate(a: argparse.Namespace) -> None:
    """Raise UsageError for settings the published code cannot run (or would run wrongly)."""

    def need(ok: bool, option: str, message: str) -> None:
        if not ok:
            raise UsageError(option, message)

    for opt, value in (
        ("--steps", a.steps),
        ("--eval-every", a.eval_every),
        ("--eval-size", a.eval_size),
        ("--batch", a.batch),
        ("--layers", a.layers),
        ("--D", a.D),
        ("--L", a.L),
    ):
        need(value >= 1, opt, f"{value} is not allowed; give an integer >= 1")
    need(
        N_NOVEL % a.L == 0,
        "--L",
        f"{a.L} is not allowed; the published novel-class set has {N_NOVEL} classes, "
        "so L must divide 128 (1, 2, 4, 8, 16, 32, 64, 128)",
    )
    need(
        2 <= a.N <= NMAX and a.N % 2 == 0,
        "--N",
        f"{a.N} is not allowed; give an even number from 2 to {NMAX} (the published iwl suite uses B = N/2)",
    )
    need(
        a.B == 0 or (0 < a.B < a.N and a.N % a.B == 0),
        "--B",
        f"{a.B} is not allowed; give 0 or a divisor of N = {a.N} below N",
    )
    for opt, value in (("--p-B", a.p_B), ("--p-C", a.p_C)):
        need(
            math.isfinite(value) and 0.0 <= value <= 1.0,
            opt,
            f"{value} is not allowed; give a number in [0, 1]",
        )
    need(math.isfinite(a.eps) and a.eps >= 0, "--eps", f"{a.eps} is not allowed; give a finite number >= 0")
    need(
        math.isfinite(a.alpha) and a.alpha >= 0,
        "--alpha",
        f"{a.alpha} is not allowed; give a finite number >= 0",
    )
    if a.no_repeats:
        bursts = a.N // a.B if a.B else 2
        need(
            bursts <= a.L,
            "--no-repeats",
            f"1 needs N/B = {bursts} distinct labels, more than L = {a.L}; give 0",
        )
    for k in a.K:
        need(k >= a.L and k % a.L == 0, "--K", f"{k} is not allowed; give multiples of L = {a.L} (>= {a.L})")
    need(len(set(a.K)) == len(a.K), "--K", "a value is repeated; give each K once")
    for seed in a.seeds:
        need(0 <= seed < 2**32, "--seeds", f"{seed} is not allowed; give integers from 0 to 2**32 - 1")
    need(len(set(a.seeds)) == len(a.seeds), "--seeds", "a value is repeated; give each seed once")
    width = width_of(vars(a))
    need(
        a.heads >= 1 and width % a.heads == 0,
        "--heads",
        f"{a.heads} is not allowed; the published head_dim is width // heads, so heads must divide the "
        f"width {width} ({', '.join(str(h) for h in range(1, width + 1) if width % h == 0)})",
    )
    need(a.rope_theta >= 1, "--rope-theta", f"{a.rope_theta} is not allowed; give an integer >= 1")


def settings_of(a: argparse.Namespace) -> dict[str, Any]:
    """Every setting of a run except K and seed (recorded per run beside them)."""
    return {
        "N": a.N,
        "D": a.D,
        "L": a.L,
        "alpha": a.alpha,
        "B": a.B,
        "p_B": a.p_B,
        "p_C": a.p_C,
        "eps": a.eps,
        "no_repeats": a.no_repeats,
        "heads": a.heads,
        "layers": a.layers,
        "positions": a.positions,
        "rope_theta": a.rope_theta,
        "norm": a.norm,
        "batch": a.batch,
        "optimizer": a.optimizer,
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "steps": a.steps,
        "eval_every": a.eval_every,
        "eval_size": a.eval_size,
        "Nmax": NMAX,
        "width": width_of(vars(a)),
    }


# ----------------------------------------------------------------------------- main


def _command(argv: list[str]) -> str:
    """The command line as recorded in manifests and the table (the script's, from the repo root)."""
    return shlex.join([".venv/bin/python", SCRIPT, *argv])


def run(argv: list[str]) -> int:
    """The whole command (raises UsageError for bad input)."""
    args = build_parser().parse_args(argv)
    validate(args)
    code = check_code(Path(args.code).expanduser(), args.allow_other_commit, PINNED_SHA256, PINNED_COMMIT)
    pub = import_published(Path(code["dir"]))  # a broken checkout fails here, before any folder is made
    out, results = Path(args.out), Path(args.results)
    try:
        check_writable_dir(out, "--out")
        check_writable_dir(results, "--results")
    except ConfigError as err:
        raise UsageError(err.field, err.message) from None
    csv_path, md_path = results / CSV_NAME, results / MD_NAME
    read_table(csv_path)  # a malformed table fails now, before any training
    s = settings_of(args)
    plan = []
    for K in args.K:
        for seed in args.seeds:
            run_dir = out / f"K{K}_seed{seed}"
            state = finished(run_dir, s, K, seed, code)
            if isinstance(state, str):
                raise UsageError(
                    "--out",
                    f"{run_dir} holds a finished run with other settings ({state}); "
                    "remove that folder or give another --out",
                )
            plan.append((K, seed, run_dir, state))

    stubs = pub[2]
    command = _command(argv)
    done: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for K, seed, run_dir, reuse in plan:
        if reuse:
            print(f"K {K} seed {seed}: complete in {run_dir}, reused", flush=True)
            done[(K, seed)] = read_rows(run_dir) or []
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                with folder_lock(run_dir, wait=False):
                    done[(K, seed)] = _train_into(run_dir, pub[:2], s, K, seed, code, stubs, argv)
            except FolderBusy:
                raise UsageError(
                    "--out", f"{run_dir} is being trained by another process; wait for it"
                ) from None
        merged = merge_table(read_table(csv_path), done)
        atomic_write_text(csv_path, table_csv(merged))
        atomic_write_text(md_path, table_markdown(merged, command, code, out, set(done)))
    print(f"wrote {csv_path} and {md_path}", flush=True)
    return 0


def _train_into(
    run_dir: Path,
    pub: tuple[types.ModuleType, types.ModuleType],
    s: dict[str, Any],
    K: int,
    seed: int,
    code: dict[str, Any],
    stubs: list[str],
    argv: list[str],
) -> list[dict[str, Any]]:
    """Train one run into ``run_dir`` (manifest first, metrics after each eval, status last)."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "run_id": run_dir.name,
        "status": "running",
        "K": K,
        "seed": seed,
        "settings": {**s, "K": K, "seed": seed},
        "code": code,
        "stubbed_modules": stubs,
        "step_convention": STEP_CONVENTION,
        "seeding": "torch.manual_seed(seed) and np.random.seed(seed) in place of the published SEED = 0; "
        "batches: numpy seeded as the published one-worker DataLoader seeds its worker",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": _command(argv),
        "argv": argv,
        "cwd": os.getcwd(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_time_s": None,
    }
    write_json(run_dir / MANIFEST, manifest)
    atomic_write_text(run_dir / METRICS, "")
    t0 = time.perf_counter()

    def on_eval(rows: list[dict[str, Any]]) -> None:
        atomic_write_text(run_dir / METRICS, metrics_text(rows))
        last = {r["suite"]: r["accuracy"] for r in rows if r["step"] == rows[-1]["step"]}
        print(
            f"K {K} seed {seed} step {rows[-1]['step']:>6d} | "
            + "  ".join(f"{name} {last[name]:.3f}" for name in SUITES)
            + f" | {time.perf_counter() - t0:.0f} s",
            flush=True,
        )

    try:
        rows = train_run(pub, s, K, seed, on_eval)
    except BaseException:
        manifest["status"] = "interrupted"
        manifest["wall_time_s"] = time.perf_counter() - t0
        write_json(run_dir / MANIFEST, manifest)
        raise
    manifest["status"] = "complete"
    manifest["wall_time_s"] = time.perf_counter() - t0
    manifest["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(run_dir / MANIFEST, manifest)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the reference; returns the exit status (2 for bad input, 130 for Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    threads = torch.get_num_threads()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    torch.set_num_threads(1)  # see the script's docstring: determinism, and a shared 2-core machine
    try:
        return run(argv)
    except UsageError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; finished runs are kept, rerun the same command to continue",
            file=sys.stderr,
        )
        return 130
    finally:  # leave the process as it was (main may be called in-process, e.g. by tests)
        torch.set_num_threads(threads)
        torch.set_rng_state(torch_state)
        np.random.set_state(np_state)
