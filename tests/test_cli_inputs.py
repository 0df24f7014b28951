"""Bad CLI input exits 2 with one line before any work; Ctrl-C exits 130 with one line.

Issue 9 ("Nothing lost, nothing silent"): counts, head lists, steps, output paths, the
executor's address and encoder runs given to decoder analyses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmicl_interp.cli import main
from tests.conftest import TINY_TOML, copy_example


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory) -> Path:
    """An encoder-pretraining run (``kind = "encoder"``) of 5 steps."""
    out = tmp_path_factory.mktemp("enc") / "enc"
    args = ["train", "mm_encoder", "--out", str(out), "--set", "train.steps=5", "--quiet"]
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["kind"] == "encoder"
    return out


def _one_line(capsys) -> str:
    """stderr must be exactly one line and no traceback; returns it."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _grid(folder: Path) -> Path:
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "configs" / "tiny.toml").write_text(TINY_TOML)
    path = folder / "grid.toml"
    path.write_text('base = "configs/tiny.toml"\n[grid]\n"train.seed" = [0, 1]\n')
    return path


@pytest.mark.parametrize("command", ["ablate", "patch", "report"])
@pytest.mark.parametrize("value", ["-5", "0"])
def test_non_positive_n_seqs_exits_2_naming_the_option(run_copy, capsys, command, value):
    assert main([command, str(run_copy), "--n-seqs", value, "--quiet"]) == 2
    line = _one_line(capsys)
    assert "--n-seqs" in line and "[1, 100000]" in line
    assert not (run_copy / "reports").exists() and not (run_copy / "report.html").exists()


@pytest.mark.parametrize("step", ["9", "-1", "5000"])  # the example run has no such checkpoints
@pytest.mark.parametrize("command", ["ablate", "patch"])
def test_step_must_be_an_existing_checkpoint(run_copy, capsys, command, step):
    assert int(step) not in [int(p.stem.split("_")[1]) for p in (run_copy / "ckpt").iterdir()]
    assert main([command, str(run_copy), "--step", step, "--quiet"]) == 2
    line = _one_line(capsys)
    assert "--step" in line and "1000" in line  # names the option and lists the steps there are


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_sweep_workers_must_be_at_least_one(tmp_path, capsys, workers):
    grid = _grid(tmp_path)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "sw"), "--workers", workers]) == 2
    assert "--workers" in _one_line(capsys)
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize(
    "heads",
    [
        "L1H0, L0H0",  # a space (used to end up in the report's file name)
        "",  # used to mean every head
        "L1H0,",
        "L1H0,,L0H0",
        " L1H0",
        "l1h0",
        "L1H0,L1H0",  # twice
        "L2H0",  # the example model has layers 0..1
        "L0H1",  # and one head per layer
        "1,0",
    ],
)
def test_strict_head_lists(run_copy, capsys, heads):
    assert main(["ablate", str(run_copy), "--heads", heads, "--n-seqs", "8", "--quiet"]) == 2
    line = _one_line(capsys)
    assert "--heads" in line
    assert not (run_copy / "reports").exists()


def test_head_list_error_names_the_format(run_copy, capsys):
    assert main(["ablate", str(run_copy), "--heads", "L1H0; L0H0"]) == 2
    assert "L<layer>H<head>" in _one_line(capsys)


@pytest.fixture
def fresh_run(tmp_path) -> Path:
    run = tmp_path / "example"
    copy_example(run)
    return run


def test_ablate_reruns_with_other_seed_or_n_keep_earlier_reports(fresh_run):
    settings = [("0", "16"), ("1", "16"), ("0", "24")]
    for seed, n in settings:
        args = ["--heads", "L1H0,L0H0", "--method", "resample", "--seed", seed, "--n-seqs", n, "--quiet"]
        assert main(["ablate", str(fresh_run), *args]) == 0
    names = sorted(p.name for p in (fresh_run / "reports").glob("*.json"))
    assert len(names) == len(settings)  # nothing overwritten
    for seed, n in settings:
        report = fresh_run / "reports" / f"ablate_step1000_resample_L1H0-L0H0_seed{seed}_n{n}.json"
        meta = json.loads(report.read_text())["meta"]
        assert (meta["seed"], meta["sequences per suite"]) == (int(seed), int(n))


@pytest.mark.slow  # the first patching call imports TransformerLens's patching (seconds)
def test_patch_reruns_with_other_seed_or_n_keep_earlier_reports(fresh_run):
    settings = [("0", "16"), ("1", "16"), ("1", "24")]
    for seed, n in settings:
        args = ["--kind", "resid", "--seed", seed, "--n-seqs", n, "--quiet"]
        assert main(["patch", str(fresh_run), *args]) == 0
    assert len(list((fresh_run / "reports").glob("*.json"))) == len(settings)
    for seed, n in settings:
        report = fresh_run / "reports" / f"patch_step1000_resid_label_seed{seed}_n{n}.json"
        meta = json.loads(report.read_text())["meta"]
        assert (meta["seed"], meta["icl sequences"]) == (int(seed), int(n))


def test_address_without_ray_executor_is_refused(tmp_path, capsys):
    grid = _grid(tmp_path)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "sw"), "--address", "auto", "--quiet"]) == 2
    line = _one_line(capsys)
    assert "--address" in line and "ray" in line
    assert not (tmp_path / "sw").exists()  # nothing was trained locally


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "file.txt"
    path.write_text("not a folder\n")
    return path


def test_unwritable_out_fails_before_any_work(run_copy, tmp_path, a_file, capsys):
    cases = [
        ["train", "default", "--out", str(a_file / "run")],
        ["report", str(run_copy), "--out", str(a_file / "x.html"), "--quiet"],
        ["sweep", str(_grid(tmp_path)), "--out", str(a_file / "sw"), "--quiet"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        line = _one_line(capsys)
        assert "--out" in line and "file.txt" in line
    assert a_file.read_text() == "not a folder\n"
    assert not (run_copy / "reports").exists()


def test_report_out_under_a_file_in_the_repo_style(run_copy, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# readme\n")
    assert main(["report", str(run_copy), "--out", str(readme / "x.html"), "--quiet"]) == 2
    assert "--out" in _one_line(capsys)


@pytest.mark.parametrize("command", ["ablate", "patch"])
def test_unwritable_reports_folder_fails_before_any_work(tmp_path, capsys, command):
    run = tmp_path / "example"
    copy_example(run)
    (run / "reports").write_text("a file where the reports folder goes\n")
    assert main([command, str(run), "--n-seqs", "8", "--quiet"]) == 2
    line = _one_line(capsys)
    assert "RUN" in line and "reports" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into 0o500 folders")
def test_read_only_out_folder_fails_before_any_work(run_copy, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["report", str(run_copy), "--out", str(locked / "x.html"), "--quiet"]) == 2
        assert "--out" in _one_line(capsys)
        assert main(["train", "default", "--out", str(locked / "run")]) == 2
        assert "--out" in _one_line(capsys)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("command", ["ablate", "patch", "report"])
def test_encoder_runs_are_refused_by_decoder_analyses(encoder_run, capsys, command):
    assert main([command, str(encoder_run), "--n-seqs", "8", "--quiet"]) == 2
    line = _one_line(capsys)
    assert "encoder" in line and "decoder" in line and "mmicl analyze" in line
    assert not (encoder_run / "reports").exists() and not (encoder_run / "report.html").exists()


def test_ctrl_c_in_a_command_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    import mmicl_interp.train.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    assert main(["train", "default", "--out", str(tmp_path / "run")]) == 130
    assert "interrupted" in _one_line(capsys)


def test_ctrl_c_in_a_sweep_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch, capsys):
    import mmicl_interp.sweep as sweep
    from mmicl_interp.sweep.executors import Executor

    class OneThenCtrlC(Executor):
        """Trains the first point here, then Ctrl-C."""

        def map_unordered(self, fn, items):
            items = list(items)
            yield 0, fn(items[0])
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "make_executor", lambda *args: OneThenCtrlC())
    out = tmp_path / "sw"
    assert main(["sweep", str(_grid(tmp_path)), "--out", str(out), "--quiet"]) == 130
    line = _one_line(capsys)
    complete = [
        p.name for p in out.iterdir() if json.loads((p / "manifest.json").read_text())["status"] == "complete"
    ]
    assert complete == ["seed=0"]
    assert "1 of 2 runs are complete" in line and "rerun the same command" in line
    assert not (out / "sweep.parquet").exists()
