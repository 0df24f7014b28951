"""Issue 22, "Nothing duplicated, nothing overwritten, no traceback".

Bad input: one line naming the field and the allowed values, exit 2, before any work. Nothing
lost: one writer per run folder, metrics without duplicate rows, atomic writes, a failed write
(disk full, permission) reported in one line saying what was kept, tables that follow the
checkpoints there are and keep a run's id when its folder is renamed. The last test feeds
random faults to train, analyze and report (hypothesis).

Real-model cases (knockout files, offline hub) are in ``tests/real/test_real_outputs.py``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mmicl_interp import checkpoints as ck
from mmicl_interp import io as mio
from mmicl_interp.analyses.tables import read_table, table_runs
from mmicl_interp.cli import main
from mmicl_interp.config import load_config
from mmicl_interp.io import LOCK_FILE, MmiclWarning, run_lock
from mmicl_interp.runs import load_run
from mmicl_interp.train.trainer import INTERRUPT_ENV, KILL_ENV, train
from tests.conftest import TINY_TOML
from tests.test_run_identity import copy_run

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "checkpoints" / "example"
TINY = TINY_TOML.replace("steps = 6", "steps = 12")


# ---------------------------------------------------------------- helpers
@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run many times faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def one_line(capsys) -> str:
    """stderr holds exactly one line and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as done:  # pragma: no cover - main returns argparse's status
        return done.code


def tiny_toml(folder: Path, text: str = TINY) -> Path:
    path = folder / "tiny.toml"
    path.write_text(text)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_example(parent: Path, name: str = "run", steps=(0, 500, 1000)) -> Path:
    return copy_run(parent, name, steps)


class FailingTemp:
    """Stands in for ``tempfile`` inside :mod:`mmicl_interp.io`: the ``at``-th (0-based) temporary
    file it is asked for raises ``error`` (an OSError errno, or KeyboardInterrupt for a kill);
    every atomic write, and the writability probe, makes one."""

    def __init__(self, at: int, error: int | type[BaseException]):
        self.at, self.error, self.calls = at, error, 0

    def mkstemp(self, *args, **kwargs):
        call, self.calls = self.calls, self.calls + 1
        if call == self.at:
            if isinstance(self.error, int):
                folder = kwargs.get("dir", "")
                raise OSError(self.error, os.strerror(self.error), str(folder))
            raise self.error()
        return tempfile.mkstemp(*args, **kwargs)


def tiny_config():
    """The config of :data:`TINY` (what ``mmicl train tiny.toml`` trains)."""
    folder = Path(tempfile.mkdtemp())
    try:
        return load_config(tiny_toml(folder))
    finally:
        shutil.rmtree(folder)


def train_stopped_at(out: Path, step: int) -> None:
    """Train the tiny config into ``out`` and stop it (Ctrl-C) right after ``step``."""
    os.environ[INTERRUPT_ENV] = str(step)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(), out, progress=False)
    finally:
        del os.environ[INTERRUPT_ENV]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> Path:
    """The tiny run (12 steps) trained without interruption: the reference."""
    out = tmp_path_factory.mktemp("whole") / "run"
    train(tiny_config(), out, progress=False)
    return out


def same_as_whole(out: Path, whole: Path) -> None:
    assert ck.read_metrics(out) == ck.read_metrics(whole)
    assert ck.list_checkpoints(out) == ck.list_checkpoints(whole)
    last = ck.list_checkpoints(whole)[-1]
    a, b = ck.read_weights(ck.ckpt_path(out, last)), ck.read_weights(ck.ckpt_path(whole, last))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- 1. one writer per run folder
def test_a_second_trainer_on_a_folder_being_written_exits_2_naming_the_holder(tmp_path, capsys):
    cfg = tiny_toml(tmp_path)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--set", "train.steps=6", "--quiet"]) == 0
    before = snapshot(out)
    with run_lock(out, command="train"):  # another trainer writes the folder (a flock conflicts per open)
        capsys.readouterr()
        assert main(["train", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 2
        line = one_line(capsys)
        assert f"pid {os.getpid()} on host " in line and "--out" in line and "--resume" in line
        assert {k: v for k, v in snapshot(out).items() if k != LOCK_FILE} == before
    assert not (out / LOCK_FILE).exists()  # the holder removes it when done
    assert snapshot(out) == before


def test_a_lock_left_by_a_killed_trainer_is_taken_over_and_the_run_resumes_exactly(
    tmp_path, capsys, whole_run
):
    out = tmp_path / "run"
    cfg = tiny_toml(tmp_path)
    script = (
        "from mmicl_interp.config import load_config\n"
        "from mmicl_interp.train.trainer import train\n"
        f"train(load_config({str(cfg)!r}), {str(out)!r}, progress=False)\n"
    )
    env = {**os.environ, KILL_ENV: "5"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()
    holder = json.loads((out / LOCK_FILE).read_text())  # the killed process left its record
    lines: list[str] = []
    train(tiny_config(), out, resume=True, progress=False, log=lines.append)
    assert any(f"took over the lock of {out} left by pid {holder['pid']}" in line for line in lines)
    assert not (out / LOCK_FILE).exists()
    same_as_whole(out, whole_run)


def test_duplicate_metrics_rows_warn_and_keep_the_last_and_resume_rewrites_them(tmp_path, whole_run):
    out = tmp_path / "run"
    train_stopped_at(out, 7)
    rows = ck.read_metrics(out)
    # a second writer appended rows again (as two trainers on one folder did before the lock)
    twice = [*rows, *[{**r, "accuracy": 0.5} for r in rows[:3]]]
    (out / ck.METRICS).write_text("".join(json.dumps(r) + "\n" for r in twice))
    with pytest.warns(MmiclWarning, match="3 duplicate .step, suite. rows; kept the last of each"):
        table = load_run(out).metrics()
    assert len(table) == len(rows) and not table.duplicated(["step", "suite"]).any()
    assert (table.head(3)["accuracy"] == 0.5).all()  # the last copy, in the first one's place
    # rows written twice by two trainers are equal (training is deterministic): resume drops them
    (out / ck.METRICS).write_text("".join(json.dumps(r) + "\n" for r in [*rows, *rows[:3]]))
    train(tiny_config(), out, resume=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MmiclWarning)
        same_as_whole(out, whole_run)  # no duplicates left, and no warning


def test_resume_on_an_empty_folder_starts_the_run_and_says_so(tmp_path, capsys):
    cfg = tiny_toml(tmp_path)
    out = tmp_path / "run"
    out.mkdir()  # what a run killed before its first save leaves
    (out / LOCK_FILE).write_text('{"pid": 1, "host": "gone"}')  # and its lock record
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("nothing to resume in") == 1 and "starting the run" in printed
    assert ck.list_checkpoints(out)[-1] == 12
    # a folder that does not exist is still refused (a typo), and none is made
    missing = tmp_path / "missing"
    assert main(["train", str(cfg), "--out", str(missing), "--resume", "--quiet"]) == 2
    assert "drop --resume" in one_line(capsys) and not missing.exists()


# ---------------------------------------------------------------- 2. outputs checked before the work
def test_a_config_name_that_leaves_the_checkpoints_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_toml(tmp_path)
    for name in ("../../x", "a/b", "..", ".hidden", "x y"):
        assert main(["train", str(cfg), "--set", f'name="{name}"', "--quiet"]) == 2
        line = one_line(capsys)
        assert line.startswith("mmicl: error: name: ") and "plain folder name" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


@pytest.mark.parametrize("command", ["analyze", "report", "ablate"])
def test_an_unwritable_output_is_refused_before_any_scoring(tmp_path, capsys, monkeypatch, command):
    run = copy_example(tmp_path)
    before = snapshot(run)
    # the probe write fails, as on a read-only file system (os.access says yes to root)
    monkeypatch.setattr(mio, "tempfile", FailingTemp(0, errno.EROFS))
    monkeypatch.setattr(type(load_run(run)), "model", lambda *a, **k: pytest.fail("scored before checking"))
    argv = [command, str(run), "--n-seqs", "8", "--quiet"]
    if command != "ablate":
        argv += ["--out", str(tmp_path / "out" / ("t.parquet" if command == "analyze" else "r.html"))]
    assert code(argv) == 2
    line = one_line(capsys)
    assert "cannot write" in line and "Read-only file system" in line
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["analyze", "report", "ablate"])
def test_too_little_free_space_is_refused_before_any_scoring(tmp_path, capsys, monkeypatch, command):
    run = copy_example(tmp_path)
    before = snapshot(run)
    monkeypatch.setattr(mio, "free_bytes", lambda folder: 1000)
    monkeypatch.setattr(type(load_run(run)), "model", lambda *a, **k: pytest.fail("scored before checking"))
    assert code([command, str(run), "--n-seqs", "8", "--quiet"]) == 2
    line = one_line(capsys)
    assert "not enough disk space" in line and "needs about" in line and "free under" in line
    assert snapshot(run) == before


def test_a_full_disk_during_training_is_one_line_saying_what_was_kept(
    tmp_path, capsys, monkeypatch, whole_run
):
    cfg = tiny_toml(tmp_path)
    out = tmp_path / "run"
    # writes: probe, manifest, metrics, task, manifest, checkpoint 0, train state, manifest, ...
    monkeypatch.setattr(mio, "tempfile", FailingTemp(12, errno.ENOSPC))
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 2
    line = one_line(capsys)
    assert "No space left on device (disk full)" in line and "kept in" in line
    assert f"--out {out} --resume" in line
    kept = ck.list_checkpoints(out)
    assert kept and all(ck.verify_file(ck.ckpt_path(out, s)) for s in kept)
    monkeypatch.undo()
    train(tiny_config(), out, resume=True, progress=False)
    same_as_whole(out, whole_run)


def test_a_full_disk_while_analysing_keeps_the_table_of_its_last_save(tmp_path, capsys, monkeypatch):
    run = copy_example(tmp_path)
    table = tmp_path / "t.parquet"
    assert main(["analyze", str(run), "--out", str(table), "--n-seqs", "8", "--quiet"]) == 0
    saved = table.read_bytes()
    shutil.copy(EXAMPLE / "ckpt" / "step_0000800.safetensors", run / "ckpt")  # one more checkpoint
    monkeypatch.setattr(mio, "tempfile", FailingTemp(1, errno.ENOSPC))  # the probe passes, the save fails
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(table), "--quiet"]) == 2
    line = one_line(capsys)
    assert "disk full" in line and "keeps what it held at its last save (3 of 4 checkpoints" in line
    assert table.read_bytes() == saved


def test_report_of_a_run_without_checkpoints_is_one_line(tmp_path, capsys):
    run = copy_example(tmp_path, steps=())
    shutil.rmtree(run / "ckpt")
    for command in ("report", "ablate", "patch", "analyze"):
        assert code([command, str(run), "--quiet"]) == 2
        line = one_line(capsys)
        assert "has no checkpoint yet" in line and "--resume" in line
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "metrics.jsonl", "task.safetensors"]


# ---------------------------------------------------------------- 3. bounds on sizes and seeds
BIG = str(10**20)


@pytest.mark.parametrize(
    ("argv", "field", "allowed"),
    [
        (["analyze", "RUN", "--n-seqs", "1000000000"], "--n-seqs", "[1, 100000]"),
        (["ablate", "RUN", "--n-seqs", "1000000000"], "--n-seqs", "[1, 100000]"),
        (["patch", "RUN", "--n-seqs", "1000000000"], "--n-seqs", "[1, 100000]"),
        (["report", "RUN", "--n-seqs", "1000000000"], "--n-seqs", "[1, 100000]"),
        (["ablate", "RUN", "--seed", BIG, "--method", "resample"], "--seed", "[0, 9223372036854775807]"),
        (["patch", "RUN", "--seed", BIG], "--seed", "[0, 9223372036854775807]"),
        (["ablate", "RUN", "--seed", "-1"], "--seed", "[0, 9223372036854775807]"),
        (["heads", "m", "--prompts", "text", "--seed", BIG], "--seed", "[0, 9223372036854775807]"),
        (["heads", "m", "--prompts", "text", "--n-prompts", "1000000000"], "--n-prompts", "[1, 100000]"),
        (["heads", "m", "--prompts", "text", "--shots", "1000"], "--shots", "[1, 64]"),
        (["heads", "m", "--prompts", "text", "--ways", "1"], "--ways", "[2, 64]"),
        (["heads", "m", "--prompts", "text", "--batch-size", "0"], "--batch-size", "[1, 1024]"),
        (["heads", "m", "--prompts", "text", "--top-k", "-1"], "--top-k", "[0, 10000]"),
        (["knockout", "m", "--prompts", "text", "--top-k", "2", "--n-random", BIG], "--n-random", "[10, "),
        (["sweep", "GRID", "--workers", "1000000"], "--workers", "[1, 1024]"),
        (["train", "TINY", "--set", f"train.seed={BIG}"], "train.seed", "[0, 9223372036854775807]"),
        (["train", "TINY", "--set", f"task.seed={BIG}"], "task.seed", "[0, 9223372036854775807]"),
        (["train", "TINY", "--set", f"task.eval_seed={BIG}"], "task.eval_seed", "[0, 9223372036854775807]"),
        (["train", "TINY", "--set", f"model.seed={BIG}"], "model.seed", "[0, 9223372036854775807]"),
        (["train", "TINY", "--set", "train.steps=100000000"], "train.steps", "[1, 9999999]"),
    ],
)
def test_every_size_and_seed_has_bounds_named_in_one_line(
    tmp_path, capsys, monkeypatch, argv, field, allowed
):
    monkeypatch.chdir(tmp_path)
    run = copy_example(tmp_path)
    names = {"RUN": str(run), "TINY": str(tiny_toml(tmp_path)), "GRID": str(tmp_path / "grid.toml")}
    (tmp_path / "grid.toml").write_text('base = "tiny.toml"\n[grid]\n"train.seed" = [0, 1]\n')
    before = snapshot(tmp_path)
    assert code([names.get(a, a) for a in argv] + ["--quiet"]) == 2
    line = one_line(capsys)
    assert field in line and allowed in line
    assert snapshot(tmp_path) == before  # nothing written


def test_sequences_beyond_the_memory_are_refused_with_the_range(tmp_path, capsys, monkeypatch):
    import mmicl_interp.config as config_module

    run = copy_example(tmp_path)
    monkeypatch.setattr(config_module, "available_memory", lambda: 200_000_000)
    assert code(["ablate", str(run), "--n-seqs", "20000", "--quiet"]) == 2
    line = one_line(capsys)
    limit = int(re.search(r"must be an integer in \[1, (\d+)\] for this run on this machine", line).group(1))
    assert 100 < limit < 20000 and "kB per sequence" in line and "0.2 GB of memory available" in line
    assert not (run / "reports").exists()


def test_a_seed_at_the_bound_works(tmp_path):
    out = tmp_path / "run"
    top = str(2**63 - 1)
    argv = ["train", str(tiny_toml(tmp_path)), "--out", str(out), "--quiet", "--set", "train.steps=2"]
    for key in ("train.seed", "task.seed", "model.seed", "task.eval_seed"):
        argv += ["--set", f"{key}={top}"]
    assert main(argv) == 0
    assert main(["ablate", str(out), "--method", "resample", "--seed", top, "--n-seqs", "8", "--quiet"]) == 0


# ---------------------------------------------------------------- 4. tables follow the checkpoints
def test_rows_of_a_deleted_checkpoint_are_dropped_with_a_warning(tmp_path, capsys):
    run = copy_example(tmp_path)
    assert main(["analyze", str(run), "--n-seqs", "8", "--quiet"]) == 0
    (run / "ckpt" / "step_0000500.safetensors").unlink()
    capsys.readouterr()
    assert main(["analyze", str(run), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "analysed 0 checkpoints (2 already analysed, skipped)" in captured.out
    warning = captured.err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("mmicl: warning: ")
    assert "1 checkpoint(s) no longer in" in warning[0] and "(step 500); dropped them" in warning[0]
    table = read_table(run / "analysis.parquet")
    assert sorted(table["step"].unique()) == [0, 1000]


def test_the_report_counts_the_checkpoints_there_are(tmp_path, capsys):
    run = copy_example(tmp_path)
    assert main(["analyze", str(run), "--n-seqs", "8", "--quiet"]) == 0
    (run / "ckpt" / "step_0000500.safetensors").unlink()
    capsys.readouterr()
    assert main(["report", str(run), "--n-seqs", "8", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "(step 500); dropped them" in captured.err
    page = (run / "report.html").read_text()
    assert "n = 2 checkpoints" in page and "n = 3 checkpoints" not in page
    ablation = page[page.index("Ablation table") :]
    ablation = ablation[: ablation.index("</table>")]
    assert "NA&gt;" not in ablation and "<NA>" not in ablation  # its run and step are named


def test_a_renamed_run_keeps_its_id_and_rows(tmp_path, capsys):
    run = copy_example(tmp_path, "t1")
    shared = tmp_path / "shared.parquet"
    for out in (run / "analysis.parquet", shared):
        assert main(["analyze", str(run), "--out", str(out), "--n-seqs", "8", "--quiet"]) == 0
    own_before, shared_before = read_table(run / "analysis.parquet"), read_table(shared)
    renamed = run.rename(tmp_path / "t9")
    capsys.readouterr()
    for out in (renamed / "analysis.parquet", shared):
        assert main(["analyze", str(renamed), "--out", str(out), "--quiet"]) == 0
        printed = capsys.readouterr().out
        assert "under id t1, its id before its folder was renamed or copied to t9" in printed
        assert "analysed 0 checkpoints (3 already analysed, skipped)" in printed
    pd.testing.assert_frame_equal(read_table(renamed / "analysis.parquet"), own_before)
    pd.testing.assert_frame_equal(read_table(shared), shared_before)
    assert set(table_runs(shared)) == {"t1"}
    # a copy analysed beside its (still present) original into a shared table is a run of its own
    copy = shutil.copytree(renamed, tmp_path / "t2")
    assert main(["analyze", str(copy), "--out", str(shared), "--n-seqs", "8", "--quiet"]) == 0
    assert set(read_table(shared)["run"]) == {"t1", "t2"}


# ---------------------------------------------------------------- 6. README numbers; piped tables
def _readme_row(label: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^\| {re.escape(label)}[^|]*\| ([^|]+) \|$", text, flags=re.M)
    assert match, f"README has no example-run row starting {label!r}"
    return match.group(1)


def test_readme_example_numbers_are_what_the_commands_give(tmp_path, capsys):
    """The shipped example run's ablation and path-patching rows of README.md, recomputed the way
    the README says (``mmicl ablate checkpoints/example --heads L1H0`` and ``mmicl patch ...
    --kind path``, default options), to the printed precision."""
    run = copy_example(tmp_path, steps=(1000,))
    for head in ("L1H0", "L0H0"):
        assert main(["ablate", str(run), "--heads", head, "--quiet"]) == 0
        report = run / "reports" / f"ablate_step1000_mean_{head}_seed0_n1000.json"
        rows = json.loads(report.read_text())["rows"]
        acc = {r["suite"]: r for r in rows if r["metric"] == "accuracy"}
        got = (
            f"{acc['icl']['clean']:.3f} -> {acc['icl']['value']:.3f} / "
            f"{acc['iwl']['clean']:.3f} -> {acc['iwl']['value']:.3f}"
        )
        assert _readme_row(f"mean-ablating {head}") == got
        assert all(r["run"] == "run" and r["step"] == 1000 for r in rows)  # not <NA>
    assert main(["patch", str(run), "--kind", "path", "--quiet"]) == 0
    rows = json.loads((run / "reports" / "patch_step1000_path_item_seed0_n200.json").read_text())["rows"]
    value = {
        r["metric"][-1]: r["value"]
        for r in rows
        if (r["src_layer"], r["src_head"], r["layer"], r["head"]) == (0, 0, 1, 0)
    }
    got = " / ".join(f"{value[k]:.3f}".replace("-0.000", "0.000") for k in "kqv")
    assert _readme_row("path patching L0H0 -> L1H0") == got


def test_piped_tables_keep_every_number(tmp_path, capsys):
    run = copy_example(tmp_path, steps=(1000,))
    assert main(["ablate", str(run), "--n-seqs", "50"]) == 0
    printed = capsys.readouterr().out
    assert "…" not in printed
    rows = json.loads(next((run / "reports").glob("*.json")).read_text())["rows"]
    for r in rows:
        assert f"{r['delta']:.4f}" in printed and r["suite"] in printed


# ---------------------------------------------------------------- 7. random faults
FAULTS = st.sampled_from([errno.ENOSPC, errno.EACCES, errno.EROFS, KeyboardInterrupt])
FIXTURES_OK = [HealthCheck.function_scoped_fixture]  # each example makes its own folder under tmp_path
FAULT_EXAMPLES = int(os.environ.get("MMICL_FAULT_EXAMPLES", "25"))
"""Examples per fault test (each trains or scores a tiny run: about 2-4 s)."""


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory, whole_run) -> Path:
    """The tiny run with its analysis table (so ``report`` only writes report.html)."""
    run = tmp_path_factory.mktemp("analysed") / "run"
    shutil.copytree(whole_run, run)
    assert main(["analyze", str(run), "--quiet"]) == 0
    return run


def _check_failure(rc: int, err: str) -> None:
    assert rc in (0, 2, 130), err
    if rc:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(("mmicl: error: ", "mmicl: interrupted")), err


def _no_temp_left(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], list(folder.rglob(".*.tmp"))


@settings(max_examples=FAULT_EXAMPLES, deadline=None, suppress_health_check=FIXTURES_OK)
@given(at=st.integers(0, 40), fault=FAULTS, resume_first=st.booleans())
@example(at=0, fault=errno.EROFS, resume_first=False)  # the probe: refused before any work
@example(at=12, fault=errno.ENOSPC, resume_first=False)  # a full disk after a few checkpoints
@example(at=6, fault=KeyboardInterrupt, resume_first=True)  # killed while resuming
@example(at=20, fault=errno.EACCES, resume_first=True)
def test_random_faults_in_train_leave_a_run_that_resumes_exactly(
    tmp_path, capsys, whole_run, at, fault, resume_first
):
    """Train with the ``at``-th temporary file failing (disk full, permission, read-only, Ctrl-C):
    exit 0, 2 or 130 with one line; every file left is whole; files of an earlier session are
    untouched; ``--resume`` then ends exactly as the uninterrupted run."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    cfg = tiny_toml(work)
    out = work / "run"
    before: dict[str, str] = {}
    if resume_first:  # a run stopped at step 7, resumed under a new fault
        train_stopped_at(out, 7)
        before = {k: v for k, v in snapshot(out).items() if k.startswith("ckpt/") or k == ck.TASK}
    capsys.readouterr()
    fake = FailingTemp(at, fault)
    mio.tempfile = fake
    try:
        argv = ["train", str(cfg), "--out", str(out), "--quiet"] + (["--resume"] if resume_first else [])
        rc = main(argv)
    finally:
        mio.tempfile = tempfile
    _check_failure(rc, capsys.readouterr().err)
    assert rc == 0 or fake.calls > at
    if out.exists():
        _no_temp_left(out)
        after = snapshot(out)
        assert all(after.get(k) == v for k, v in before.items())  # earlier files untouched
        for step in ck.list_checkpoints(out):
            ck.verify_file(ck.ckpt_path(out, step))
    if rc != 0 and (out / ck.MANIFEST).is_file():
        train(tiny_config(), out, resume=True, progress=False)
    if rc != 0 and not (out / ck.MANIFEST).is_file():
        assert not out.exists() or not [p for p in out.iterdir() if p.name != LOCK_FILE]
        train(tiny_config(), out, progress=False)
    same_as_whole(out, whole_run)


@settings(max_examples=FAULT_EXAMPLES, deadline=None, suppress_health_check=FIXTURES_OK)
@given(at=st.integers(0, 6), fault=FAULTS, command=st.sampled_from(["analyze", "report"]))
@example(at=1, fault=errno.ENOSPC, command="analyze")  # the table's save
@example(at=0, fault=errno.EROFS, command="report")  # the probe
@example(at=1, fault=KeyboardInterrupt, command="report")  # killed writing report.html
def test_random_faults_in_analyze_and_report_change_no_file_of_the_run(
    tmp_path, capsys, analysed_run, at, fault, command
):
    """analyze (with one checkpoint to score) and report under a failing write: exit 0, 2 or 130
    with one line; a failed command leaves every file of the run as it was."""
    run = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    shutil.copytree(analysed_run, run)
    if command == "analyze":  # a checkpoint the table does not hold yet
        table = read_table(run / "analysis.parquet")
        last = int(table["step"].max())
        from mmicl_interp.analyses.tables import write_table

        path = run / "analysis.parquet"
        write_table(table[table["step"] != last], path, table_runs(path))
    before = snapshot(run)
    capsys.readouterr()
    fake = FailingTemp(at, fault)
    mio.tempfile = fake
    try:
        rc = main([command, str(run), "--quiet"] + (["--n-seqs", "16"] if command == "report" else []))
    finally:
        mio.tempfile = tempfile
    _check_failure(rc, capsys.readouterr().err)
    _no_temp_left(run)
    if rc != 0:
        assert snapshot(run) == before
    else:
        assert fake.calls <= at
