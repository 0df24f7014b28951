"""A rerunnable reference of the paper's published research code: stage-1 trajectories.

What it does. It imports the published ``model.py`` and ``dataset.py`` from a local checkout
that you supply (``--code DIR``; github: YiranHuangIrene/multimodal-icl, commit
``5e9cd68954443a7ba8b9c67b772353c7f90a5b42``), and trains the published stage-1 model the way
the published ``main_stage1.py`` does for the given settings: its ``Transformer`` built from its
``ModelArgs``, its class means and label vectors (``get_mus_label_class``), its online batches
(``ICLDataset``), its four eval sets drawn once (``generate_input_seqs``: test, IC = ``icl``,
IC2 = ``icl_flip``, IW = ``iwl``), Adam lr 1e-3 with weight decay 1e-6 (both hard-coded there),
cross-entropy at the query. None of the published code is copied here: it is imported at run
time from DIR, and DIR must hold the pinned commit (``git rev-parse HEAD`` when DIR is a git
checkout, and always the SHA-256 of ``model.py`` and ``dataset.py``; ``--allow-other-commit``
overrides, and the manifest records it). The published modules import ``wandb`` and
``torchvision`` at top level (``dataset.py`` imports torchvision's image sets); when they are not
importable, inert stand-ins are put in ``sys.modules`` for the import. Nothing is installed and
nothing touches the network.

Why. The toolkit's ``published`` config must reproduce these trajectories: claims P1/P2
(``analyses/paper_arch.py``) compare the toolkit's model against this table like for like (same
metrics format, same step convention, same eval-suite sizes), on this machine, rerunnable by
anyone with a checkout of the published code.

Seeds and the data stream. The published script sets ``torch.manual_seed(SEED)`` and
``np.random.seed(SEED)`` with ``SEED = 0`` hard-coded; ``--seeds`` replaces that constant, one
run per seed, in the same order of random draws: model init (torch), task (numpy), the four
eval sets (numpy). Its batches come from one DataLoader worker process whose numpy generator
torch seeds from a base seed drawn from the main torch generator when the loader is first
iterated. Here the same base seed is drawn and numpy is seeded the way the worker seeds it,
then the same ``ICLDataset`` runs in this process: the same batches, with no second process
(``tests/test_published_reference.py`` checks the stream against a real one-worker loader).

One torch thread and one process: this machine has 2 cores shared with other heavy jobs, so a
second worker process or thread only competes with them; and with one thread the CPU's float
reductions are always split the same way, so a rerun gives the same numbers bit for bit. The
device is always the CPU (the published script falls back to it silently too).

Steps. ``step`` s in the metrics is the state after s Adam updates (the toolkit's convention;
step 0 is the initialisation). The published loop evaluates after each update, so its
"Iteration n" is step n + 1 here. Evals run at step 0, every ``--eval-every`` steps and at the
last step; evaluating draws no random numbers, so it does not change the training trajectory.

Output. One run folder per (K, seed) under ``--out`` (``K<K>_seed<seed>``), each with
``metrics.jsonl`` (rows ``{"step", "suite", "accuracy", "loss", "chance"}``, the toolkit's
format; suites test / icl / icl_flip / iwl) and ``manifest.json`` (settings, seed, the code's
commit and hashes, torch version, command line, wall time, status). Every write is atomic. A
run folder whose manifest says complete with the same settings and code is reused, an
unfinished one is trained again from the start, and a finished one with other settings is
refused (exit 2), never overwritten. After each run the summary table
``published_reference.csv`` (K, seed, step, suite, accuracy, loss; every eval step) and
``published_reference.md`` are rewritten under ``--results``: rows of runs not in this command
are kept, rows of this command's runs replaced.

Bad input (a missing folder, another commit, K not a multiple of L, steps < 1, ...) is one line
naming the option and the allowed values, exit status 2.

Checked against the published script itself (2026-12-04): ``main_stage1.py`` run as it is
(torchvision stubbed, wandb disabled, one thread) at K 2048 with SEED 0 prints, at its
Iterations 0 and 1000, the same test / IC / IC2 / IW accuracies and losses, to all 4 printed
decimals, as this script's steps 1 and 1001.

The reference (6 runs of 2000 steps, 104-116 s each on one core of a 2-core CPU):

    .venv/bin/python analyses/published_reference.py --code /path/to/multimodal-icl \\
        --K 2048 4096 --seeds 0 1 2 --steps 2000 --eval-every 100
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmicl_interp.config import ConfigError
from mmicl_interp.io import FolderBusy, atomic_write_text, check_writable_dir, folder_lock, write_json

PROG = "published_reference.py"
PINNED_COMMIT = "5e9cd68954443a7ba8b9c67b772353c7f90a5b42"
PINNED_SHA256 = {  # of the files at PINNED_COMMIT (git show 5e9cd68:FILE | sha256sum)
    "model.py": "4ab32f1d99cd9dbc9d3645786084bec5b3abddf5ab70ad21b6984e99643fda33",
    "dataset.py": "c1b763a9df308ae947e82a681de86b4bf648f23d435acb5d290f4fce3017d62c",
}
NEEDED = {
    "model.py": ("ModelArgs", "Transformer"),
    "dataset.py": ("get_mus_label_class", "generate_input_seqs", "ICLDataset"),
}
STUBBED = ("wandb", "torchvision")
SUITES = ("test", "icl", "icl_flip", "iwl")
NMAX = 32  # the published script's maximum context (width of the one-hot position block: 2 * 32 + 1)
N_NOVEL = 128  # the published generator's number of novel classes (fixed there)
LR = 1e-3  # hard-coded in the published script
WEIGHT_DECAY = 1e-6  # hard-coded in the published script
NORM_EPS = 1e-5  # passed by the published script
POSITIONS = ("ape", "rope", "alibi", "hybrid")
OPTIMIZERS = ("Adam", "SGD", "AdamW")
REPORT_STEPS = (500, 1000, 1500, 2000)
CSV_NAME = "published_reference.csv"
MD_NAME = "published_reference.md"
CSV_COLUMNS = ("K", "seed", "step", "suite", "accuracy", "loss")
MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
FORMAT = "published-reference-1"
STEP_CONVENTION = (
    "step s = after s optimizer updates (step 0 = init); the published loop's 'Iteration n' is step n + 1"
)


class UsageError(Exception):
    """Bad input: printed as one line naming the option, exit status 2."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line naming the option, instead of usage + message
        if m := re.match(r"argument (\S+?)(?:/\S+)?: (.*)$", message):
            raise UsageError(m.group(1), f"{m.group(2)} (see --help for the allowed values)")
        if m := re.match(r"the following arguments are required: (.*)$", message):
            raise UsageError(m.group(1), "is required (see --help)")
        raise UsageError("arguments", f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
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


def width_of(s: dict[str, Any]) -> int:
    """The model width the published script uses for these settings."""
    if s["positions"] == "hybrid":
        return 2 * NMAX + s["D"] + 2
    if s["positions"] in ("rope", "alibi"):
        return s["D"]
    return 2 * NMAX + 1 + s["D"]


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


# ----------------------------------------------------------------------------- the published code


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git_head(code: Path) -> str | None:
    """HEAD of ``code`` when ``code`` is the top of a git checkout; else None."""
    try:
        out = subprocess.run(
            ["git", "-C", str(code), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None
    if Path(lines[0]).resolve() != code.resolve():  # a folder inside some other repository
        return None
    return lines[1]


def check_code(code: Path, allow_other: bool) -> dict[str, Any]:
    """Refuse (UsageError) unless ``code`` holds the pinned commit; returns what was checked."""
    if not code.is_dir():
        raise UsageError(
            "--code", f"{code} is not a folder; give a checkout of the published code at {PINNED_COMMIT}"
        )
    missing = [name for name in PINNED_SHA256 if not (code / name).is_file()]
    if missing:
        raise UsageError(
            "--code", f"{code} has no {', '.join(missing)}; give a checkout of the published code"
        )
    head = _git_head(code)
    hashes = {name: _sha256(code / name) for name in PINNED_SHA256}
    problems = []
    if head is not None and head != PINNED_COMMIT:
        problems.append(f"its HEAD is {head}")
    changed = [name for name, h in hashes.items() if h != PINNED_SHA256[name]]
    if changed:
        problems.append(f"{' and '.join(changed)} differ from the commit's")
    if problems and not allow_other:
        raise UsageError(
            "--code",
            f"{code} does not hold commit {PINNED_COMMIT} ({'; '.join(problems)}); "
            "check out that commit or pass --allow-other-commit",
        )
    return {
        "dir": str(code.resolve()),
        "pinned_commit": PINNED_COMMIT,
        "head": head,
        "checked_by": "git HEAD and sha256" if head is not None else "sha256",
        "sha256": hashes,
        "matches_pinned": not problems,
        "allow_other_commit": bool(allow_other),
        "mismatch": "; ".join(problems) or None,
    }


class _Unavailable:
    """Stands in for any name of a stubbed module; fails only if something uses it."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError(
            "this name comes from a stubbed module (not installed); the stage-1 reference never uses it"
        )


def _stub(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__["__getattr__"] = lambda attr: (
        _Unavailable if not attr.startswith("__") else _missing(attr)
    )
    module.__path__ = []  # a package, so "from name.sub import X" finds the stubbed submodules
    return module


def _missing(attr: str) -> Any:
    raise AttributeError(attr)


def import_published(code: Path) -> tuple[types.ModuleType, types.ModuleType, list[str]]:
    """Import the published model.py and dataset.py from ``code``; returns them and the stubs used."""
    stubs: dict[str, types.ModuleType] = {}
    for name in STUBBED:
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            stubs[name] = _stub(name)
            for sub in ("datasets", "transforms", "models", "io", "utils", "sdk", "apis"):
                stubs[f"{name}.{sub}"] = _stub(f"{name}.{sub}")
    saved = {name: sys.modules.pop(name) for name in ("model", "dataset") if name in sys.modules}
    sys.modules.update(stubs)
    sys.path.insert(0, str(code))
    try:
        model = importlib.import_module("model")
        dataset = importlib.import_module("dataset")
    except Exception as err:  # a broken checkout: one line, no traceback
        raise UsageError(
            "--code", f"cannot import model.py / dataset.py from {code}: {type(err).__name__}: {err}"
        ) from None
    finally:
        sys.path.remove(str(code))
        for name in ("model", "dataset", *stubs):
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    for module, (fname, names) in zip((model, dataset), NEEDED.items(), strict=True):
        lacking = [n for n in names if not hasattr(module, n)]
        if lacking:
            raise UsageError(
                "--code", f"{code / fname} has no {', '.join(lacking)}; is it the published code?"
            )
    return model, dataset, sorted(n for n in stubs if "." not in n)


# ----------------------------------------------------------------------------- one run


def _evaluate(model: Any, suite: tuple[Any, Any], flip: bool, n_labels: int) -> tuple[float, float]:
    """Accuracy and cross-entropy at the query on one eval set, scored as the published eval scores it."""
    inputs, onehot = suite[0], suite[1]
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    target = onehot.argmax(dim=-1)
    if flip:  # IC2: the context labels were shifted by one; the right answer is the shifted label
        target = (target + 1) % n_labels
    accuracy = (logits.argmax(dim=-1) == target).float().mean().item()
    loss = torch.nn.functional.cross_entropy(
        logits, torch.nn.functional.one_hot(target, n_labels).to(logits.dtype)
    ).item()
    return float(accuracy), float(loss)


def batch_stream(train_set: Any) -> Any:
    """The training batches the published one-worker DataLoader yields, made in this process.

    Iterating the published loader draws a base seed from the torch generator, and its worker
    seeds numpy from that seed before running the dataset. This draws the same base seed (by
    creating a loader iterator, here without workers) and seeds numpy the same way.
    """
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.worker import _generate_state

    batches = iter(DataLoader(train_set, batch_size=None, num_workers=0))
    np.random.seed(_generate_state(batches._base_seed, 0))
    return batches


def train_run(
    pub: tuple[types.ModuleType, types.ModuleType],
    s: dict[str, Any],
    K: int,
    seed: int,
    on_eval: Any = None,
) -> list[dict[str, Any]]:
    """Train one published stage-1 model; ``on_eval(rows_so_far)`` after each eval. Returns the rows."""

    model_mod, data_mod = pub
    rope_flag = s["positions"] == "rope"
    alibi_flag = s["positions"] == "alibi"
    hybrid_flag = s["positions"] == "hybrid"
    width = width_of(s)
    L = s["L"]

    # the published script's order of draws, with our seed for its SEED = 0
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = model_mod.Transformer(
        model_mod.ModelArgs(
            dim=width,
            n_layers=s["layers"],
            n_heads=s["heads"],
            n_labels=L,
            max_position_embeddings=width if hybrid_flag else 2 * s["N"] + 1,
            rope_theta=s["rope_theta"],
            mlp_bias=True,
            rms_norm=s["norm"] == "rms",
            rope=rope_flag,
            norm_eps=NORM_EPS,
            use_alibi=alibi_flag,
            use_hybrid=hybrid_flag,
        )
    )
    optimizer = getattr(torch.optim, s["optimizer"])(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    P = 1.0 / (np.arange(1, K + 1) ** s["alpha"])
    P /= np.sum(P)
    mus_label, mus_class, labels_class = data_mod.get_mus_label_class(K, L, s["D"])
    task = dict(mus_label=mus_label, mus_class=mus_class, labels_class=labels_class)
    common = dict(
        eps=s["eps"], P=P, no_repeats=bool(s["no_repeats"]), rope=rope_flag or alibi_flag, hybrid=hybrid_flag
    )
    train_set = data_mod.ICLDataset(
        **task,
        N=s["N"],
        S=s["batch"],
        Nmax=NMAX,
        B=s["B"],
        p_B=s["p_B"],
        p_C=s["p_C"],
        datasize=s["steps"],
        **common,
    )
    args = (mus_label, mus_class, labels_class, s["N"], s["eval_size"], NMAX)
    suites = {  # in the published order of draws
        "test": data_mod.generate_input_seqs(*args, B=s["B"], p_B=s["p_B"], p_C=s["p_C"], **common),
        "icl": data_mod.generate_input_seqs(*args, B=s["B"], p_B=1, p_C=1, **common),
        "icl_flip": data_mod.generate_input_seqs(*args, B=s["B"], p_B=1, p_C=0, flip_labels=True, **common),
        "iwl": data_mod.generate_input_seqs(*args, B=0, p_B=0, p_C=0, **common),
    }
    batches = batch_stream(train_set)

    rows: list[dict[str, Any]] = []
    chance = 1.0 / L

    def evaluate(step: int) -> None:
        for name, suite in suites.items():
            acc, loss = _evaluate(model, suite, name == "icl_flip", L)
            rows.append({"step": step, "suite": name, "accuracy": acc, "loss": loss, "chance": chance})
        if on_eval is not None:
            on_eval(rows)

    evaluate(0)
    for step in range(1, s["steps"] + 1):
        inputs, labels = next(batches)
        model.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        if step % s["eval_every"] == 0 or step == s["steps"]:
            evaluate(step)
    return rows


def expected_steps(s: dict[str, Any]) -> list[int]:
    return sorted({0, s["steps"], *range(s["eval_every"], s["steps"] + 1, s["eval_every"])})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_rows(run_dir: Path) -> list[dict[str, Any]] | None:
    try:
        return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def finished(run_dir: Path, s: dict[str, Any], K: int, seed: int, code: dict[str, Any]) -> bool | str:
    """True: a complete run of these settings to reuse; False: train it; a string: why it conflicts."""
    manifest = _read_json(run_dir / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        return False
    want = {**s, "K": K, "seed": seed}
    have = manifest.get("settings", {})
    diff = [f"{k} {have.get(k)!r}, not {v!r}" for k, v in want.items() if have.get(k) != v]
    if manifest.get("code", {}).get("sha256") != code["sha256"]:
        diff.append("other published code (sha256 of model.py / dataset.py)")
    if diff:
        return "; ".join(diff)
    rows = _read_rows(run_dir)
    got = {(r.get("step"), r.get("suite")) for r in rows or []}
    return got >= {(st, su) for st in expected_steps(s) for su in SUITES}


# ----------------------------------------------------------------------------- tables


def _metrics_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of an existing summary CSV (typed); a malformed file is a UsageError naming --results."""
    if not path.is_file():
        return []
    try:
        reader = csv.DictReader(io.StringIO(path.read_text()))
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"columns {reader.fieldnames}, not {list(CSV_COLUMNS)}")
        rows = []
        for r in reader:
            if r["suite"] not in SUITES:
                raise ValueError(f"suite {r['suite']!r}")
            rows.append(
                {
                    "K": int(r["K"]),
                    "seed": int(r["seed"]),
                    "step": int(r["step"]),
                    "suite": r["suite"],
                    "accuracy": float(r["accuracy"]),
                    "loss": float(r["loss"]),
                }
            )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(
            "--results", f"{path} is not a {CSV_NAME} table ({err}); move it away or fix it"
        ) from None
    return rows


def merge_table(old: list[dict[str, Any]], runs: dict[tuple[int, int], list[dict[str, Any]]]) -> list[dict]:
    """``old`` rows of other runs, plus the rows of ``runs`` (replacing theirs), sorted."""
    kept = [r for r in old if (r["K"], r["seed"]) not in runs]
    new = [
        {
            "K": K,
            "seed": seed,
            "step": r["step"],
            "suite": r["suite"],
            "accuracy": r["accuracy"],
            "loss": r["loss"],
        }
        for (K, seed), rows in runs.items()
        for r in rows
    ]
    return sorted(kept + new, key=lambda r: (r["K"], r["seed"], r["step"], SUITES.index(r["suite"])))


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table_markdown(
    rows: list[dict[str, Any]], command: str, code: dict[str, Any], out: Path, this_runs: set[tuple[int, int]]
) -> str:
    """The Markdown summary of the whole CSV: per run icl / iwl at the report steps, per K mean and range."""
    value = {(r["K"], r["seed"], r["step"], r["suite"]): r["accuracy"] for r in rows}
    runs = sorted({(r["K"], r["seed"]) for r in rows})
    present = sorted({r["step"] for r in rows})
    steps = [st for st in REPORT_STEPS if st in present] or present[-1:]
    commit = code["head"] or PINNED_COMMIT
    check = (
        "matches the pinned commit"
        if code["matches_pinned"]
        else f"NOT the pinned commit ({code['mismatch']})"
    )
    lines = [
        "# The published code's stage-1 trajectories, rerun here",
        "",
        f"Written by `analyses/published_reference.py`; do not edit by hand. Every eval step: `{CSV_NAME}`.",
        "",
        f"- command: `{command}`",
        f"- published code: github YiranHuangIrene/multimodal-icl, commit `{commit}` "
        f"(checked by {code['checked_by']}: {check})",
        "- settings: the paper's point unless the command changes it (N 8, D 64, L 32, alpha 0, B 2, p_B 1, "
        "p_C 0, eps 0.1, no_repeats 0, 1 head, 2 layers, one-hot APE, RMSNorm, batch 128, Adam lr 1e-3, "
        "weight decay 1e-6); eval suites of the published construction (test, icl = IC, icl_flip = IC2, "
        "iwl = IW), drawn once per run; CPU, one thread, one process",
        f"- {STEP_CONVENTION}",
        "- chance = 1/L",
        "",
        "## icl / iwl accuracy per run",
        "",
        "| K | seed | " + " | ".join(f"step {st}" for st in steps) + " | wall time | code |",
        "|---|---|" + "---|" * len(steps) + "---|---|",
    ]
    for K, seed in runs:
        cells = [
            f"{_fmt(value.get((K, seed, st, 'icl')))} / {_fmt(value.get((K, seed, st, 'iwl')))}"
            for st in steps
        ]
        manifest = _read_json(out / f"K{K}_seed{seed}" / MANIFEST)
        wall, src = "-", "-"
        if isinstance(manifest, dict) and manifest.get("status") == "complete":
            wall = f"{manifest.get('wall_time_s') or float('nan'):.0f} s"
            src = (
                "pinned" if manifest.get("code", {}).get("matches_pinned") else "other (--allow-other-commit)"
            )
        lines.append(f"| {K} | {seed} | " + " | ".join(cells) + f" | {wall} | {src} |")
    older = [f"K {K} seed {seed}" for K, seed in runs if (K, seed) not in this_runs]
    if older:
        lines += ["", f"Rows kept from earlier commands: {', '.join(older)}."]
    lines += [
        "",
        "## Mean over seeds per K (range = min-max over seeds)",
        "",
        "| K | step | seeds | icl mean | icl range | iwl mean | iwl range |",
        "|---|---|---|---|---|---|---|",
    ]
    for K in sorted({k for k, _ in runs}):
        seeds = [sd for k, sd in runs if k == K]
        for st in steps:
            cells = [str(K), str(st)]
            icl = [value[(K, sd, st, "icl")] for sd in seeds if (K, sd, st, "icl") in value]
            iwl = [value[(K, sd, st, "iwl")] for sd in seeds if (K, sd, st, "iwl") in value]
            cells.append(str(len(icl)))
            for vals in (icl, iwl):
                if vals:
                    cells += [f"{sum(vals) / len(vals):.3f}", f"{min(vals):.3f}-{max(vals):.3f}"]
                else:
                    cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def _command(argv: list[str]) -> str:
    return shlex.join([".venv/bin/python", "analyses/published_reference.py", *argv])


def run(argv: list[str]) -> int:
    """The whole command (raises UsageError for bad input)."""
    args = build_parser().parse_args(argv)
    validate(args)
    code = check_code(Path(args.code).expanduser(), args.allow_other_commit)
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
            done[(K, seed)] = _read_rows(run_dir) or []
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
        atomic_write_text(run_dir / METRICS, _metrics_text(rows))
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
    torch.set_num_threads(1)  # see the module docstring: determinism, and a shared 2-core machine
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


if __name__ == "__main__":
    sys.exit(main())
