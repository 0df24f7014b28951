"""The published research code (github YiranHuangIrene/multimodal-icl), imported from a local
checkout and trained as its ``main_stage1.py`` trains: for ``analyses/published_reference.py``.

Nothing of the published code is copied here: :func:`check_code` checks a checkout against the
pinned commit (git HEAD when it is a checkout, always the SHA-256 of ``model.py`` and
``dataset.py``), :func:`import_published` imports it (inert stand-ins for ``wandb`` and
``torchvision`` when they are not installed), :func:`train_run` trains one stage-1 model in the
published order of random draws with a given seed in place of its ``SEED = 0``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


class UsageError(Exception):
    """Bad input: printed as one line naming the option, exit status 2."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def width_of(s: dict[str, Any]) -> int:
    """The model width the published script uses for these settings."""
    if s["positions"] == "hybrid":
        return 2 * NMAX + s["D"] + 2
    if s["positions"] in ("rope", "alibi"):
        return s["D"]
    return 2 * NMAX + 1 + s["D"]


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


def check_code(
    code: Path, allow_other: bool, pinned: dict[str, str] | None = None, commit: str = PINNED_COMMIT
) -> dict[str, Any]:
    """Refuse (UsageError) unless ``code`` holds ``commit`` (the SHA-256 of its files: ``pinned``,
    default :data:`PINNED_SHA256`); returns what was checked."""
    pinned = PINNED_SHA256 if pinned is None else pinned
    if not code.is_dir():
        raise UsageError(
            "--code", f"{code} is not a folder; give a checkout of the published code at {commit}"
        )
    missing = [name for name in pinned if not (code / name).is_file()]
    if missing:
        raise UsageError(
            "--code", f"{code} has no {', '.join(missing)}; give a checkout of the published code"
        )
    head = _git_head(code)
    hashes = {name: _sha256(code / name) for name in pinned}
    problems = []
    if head is not None and head != commit:
        problems.append(f"its HEAD is {head}")
    changed = [name for name, h in hashes.items() if h != pinned[name]]
    if changed:
        problems.append(f"{' and '.join(changed)} differ from the commit's")
    if problems and not allow_other:
        raise UsageError(
            "--code",
            f"{code} does not hold commit {commit} ({'; '.join(problems)}); "
            "check out that commit or pass --allow-other-commit",
        )
    return {
        "dir": str(code.resolve()),
        "pinned_commit": commit,
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


__all__ = [
    "PINNED_COMMIT",
    "PINNED_SHA256",
    "SUITES",
    "UsageError",
    "batch_stream",
    "check_code",
    "import_published",
    "train_run",
    "width_of",
]
