import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.io import CorruptFileError
from mmicl_interp.train import train
from tests.conftest import icl_run_config, tiny_run_config

REPO = Path(__file__).resolve().parents[2]


def _write_toml(path: Path, config: RunConfig) -> Path:
    lines = [f'name = "{config.name}"']
    for section, values in config.to_dict().items():
        if not isinstance(values, dict):
            continue
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    tomllib.loads(path.read_text())
    return path


def _killed_at(tmp_path: Path, config: RunConfig, step: int) -> Path:
    """``mmicl train`` of ``config`` into tmp_path/killed, SIGKILLed right after ``step``."""
    cfg_path = _write_toml(tmp_path / "tiny.toml", config)
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-m", "mmicl_interp.cli", "train", str(cfg_path), "--out", str(killed), "--quiet"],
        env={**os.environ, "MMICL_TEST_KILL_AT_STEP": str(step)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    return killed


def test_run_directory_holds_manifest_task_checkpoints_and_metrics(tmp_path):
    config = tiny_run_config()
    result = train(config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"] == config.to_dict()
    assert manifest["schedule"]["checkpoints"] == ck.list_checkpoints(run)
    assert (run / "task.safetensors").is_file()
    rows = ck.read_metrics(run)
    assert {r["suite"] for r in rows} >= {"test", "icl", "icl_flip", "iwl"}
    assert {"step", "suite", "accuracy", "loss", "chance"} <= set(rows[0])
    assert set(result.final_metrics) >= {"icl", "iwl"}
    assert not list(run.rglob("*.tmp"))


def test_same_config_and_seed_give_identical_metrics_and_weights(tmp_path):
    config = tiny_run_config()
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", progress=False)
    assert ck.read_metrics(tmp_path / "a") == ck.read_metrics(tmp_path / "b")
    for step in ck.list_checkpoints(tmp_path / "a"):
        wa = load_file(ck.ckpt_path(tmp_path / "a", step))
        wb = load_file(ck.ckpt_path(tmp_path / "b", step))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_other_seed_gives_other_weights(tmp_path):
    train(tiny_run_config(), tmp_path / "a", progress=False)
    train(tiny_run_config(train={"seed": 1}), tmp_path / "b", progress=False)
    wa = load_file(ck.ckpt_path(tmp_path / "a", 12))
    wb = load_file(ck.ckpt_path(tmp_path / "b", 12))
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def _assert_resume_is_the_whole_run(config: RunConfig, stopped: Path, whole: Path) -> None:
    """Resume ``stopped``, train ``config`` uninterrupted into ``whole``: the same metrics,
    checkpoints and weights, bit for bit."""
    train(config, stopped, resume=True, progress=False)
    train(config, whole, progress=False)
    assert ck.read_metrics(stopped) == ck.read_metrics(whole)
    assert ck.list_checkpoints(stopped) == ck.list_checkpoints(whole)
    for step in ck.list_checkpoints(stopped):
        a, b = load_file(ck.ckpt_path(stopped, step)), load_file(ck.ckpt_path(whole, step))
        assert all(torch.equal(a[k], b[k]) for k in a), f"weights differ at step {step}"


def test_killed_run_resumes_to_exactly_the_uninterrupted_weights_and_metrics(tmp_path):
    config = tiny_run_config(model={"mlp": "gelu"})
    killed = _killed_at(tmp_path, config, 9)
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    assert max(ck.list_checkpoints(killed)) < 12
    with pytest.raises(ConfigError, match="--resume"):
        train(config, killed, progress=False)
    _assert_resume_is_the_whole_run(config, killed, tmp_path / "whole")


def test_output_directory_holding_a_different_run_is_refused_naming_the_field(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match=r"task\.K: 64 -> 128"):
        train(tiny_run_config(task={"K": 128}), tmp_path / "run", progress=False)


def test_complete_run_is_not_retrained(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    again = train(tiny_run_config(), tmp_path / "run", progress=False)
    assert again.already_complete and again.steps_trained == 0


def test_load_run_gives_models_at_every_checkpoint_and_the_metrics_table(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.complete and run.steps[0] == 0 and run.steps[-1] == 12
    m0, m12 = run.model(0), run.model()
    assert not torch.equal(m0.W_U, m12.W_U)
    table = run.metrics()
    assert list(table.columns) == ["step", "suite", "accuracy", "loss", "chance"]
    suites = run.suites()
    assert suites["icl"].inputs.shape == (64, 9, 8)
    missing = min(set(range(13)) - set(run.steps))
    with pytest.raises(ValueError, match="available"):
        run.model(missing)


def test_truncated_checkpoint_is_reported_by_path(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    path = ck.ckpt_path(tmp_path / "run", 12)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CorruptFileError, match="step_0000012.safetensors"):
        load_run(tmp_path / "run").model(12)


def test_garbage_checkpoint_is_reported_by_path(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    path = ck.ckpt_path(tmp_path / "run", 0)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CorruptFileError, match="step_0000000"):
        load_run(tmp_path / "run").model(0)


def test_torn_last_metrics_line_is_skipped_but_a_torn_middle_line_is_an_error(tmp_path):
    train(tiny_run_config(), tmp_path / "run", progress=False)
    metrics = tmp_path / "run" / "metrics.jsonl"
    n = len(ck.read_metrics(tmp_path / "run"))
    metrics.write_text(metrics.read_text() + '{"step": 9')
    assert len(ck.read_metrics(tmp_path / "run")) == n
    metrics.write_text('{"step": 9\n' + metrics.read_text())
    with pytest.raises(CorruptFileError, match="metrics.jsonl"):
        ck.read_metrics(tmp_path / "run")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_trains_and_lowers_the_training_loss(tmp_path, optimizer):
    lr = 0.5 if optimizer == "sgd" else 1e-2
    config = tiny_run_config(train={"optimizer": optimizer, "lr": lr, "steps": 40, "eval_every": 20})
    train(config, tmp_path / optimizer, progress=False)
    rows = [r for r in ck.read_metrics(tmp_path / optimizer) if r["suite"] == "test"]
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_icl_emerges_on_a_small_bursty_high_diversity_task(tmp_path):
    """Loose, meaningful threshold: icl (novel classes) from chance to far above 3x chance."""
    config = icl_run_config(
        name="icl-emerges", task={"eval_size": 500}, train={"eval_every": 100, "threads": 2}
    )
    train(config, tmp_path / "run", progress=False)
    icl = {r["step"]: r["accuracy"] for r in ck.read_metrics(tmp_path / "run") if r["suite"] == "icl"}
    chance = 1 / 16
    assert icl[0] < 2 * chance
    assert icl[400] > 0.8 > 3 * chance


def test_run_killed_before_its_first_checkpoint_restarts_from_scratch_on_resume(tmp_path):
    config = tiny_run_config()
    train(config, tmp_path / "whole", progress=False)
    # what a kill right after writing the manifest leaves behind
    broken = tmp_path / "broken"
    train(config, broken, progress=False)
    for path in (broken / "ckpt").iterdir():
        path.unlink()
    (broken / "train_state.safetensors").unlink()
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["status"] = "running"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    train(config, broken, resume=True, progress=False)
    assert ck.read_metrics(broken) == ck.read_metrics(tmp_path / "whole")
    assert ck.list_checkpoints(broken) == ck.list_checkpoints(tmp_path / "whole")


# ---------------------------------------------------------------------- nothing lost, nothing silent
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmicl_interp.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


DIVERGING = {"model": {"norm": "none"}, "train": {"optimizer": "sgd", "lr": 1000.0, "momentum": 0.9}}


def test_nan_loss_stops_training_naming_the_step_and_keeps_only_finite_checkpoints(tmp_path):
    from mmicl_interp.train.trainer import Diverged

    config = tiny_run_config(**DIVERGING)
    run = tmp_path / "run"
    with pytest.raises(Diverged) as err:
        train(config, run, progress=False)
    assert err.value.field == "train.lr"
    assert f"at step {err.value.step}" in err.value.message and "lower train.lr" in err.value.message
    kept = ck.list_checkpoints(run)
    assert kept and err.value.last_step == max(kept) < err.value.step < config.train.steps
    assert f"kept checkpoints up to step {max(kept)}" in err.value.message
    for step in kept:  # no nan checkpoint: every kept weight is finite
        assert all(torch.isfinite(w).all() for w in load_file(ck.ckpt_path(run, step)).values()), step
    assert all(math.isfinite(r["loss"]) for r in ck.read_metrics(run))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "diverged" and manifest["last_step"] == max(kept)
    assert f"step {err.value.step}" in manifest["diverged"]
    # the same config would diverge again: neither a rerun nor --resume trains into that folder
    for resume in (False, True):
        with pytest.raises(ConfigError, match="diverged"):
            train(config, run, resume=resume, progress=False)


def test_cli_reports_divergence_in_one_line_and_exits_2(tmp_path, capsys):
    from mmicl_interp.cli import main

    cfg = _write_toml(tmp_path / "div.toml", tiny_run_config(**DIVERGING))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "train.lr: loss became nan at step" in lines[0], lines


def test_ctrl_c_prints_one_line_exits_130_and_the_resume_is_bit_identical(tmp_path):
    config = tiny_run_config(train={"threads": 1})
    cfg = _write_toml(tmp_path / "tiny.toml", config)
    stopped = tmp_path / "stopped"
    proc = _cli(
        "train", str(cfg), "--out", str(stopped), "--quiet", env={"MMICL_TEST_INTERRUPT_AT_STEP": "9"}
    )
    assert proc.returncode == 130, proc.stderr
    lines = proc.stderr.strip().splitlines()
    kept = max(ck.list_checkpoints(stopped))
    assert kept < 9
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"stopped at step 9; checkpoints up to step {kept} kept in {stopped}" in lines[0]
    assert f"--out {stopped} --resume" in lines[0]
    assert json.loads((stopped / "manifest.json").read_text())["status"] == "running"
    _assert_resume_is_the_whole_run(config, stopped, tmp_path / "whole")


def test_interrupt_names_a_shipped_config_in_the_resume_hint(tmp_path, monkeypatch):
    from mmicl_interp.config import load_config
    from mmicl_interp.io import Interrupted

    config = load_config("default", [])
    config.train.steps, config.task.K, config.task.eval_size = 3, 64, 16  # smaller, no longer "default"
    monkeypatch.setenv("MMICL_TEST_INTERRUPT_AT_STEP", "2")
    hint = r"resume with: mmicl train CONFIG --out .* --resume \(with the same config"
    with pytest.raises(Interrupted, match=hint):
        train(config, tmp_path / "r", progress=False)
    from mmicl_interp.train.trainer import _config_ref

    assert _config_ref(load_config("default", [])) == "default"


def test_run_interrupted_right_after_its_step_0_checkpoint_resumes_without_duplicate_rows(
    tmp_path, monkeypatch
):
    from mmicl_interp.io import Interrupted

    config = tiny_run_config()
    monkeypatch.setenv("MMICL_TEST_INTERRUPT_AT_STEP", "1")  # before step 1's checkpoint
    with pytest.raises(Interrupted, match="stopped at step 1; checkpoints up to step 0 kept"):
        train(config, tmp_path / "stopped", progress=False)
    monkeypatch.delenv("MMICL_TEST_INTERRUPT_AT_STEP")
    assert ck.list_checkpoints(tmp_path / "stopped") == [0]
    train(config, tmp_path / "stopped", resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    rows = ck.read_metrics(tmp_path / "stopped")
    assert len(rows) == len({(r["step"], r["suite"]) for r in rows})  # each (step, suite) once
    assert rows == ck.read_metrics(tmp_path / "whole")


@pytest.mark.slow
def test_sigint_sent_from_outside_during_training_exits_130_and_resumes_bit_identical(tmp_path):
    import signal
    import time

    # one thread: with two, MKL may pick its thread count by load and round evals differently
    config = tiny_run_config(train={"steps": 300, "eval_every": 100, "ckpt_every": 100, "threads": 1})
    cfg = _write_toml(tmp_path / "tiny.toml", config)
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmicl_interp.cli", "train", str(cfg), "--out", str(stopped), "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = ck.ckpt_path(stopped, 1)
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmicl: interrupted: stopped at step"), stderr
    assert ck.list_checkpoints(stopped)[-1] < 300
    train(config, stopped, resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    a, b = load_file(ck.ckpt_path(stopped, 300)), load_file(ck.ckpt_path(tmp_path / "whole", 300))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ck.read_metrics(stopped) == ck.read_metrics(tmp_path / "whole")


def test_resume_of_a_missing_run_directory_is_refused_in_one_line(tmp_path, capsys):
    from mmicl_interp.cli import main

    cfg = _write_toml(tmp_path / "tiny.toml", tiny_run_config())
    missing = tmp_path / "missing"
    assert main(["train", str(cfg), "--out", str(missing), "--resume", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"nothing to resume in {missing}" in lines[0] and "drop --resume" in lines[0]
    assert not (missing / "manifest.json").exists() and not ck.list_checkpoints(missing)


def test_resume_auto_starts_a_missing_run_and_continues_an_existing_one(tmp_path):
    result = train(tiny_run_config(), tmp_path / "run", resume="auto", progress=False)
    assert result.steps_trained == 12 and not result.already_complete
    assert train(tiny_run_config(), tmp_path / "run", resume="auto", progress=False).already_complete


def test_manifest_records_the_run_id_as_the_folder_name(tmp_path):
    train(tiny_run_config(), tmp_path / "first-try", progress=False)
    manifest = json.loads((tmp_path / "first-try" / "manifest.json").read_text())
    assert manifest["run_id"] == "first-try" and manifest["name"] == "tiny"


def test_train_restores_the_torch_thread_count(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        train(tiny_run_config(train={"threads": 2}), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigError):  # also when training fails
            train(tiny_run_config(train={"threads": 2}, task={"K": 128}), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_progress_off_a_terminal_is_plain_lines_not_a_redrawn_bar(tmp_path, capsys):
    train(tiny_run_config(), tmp_path / "run", progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "tiny: 12/12 step" in err


# ---------------------------------------------------------------------- devices
def test_run_resumed_with_another_device_setting_is_bit_identical_and_records_both(tmp_path, monkeypatch):
    """Device and compile are not the run's identity: resuming with other values continues it."""
    from mmicl_interp.io import Interrupted

    monkeypatch.setenv("MMICL_TEST_INTERRUPT_AT_STEP", "8")
    with pytest.raises(Interrupted):
        train(tiny_run_config(train={"device": "cpu"}), tmp_path / "stopped", progress=False)
    monkeypatch.delenv("MMICL_TEST_INTERRUPT_AT_STEP")
    train(tiny_run_config(train={"device": "auto"}), tmp_path / "stopped", resume=True, progress=False)
    train(tiny_run_config(train={"device": "cpu"}), tmp_path / "whole", progress=False)
    assert ck.read_metrics(tmp_path / "stopped") == ck.read_metrics(tmp_path / "whole")
    wa, wb = (load_file(ck.ckpt_path(tmp_path / r, 12)) for r in ("stopped", "whole"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    manifest = json.loads((tmp_path / "stopped" / "manifest.json").read_text())
    assert manifest["config"]["train"]["device"] == "cpu"  # as the run was made
    assert [(s["from_step"], s["device"]) for s in manifest["trained_on"]] == [(0, "cpu"), (6, "cpu")]


def test_train_loss_row_is_the_mean_of_the_interval_losses(tmp_path):
    """The train row, summed on the device, equals the per-step losses recomputed on the host."""
    from mmicl_interp.model.transformer import ICLTransformer
    from mmicl_interp.train.trainer import make_optimizer

    config = tiny_run_config(train={"device": "cpu", "steps": 6, "eval_every": 3, "ckpt_schedule": "linear"})
    train(config, tmp_path / "run", progress=False)
    rows = [r for r in ck.read_metrics(tmp_path / "run") if r["suite"] == "train"]
    task = load_run(tmp_path / "run").task
    model = ICLTransformer.from_task(config.model, config.task)
    optimizer = make_optimizer(model, config)
    g = torch.Generator().manual_seed(config.train.seed)
    losses, correct = [], []
    for _ in range(6):  # the plain loop, a loss read per step
        batch = task.sample(16, g, max_shift=model.max_shift_for(task.layout.n_ctx))
        logits = model(batch.inputs, batch.pos_shift)
        loss = torch.nn.functional.cross_entropy(logits, batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        correct.append(int((logits.argmax(-1) == batch.targets).sum()))
    assert [r["step"] for r in rows] == [3, 6]
    assert [r["accuracy"] for r in rows] == [sum(correct[:3]) / 48, sum(correct[3:]) / 48]
    assert rows[0]["loss"] == pytest.approx(sum(losses[:3]) / 3, rel=1e-6)
    assert rows[1]["loss"] == pytest.approx(sum(losses[3:]) / 3, rel=1e-6)


def _first_plateau_step(metrics: list[dict], ckpts: list[int], tol: float, min_step: int) -> int | None:
    """The plateau rule written out independently: the first checkpoint >= min_step where the
    icl evals at steps >= 0.8 * s have a fitted rise (or, with two, a difference) below tol."""
    icl = sorted((r["step"], r["accuracy"]) for r in metrics if r["suite"] == "icl")
    for s in sorted(ckpts):
        if s >= max(min_step, 1) and (change := _change_at(icl, s)) is not None and change < tol:
            return s
    return None


def test_stop_plateau_stops_at_the_first_settled_checkpoint_on_the_same_trajectory(tmp_path):
    base = {"steps": 60, "eval_every": 4, "ckpt_schedule": "linear", "ckpt_every": 4}
    whole = tmp_path / "whole"
    train(tiny_run_config(train=base), whole, progress=False)
    metrics = ck.read_metrics(whole)
    icl = [(r["step"], r["accuracy"]) for r in metrics if r["suite"] == "icl"]
    assert len({a for _, a in icl}) > 2, "the icl curve must move for the test to mean anything"
    ckpts = ck.list_checkpoints(whole)
    # a tolerance some checkpoints meet and some do not
    changes = sorted(c for s in ckpts if s >= 20 and (c := _change_at(icl, s)) is not None)
    tol = changes[len(changes) // 2] + 1e-9
    expected = _first_plateau_step(metrics, ckpts, tol, 20)
    assert expected is not None and expected < 60

    stopped = tmp_path / "stopped"
    result = train(
        tiny_run_config(train={**base, "stop_plateau": tol, "stop_min_step": 20}), stopped, progress=False
    )
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stopped"]["step"] == expected
    assert manifest["stopped"]["change"] < tol
    assert max(ck.list_checkpoints(stopped)) == expected == manifest["last_step"]
    assert result.steps_trained == expected and max(r["step"] for r in ck.read_metrics(stopped)) == expected
    assert ck.read_metrics(stopped) == [r for r in metrics if r["step"] <= expected]
    for step in ck.list_checkpoints(stopped):  # stopping early does not change the trajectory
        wa, wb = load_file(ck.ckpt_path(stopped, step)), load_file(ck.ckpt_path(whole, step))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"weights differ at step {step}"
    # complete: a second call does not train on
    assert train(
        tiny_run_config(train={**base, "stop_plateau": tol, "stop_min_step": 20}), stopped, progress=False
    ).already_complete


def _change_at(icl: list[tuple[int, float]], s: int) -> float | None:
    window = [(x, y) for x, y in icl if 0.8 * s <= x <= s]
    if len(window) < 2:
        return None
    if len(window) == 2:
        return abs(window[1][1] - window[0][1])
    xs, ys = [x for x, _ in window], [y for _, y in window]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return abs(slope) * (xs[-1] - xs[0])


def test_stop_plateau_never_stops_before_stop_min_step(tmp_path):
    base = {"steps": 24, "eval_every": 1, "ckpt_schedule": "linear", "ckpt_every": 4, "stop_plateau": 1.0}
    # under tol 1.0 every window of >= 2 evals has settled: the first is at checkpoint 8 (evals 7, 8)
    train(tiny_run_config(train=base), tmp_path / "a", progress=False)
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["stopped"]["step"] == 8
    train(tiny_run_config(train={**base, "stop_min_step": 15}), tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["stopped"]["step"] == 16
    assert ck.list_checkpoints(tmp_path / "b")[-1] == 16


def test_killed_run_with_stop_plateau_resumes_to_the_same_stop(tmp_path):
    base = {
        "steps": 40,
        "eval_every": 4,
        "ckpt_schedule": "linear",
        "ckpt_every": 4,
        "stop_plateau": 1.0,
        "stop_min_step": 16,
    }
    config = tiny_run_config(train=base)
    killed = _killed_at(tmp_path, config, 17)
    train(config, killed, resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    assert ck.read_metrics(killed) == ck.read_metrics(tmp_path / "whole")
    assert (
        ck.list_checkpoints(killed)
        == ck.list_checkpoints(tmp_path / "whole")[: len(ck.list_checkpoints(killed))]
    )
    assert json.loads((killed / "manifest.json").read_text())["stopped"]["step"] == 20


@pytest.mark.parametrize(
    ("field", "value"),
    [("stop_plateau", -0.1), ("stop_plateau", 2.0), ("stop_min_step", 99), ("stop_min_step", 1.5)],
)
def test_bad_stop_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"train.{field}"):
        tiny_run_config(train={field: value})
