"""Fuzzing the front door: bad configs and CLI arguments, and kills at random moments.

- Property-based (hypothesis): a valid tiny config with one value replaced by a bad or
  random one, and valid command lines with one argument replaced by an invalid one, must
  each end in exit status 2 with exactly one line on stderr and no traceback, and must not
  change one byte of an existing run directory.
- Slow: training killed with SIGKILL at 20 random wall-clock moments, each resumed, ends
  bit-identical (metrics and every checkpoint) to an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp.cli import main
from mmicl_interp.sweep.grid import toml_value
from tests.conftest import TINY_TOML, toml_text

REPO = Path(__file__).resolve().parents[1]
FUZZ_EXAMPLES = int(os.environ.get("MMICL_FUZZ_EXAMPLES", "400"))
COUNTS: dict[str, int] = {"configs": 0, "configs_exit2": 0, "configs_same": 0, "cli": 0}


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` -> sha256 of its bytes (the run directory's state)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse exits through SystemExit
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def _assert_one_line_exit_2(rc: int, out: str, err: str, argv: list[str]) -> None:
    assert rc == 2, f"{argv}: rc {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err, f"{argv}: traceback\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{argv}: {len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("mmicl"), lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A complete tiny run, its config file, a sweep grid and a plain file to put paths under."""
    root = tmp_path_factory.mktemp("fuzz")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    run = root / "run"
    rc, out, err = _call(["train", str(config), "--out", str(run), "--quiet"])
    assert rc == 0, err
    grid = root / "grid.toml"
    grid.write_text('base = "tiny.toml"\n[grid]\n"task.K" = [64]\n')
    blocker = root / "plain.txt"
    blocker.write_text("a file, not a folder\n")
    return {"root": root, "config": config, "run": run, "grid": grid, "blocker": blocker}


# ---------------------------------------------------------------------------------------
# configs


def _to_toml(data: dict) -> str:
    return toml_text(data, lambda v: toml_value("fuzz", v))


def _config_keys(workspace_run: Path) -> list[tuple[str, str]]:
    manifest = json.loads((workspace_run / ck.MANIFEST).read_text())
    keys = [(s, k) for s, values in manifest["config"].items() if isinstance(values, dict) for k in values]
    return keys


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6)
BAD_VALUES = st.one_of(
    st.integers(min_value=-(10**12), max_value=-1),
    st.just(0),
    st.integers(min_value=10**8, max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -1e-300]),
    _TEXT,
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=2),
)


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_configs_exit_2_with_one_line_and_leave_the_run_untouched(workspace, data):
    run, root = workspace["run"], workspace["root"]
    before = _digest(run)
    base = tomllib.loads(workspace["config"].read_text())
    keys = _config_keys(run) + [("task", "no_such_key"), ("", "no_such_section")]
    section, key = data.draw(st.sampled_from(keys), label="key")
    value = data.draw(BAD_VALUES, label="value")
    mutated = json.loads(json.dumps(base))
    if section:
        mutated.setdefault(section, {})[key] = value
    else:
        mutated[key] = {"x": value} if isinstance(value, int) else value
    path = root / "mutated.toml"
    path.write_text(_to_toml(mutated))
    rc, out, err = _call(["train", str(path), "--out", str(run), "--quiet"])
    COUNTS["configs"] += 1
    if rc == 0:
        # the mutation happened to rebuild the run's own config: "already complete", no work
        COUNTS["configs_same"] += 1
        assert "already holds this complete run" in out
    else:
        _assert_one_line_exit_2(rc, out, err, [section, key, value])
        COUNTS["configs_exit2"] += 1
    assert _digest(run) == before


# ---------------------------------------------------------------------------------------
# command lines

HEAD_RE = re.compile(r"L\d+H\d+(,L\d+H\d+)*")


def _bad_n_seqs() -> st.SearchStrategy[str]:
    not_int = _TEXT.filter(lambda s: not re.fullmatch(r"\s*[+-]?\d+\s*", s))
    return st.one_of(st.integers(max_value=0).map(str), not_int)


def _bad_heads() -> st.SearchStrategy[str]:
    malformed = _TEXT.filter(lambda s: not HEAD_RE.fullmatch(s))
    out_of_range = st.tuples(st.integers(2, 50), st.integers(0, 3)).map(lambda t: f"L{t[0]}H{t[1]}")
    bad_head = st.integers(1, 9).map(lambda h: f"L0H{h}")  # the tiny model has one head
    duplicate = st.just("L1H0,L1H0")
    spaced = st.just("L1H0, L0H0")
    return st.one_of(malformed, out_of_range, bad_head, duplicate, spaced, st.just(""))


def _not_in(choices: set[str]) -> st.SearchStrategy[str]:
    return _TEXT.filter(lambda s: s not in choices)


@st.composite
def bad_command_lines(draw, ws: dict[str, Path]) -> list[str]:
    run, config, grid = str(ws["run"]), str(ws["config"]), str(ws["grid"])
    under_file = str(ws["blocker"] / "x")
    steps = ck.list_checkpoints(ws["run"])
    bad_step = st.integers(-5, 10**6).filter(lambda s: s not in steps).map(str)
    case = draw(
        st.sampled_from(
            [
                "analyze_nseqs",
                "analyze_out",
                "ablate_heads",
                "ablate_method",
                "ablate_step",
                "ablate_nseqs",
                "patch_kind",
                "patch_corruption",
                "patch_step",
                "patch_nseqs",
                "report_out",
                "report_nseqs",
                "sweep_address",
                "sweep_workers",
                "sweep_executor",
                "sweep_out",
                "train_resume_missing",
                "train_set",
                "train_out",
            ]
        )
    )
    if case == "analyze_nseqs":
        return ["analyze", run, "--n-seqs", draw(_bad_n_seqs())]
    if case == "analyze_out":
        name = draw(st.sampled_from(["a.parquet", "a.csv", "a.txt", "a"]))
        return ["analyze", run, "--out", f"{under_file}/{name}"]
    if case == "ablate_heads":
        return ["ablate", run, "--heads", draw(_bad_heads())]
    if case == "ablate_method":
        return ["ablate", run, "--method", draw(_not_in({"zero", "mean", "resample"}))]
    if case == "ablate_step":
        return ["ablate", run, "--step", draw(bad_step)]
    if case == "ablate_nseqs":
        return ["ablate", run, "--n-seqs", draw(_bad_n_seqs())]
    if case == "patch_kind":
        return ["patch", run, "--kind", draw(_not_in({"heads", "resid", "path", "attribution"}))]
    if case == "patch_corruption":
        return ["patch", run, "--corruption", draw(_not_in({"label", "item", "item_m1", "item_m2"}))]
    if case == "patch_step":
        return ["patch", run, "--step", draw(bad_step)]
    if case == "patch_nseqs":
        return ["patch", run, "--n-seqs", draw(_bad_n_seqs())]
    if case == "report_out":
        return ["report", run, "--out", draw(st.sampled_from([f"{under_file}/r.html", "r.txt", run]))]
    if case == "report_nseqs":
        return ["report", run, "--n-seqs", draw(_bad_n_seqs())]
    if case == "sweep_address":
        return ["sweep", grid, "--address", draw(st.sampled_from(["auto", "127.0.0.1:6379"]))]
    if case == "sweep_workers":
        return ["sweep", grid, "--workers", draw(_bad_n_seqs())]
    if case == "sweep_executor":
        return ["sweep", grid, "--executor", draw(_not_in({"local", "ray"}))]
    if case == "sweep_out":
        return ["sweep", grid, "--out", f"{under_file}/sweep"]
    if case == "train_resume_missing":
        return [
            "train",
            config,
            "--out",
            str(ws["root"] / "missing" / draw(st.sampled_from("abc"))),
            "--resume",
        ]
    if case == "train_set":
        key = draw(st.sampled_from(["task.K", "train.lr", "train.threads", "model.n_heads", "task.eps"]))
        value = draw(st.sampled_from(["-1", "0", "nan", "inf", "1e12", '"x"', "[1]", "", "true"]))
        return ["train", config, "--out", run, "--set", f"{key}={value}"]
    return ["train", config, "--out", f"{under_file}/run"]


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_invalid_command_lines_exit_2_with_one_line_and_leave_the_run_untouched(workspace, data, monkeypatch):
    monkeypatch.chdir(workspace["root"])
    before = _digest(workspace["run"])
    argv = data.draw(bad_command_lines(workspace), label="argv")
    rc, out, err = _call(argv)
    COUNTS["cli"] += 1
    if argv[0] == "train" and "--set" in argv and rc == 0:
        # a --set that happens to restate the run's own config (e.g. threads = 0, the default)
        assert "already holds this complete run" in out, f"{argv} was accepted: {out}"
        assert _digest(workspace["run"]) == before
        return
    _assert_one_line_exit_2(rc, out, err, argv)
    assert _digest(workspace["run"]) == before


def test_fuzz_counts_are_reported(workspace):
    """Runs after the two properties in file order: every example tried was an exit 2 (or the run itself)."""
    if COUNTS["configs"] == 0:
        pytest.skip("run with the property tests")
    assert COUNTS["configs_exit2"] + COUNTS["configs_same"] == COUNTS["configs"]
    print(f"\nfuzz counts: {json.dumps(COUNTS)}")


# ---------------------------------------------------------------------------------------
# kills at random moments

KILL_TOML = (
    TINY_TOML.replace("steps = 6", "steps = 160")
    .replace("ckpt_every = 3", "ckpt_every = 10")
    .replace("eval_every = 3", "eval_every = 20")
)


def _train_cmd(config: Path, out: Path, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "mmicl_interp.cli", "train", str(config), "--out", str(out), "--quiet"]
    return cmd + (["--resume"] if resume else [])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


@pytest.mark.slow
def test_training_killed_at_20_random_moments_resumes_bit_identical(tmp_path):
    config = tmp_path / "kill.toml"
    config.write_text(KILL_TOML)
    whole = tmp_path / "whole"
    proc = subprocess.Popen(
        _train_cmd(config, whole), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _wait_for(whole / ck.MANIFEST, proc)
    started = time.monotonic()
    assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    duration = time.monotonic() - started
    expected = _digest_run(whole)

    rng = random.Random(20261130)
    killed_at = []
    for i in range(20):
        out = tmp_path / f"killed{i}"
        proc = subprocess.Popen(
            _train_cmd(config, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(out / ck.MANIFEST, proc)
        time.sleep(rng.uniform(0.0, duration))
        proc.kill()
        proc.wait(timeout=60)
        killed_at.append(max(ck.list_checkpoints(out), default=-1))
        resume = (out / ck.MANIFEST).exists()
        done = subprocess.run(
            _train_cmd(config, out, resume=resume), cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, f"kill {i}: {done.stderr}"
        assert _digest_run(out) == expected, f"kill {i} (last checkpoint {killed_at[-1]}) differs"
    # the kills must have landed at different points of training, not all before or after it
    assert len(set(killed_at)) >= 4, killed_at
    print(f"\nkilled after checkpoints: {killed_at}")


def _digest_run(run: Path) -> dict[str, str]:
    """Checkpoint tensors and metrics rows: what must match after a resume.

    Tensors, not file bytes: safetensors writes its metadata map in no fixed order.
    """
    state = {}
    for step in ck.list_checkpoints(run):
        tensors = load_file(ck.ckpt_path(run, step))
        h = hashlib.sha256()
        for name in sorted(tensors):
            h.update(name.encode() + tensors[name].numpy().tobytes())
        state[f"ckpt/{step}"] = h.hexdigest()
    state["metrics"] = json.dumps(ck.read_metrics(run))
    return state
