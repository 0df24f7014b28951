"""Devices: names, refusals, moving models and batches, ``--device`` on every command.

CPU tests pass the device explicitly (``"cpu"``); tests marked ``cuda`` need a GPU and are
skipped without one. ``meta`` tensors (shapes without data) stand in for a second device where
a test only checks that things move.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError, load_config
from mmicl_interp.device import available_devices, model_device, resolve_device
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.train import train
from mmicl_interp.train.evaluate import suite_logits
from tests.conftest import TINY_TOML, tiny_run_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "checkpoints" / "example"
HAS_CUDA = torch.cuda.is_available()


def needs_cuda(test):
    """Marked ``cuda`` and skipped without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")(test))


no_cuda = pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: cuda is not missing")


@pytest.fixture(scope="module")
def example_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("runs") / "example"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("reports", "report.html", "analysis.parquet"))
    return dst


# ---------------------------------------------------------------------- names and refusals
def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_means_cuda_when_a_gpu_is_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["garbage", "CUDA", "cuda:", "cuda:x", "tpu", "", "cpu:0"])
def test_a_malformed_name_is_refused_naming_the_field_and_the_choices(name):
    with pytest.raises(ConfigError) as err:
        resolve_device(name, "--device")
    assert err.value.field == "--device"
    assert "auto, cpu, cuda, cuda:N or mps" in err.value.message and repr(name) in err.value.message


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:7"])
def test_a_missing_gpu_is_refused_naming_it_and_what_is_available(name):
    with pytest.raises(ConfigError) as err:
        resolve_device(name, "train.device")
    assert err.value.field == "train.device"
    assert err.value.message.startswith(f"{name} is not available")
    assert err.value.message.endswith("available: " + ", ".join(available_devices()))


def test_a_gpu_index_beyond_the_gpus_present_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match=r"cuda:7 is not available here \(2 GPUs\)") as err:
        resolve_device("cuda:7", "--device")
    assert "cuda:0, cuda:1" in err.value.message
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_mps_without_an_apple_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="mps is not available"):
        resolve_device("mps", "--device")


@pytest.mark.parametrize("value", ["garbage", 3, "cuda:-1"])
def test_train_device_is_checked_when_the_config_loads(value):
    with pytest.raises(ConfigError) as err:
        tiny_run_config(train={"device": value})
    assert err.value.field == "train.device"


def test_device_is_a_config_key_with_auto_as_default():
    assert load_config("default").train.device == "auto"
    assert load_config("default", ["train.device=cpu"]).train.device == "cpu"


@no_cuda
def test_train_refuses_a_config_whose_device_is_missing_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="train.device: cuda is not available"):
        train(tiny_run_config(train={"device": "cuda"}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- --device on every command
def _args(command: str, tmp_path: Path) -> list[str]:
    grid = tmp_path / "grid.toml"
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    grid.write_text('base = "tiny.toml"\n[grid]\n"train.seed" = [0]\n')
    return {
        "train": ["train", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run")],
        "analyze": ["analyze", str(EXAMPLE)],
        "ablate": ["ablate", str(EXAMPLE)],
        "patch": ["patch", str(EXAMPLE)],
        "report": ["report", str(EXAMPLE)],
        "sweep": ["sweep", str(grid), "--out", str(tmp_path / "sweep")],
    }[command]


COMMANDS = ["train", "analyze", "ablate", "patch", "report", "sweep"]


@no_cuda
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_exits_2_with_one_line_for_a_missing_device(command, tmp_path, capsys):
    assert main([*_args(command, tmp_path), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("mmicl: error: --device: cuda is not available") and "available: cpu" in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()
    assert not (EXAMPLE / "reports").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_malformed_device_in_one_line(command, tmp_path, capsys):
    assert main([*_args(command, tmp_path), "--device", "gpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmicl: error: --device: must be auto, cpu, cuda, cuda:N or mps; got 'gpu'"]


def test_train_device_cpu_is_recorded_in_the_manifest_and_not_part_of_the_runs_identity(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "tiny.toml"), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["train"]["device"] == "cpu"
    assert [s["device"] for s in manifest["trained_on"]] == ["cpu"]
    # the same run asked for on another device (auto here) is this run, already complete
    assert main(["train", str(tmp_path / "tiny.toml"), "--out", str(out), "--device", "auto", "--quiet"]) == 0
    assert "already holds this complete run" in capsys.readouterr().out


def test_sweep_device_cpu_trains_every_point_there(tmp_path, capsys):
    args = _args("sweep", tmp_path)
    assert main([*args, "--device", "cpu", "--quiet"]) == 0
    manifest = json.loads(next((tmp_path / "sweep").glob("*/manifest.json")).read_text())
    assert manifest["config"]["train"]["device"] == "cpu"


@pytest.mark.parametrize(
    "args",
    [
        ["ablate", "--heads", "L1H0", "--method", "zero", "--n-seqs", "50"],
        ["patch", "--kind", "resid", "--n-seqs", "50"],
    ],
)
def test_ablate_and_patch_run_with_device_cpu(args, example_copy, capsys):
    assert main([args[0], str(example_copy), *args[1:], "--device", "cpu", "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out


def test_analyze_with_device_cpu_gives_the_same_table_as_without(example_copy, tmp_path):
    base = ["analyze", str(example_copy), "--n-seqs", "40", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a.parquet")]) == 0
    assert main([*base, "--out", str(tmp_path / "b.parquet"), "--device", "cpu"]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    )


# ---------------------------------------------------------------------- models and batches move
def test_batch_to_moves_every_tensor_and_is_itself_where_it_already_is(tiny_task, generator):
    batch = tiny_task.sample(8, generator, max_shift=2)
    assert batch.to("cpu") is batch
    moved = batch.to("meta")
    fields = batch.tensors()
    assert set(moved.tensors()) == set(fields) and moved.layout == batch.layout
    for name, tensor in fields.items():
        assert getattr(moved, name).device.type == "meta", name
        assert getattr(moved, name).shape == tensor.shape and getattr(moved, name).dtype == tensor.dtype


def test_cfg_device_follows_the_model(tiny_model):
    assert tiny_model.cfg.device == "cpu" and tiny_model.device == torch.device("cpu")
    tiny_model.to("meta")
    assert tiny_model.cfg.device == "meta" and tiny_model.device.type == "meta"
    assert all(t.device.type == "meta" for t in (*tiny_model.parameters(), *tiny_model.buffers()))
    assert model_device(tiny_model).type == "meta"


def test_run_model_loads_on_the_device_asked_for(example_copy):
    run = load_run(example_copy)
    model = run.model(device="cpu")
    assert model_device(model) == torch.device("cpu") and not model.training
    with pytest.raises(ConfigError, match="device: must be"):
        run.model(device="gpu")


def test_analysis_commands_hand_the_device_to_models_and_suites(example_copy, monkeypatch):
    """``--device`` reaches every model and suite an analysis loads from its run (meta stands in)."""
    import mmicl_interp.device as dev

    monkeypatch.setattr(dev, "resolve_device", lambda name, field="device": torch.device(name or "cpu"))
    plain = load_run(example_copy)
    assert plain.device is None and {b.inputs.device.type for b in plain.suites(10).values()} == {"cpu"}
    run = load_run(example_copy)
    run.device = torch.device("meta")  # what ``--device`` does to the run an analysis is given
    model = run.model(run.steps[0])
    assert model.cfg.device == "meta" and all(p.device.type == "meta" for p in model.parameters())
    assert {b.inputs.device.type for b in run.suites(10).values()} == {"meta"}
    assert run.model(run.steps[0], device="cpu").cfg.device == "cpu"  # an explicit device wins


def test_suite_logits_moves_a_batch_to_the_models_device(tiny_model, tiny_task, generator):
    batch = tiny_task.sample(6, generator)
    expected = suite_logits(tiny_model, batch)  # both on the CPU
    model = ICLTransformer.from_task(tiny_model.model_config, tiny_task.config).to("meta")
    model.check_inputs = False  # its range check reads a value, which meta tensors do not hold
    assert suite_logits(model, batch).device.type == "meta"
    assert expected.shape == (6, tiny_task.config.L)


# ---------------------------------------------------------------------- the training loop
class _SyncCounter:
    """Counts tensor -> Python conversions (each one a host sync on a GPU), except the optimiser's:
    Adam keeps its step count in a host tensor on purpose (not capturable), so reading it waits
    for nothing."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, monkeypatch):
        self.n = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(self_, *args, _original=original, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if f"torch{os.sep}optim{os.sep}" not in caller:
                    self.n += 1
                return _original(self_, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_training_reads_the_device_only_at_eval_and_checkpoint_steps(tmp_path, monkeypatch):
    """5x the steps between the same two eval/checkpoint steps: not one more host sync."""
    counts = {}
    for steps in (8, 40):
        config = tiny_run_config(
            train={"steps": steps, "eval_every": steps, "ckpt_schedule": "list", "device": "cpu"}
        )
        counter = _SyncCounter(monkeypatch)
        train(config, tmp_path / str(steps), progress=False)
        counts[steps] = counter.n
        monkeypatch.undo()
        assert ck.list_checkpoints(tmp_path / str(steps)) == [0, steps]
    assert counts[8] == counts[40], counts


def test_the_first_nan_loss_is_named_by_its_step_however_far_the_next_eval_is(tmp_path):
    """Checked only at eval steps, the bad step is the same as when every step is an eval step."""
    from mmicl_interp.train.trainer import Diverged

    diverging = {"model": {"norm": "none"}}
    named = {}
    for every in (1, 12):
        train_cfg = {"optimizer": "sgd", "lr": 1000.0, "momentum": 0.9, "eval_every": every, "device": "cpu"}
        config = tiny_run_config(model=diverging["model"], train={**train_cfg, "ckpt_schedule": "list"})
        with pytest.raises(Diverged) as err:
            train(config, tmp_path / str(every), progress=False)
        named[every] = err.value.step
        assert "loss became nan" in err.value.message or "loss became inf" in err.value.message
    assert named[1] == named[12] and 0 < named[1] < 12
    # with checks at every step, the weights before the bad step were finite: it is the first one
    assert ck.list_checkpoints(tmp_path / "12") == [0]


# ---------------------------------------------------------------------- CUDA (skipped without a GPU)
@pytest.mark.slow
@needs_cuda
def test_training_on_cuda_learns_icl_on_the_default_config(tmp_path):
    config = load_config("default", ["train.device=cuda"])
    result = train(config, tmp_path / "run", progress=False)
    assert result.final_metrics["icl"] >= 0.9
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["trained_on"][0]["device"].startswith("cuda")
    weights = ck.read_weights(ck.ckpt_path(tmp_path / "run", 1000))
    assert all(w.device.type == "cpu" and w.dtype == torch.float32 for w in weights.values())


@needs_cuda
def test_analyses_on_cuda_match_the_cpu(example_copy, tmp_path, capsys):
    """Attention measures and accuracies (analyze) and head ablation (ablate): CUDA = CPU, atol 1e-4."""
    tables = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.parquet"
        assert (
            main(["analyze", str(example_copy), "--n-seqs", "200", "--out", str(out), "--device", device])
            == 0
        )
        tables[device] = pd.read_parquet(out)
    cpu, gpu = tables["cpu"], tables["cuda"]
    assert len(cpu) == len(gpu) and set(cpu["metric"]) >= {"ih", "accuracy"}
    assert (cpu["value"] - gpu["value"]).abs().max() <= 1e-4
    ablations = {}
    for device in ("cpu", "cuda"):
        copy = tmp_path / f"run_{device}"
        shutil.copytree(example_copy, copy, ignore=shutil.ignore_patterns("reports"))
        assert main(["ablate", str(copy), "--n-seqs", "200", "--device", device, "--quiet"]) == 0
        (report,) = (copy / "reports").glob("ablate_*.json")
        ablations[device] = json.loads(report.read_text())["rows"]
    assert len(ablations["cpu"]) == len(ablations["cuda"])
    for a, b in zip(ablations["cpu"], ablations["cuda"], strict=True):
        for key, value in a.items():
            if isinstance(value, float):
                assert abs(value - b[key]) <= 1e-4, (key, a, b)
            else:
                assert value == b[key]
