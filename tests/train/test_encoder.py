"""Pretraining an M2 encoder (kind = "encoder") and loading it into stage 2 (encoder_from)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.train import train
from tests.conftest import tiny_run_config

TASK = {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 200}
TRAIN = {"steps": 12, "batch_size": 16, "eval_every": 4, "ckpt_log_points": 4, "ckpt_every": 6}


def encoder_dict(**model) -> dict:
    return {
        "name": "enc",
        "kind": "encoder",
        "task": dict(TASK),
        "model": {"encoder": "mlp", "encoder_hidden": 32, **model},
        "train": {**TRAIN, "steps": 300, "lr": 1e-2, "eval_every": 100},
    }


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "run"
    train(RunConfig.from_dict(encoder_dict()), path, progress=False)
    return path


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stage1") / "run"
    train(tiny_run_config(model={"n_max": 7}), path, progress=False)
    return path


def stage2_dict(stage1: Path, encoder: Path | str, freeze=("embed", "blocks", "encoder"), **model) -> dict:
    return {
        "name": "stage2",
        "kind": "multimodal",
        "task": dict(TASK, eval_size=64),
        "model": {"n_max": 7, "encoder": "mlp", "encoder_hidden": 32, **model},
        "train": dict(TRAIN),
        "pipeline": {"init_from": str(stage1), "encoder_from": str(encoder), "freeze": list(freeze)},
    }


def test_encoder_pretraining_learns_k2_way_classification(encoder_run):
    rows = [r for r in ck.read_metrics(encoder_run) if r["suite"] == "test"]
    assert rows[0]["accuracy"] < 0.2 and rows[0]["chance"] == pytest.approx(1 / 16)
    assert rows[-1]["accuracy"] > 0.8  # > 12x chance
    assert load_run(encoder_run).model().encoder.W_in.shape == (6, 32)


def test_stage2_loads_the_pretrained_encoder_and_its_m2_means_and_can_freeze_it(
    stage1, encoder_run, tmp_path
):
    train(RunConfig.from_dict(stage2_dict(stage1, encoder_run)), tmp_path / "s2", progress=False)
    enc = load_file(ck.ckpt_path(encoder_run, 300))
    first, last = (load_file(ck.ckpt_path(tmp_path / "s2", s)) for s in (0, 12))
    for name in (k for k in enc if k.startswith("encoder.")):
        assert torch.equal(first[name], enc[name]) and torch.equal(last[name], enc[name])
    assert torch.equal(load_run(tmp_path / "s2").task.m2_means, load_run(encoder_run).task.m2_means)
    assert not torch.equal(first["projector.W_in"], last["projector.W_in"])


def test_unfrozen_encoder_trains_in_stage2(stage1, encoder_run, tmp_path):
    data = stage2_dict(stage1, encoder_run, freeze=("embed", "blocks"))
    train(RunConfig.from_dict(data), tmp_path / "s2", progress=False)
    first, last = (load_file(ck.ckpt_path(tmp_path / "s2", s)) for s in (0, 12))
    assert not torch.equal(first["encoder.W_in"], last["encoder.W_in"])


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"model": {"encoder_hidden": 16}}, "model.encoder_hidden"),
        ({"task": {"K2": 32}}, "task.K2"),
        ({"model": {"encoder": "none"}}, "model.encoder"),
        ({"encoder_is_stage1": True}, "pipeline.encoder_from"),
    ],
)
def test_bad_encoder_settings_name_the_field(stage1, encoder_run, tmp_path, changes, field):
    data = stage2_dict(stage1, stage1 if changes.get("encoder_is_stage1") else encoder_run)
    for section in ("model", "task"):
        data[section].update(changes.get(section, {}))
    with pytest.raises(ConfigError) as err:
        train(RunConfig.from_dict(data), tmp_path / "x", progress=False)
    assert err.value.field == field


def test_encoder_run_needs_an_encoder():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(encoder_dict(encoder="none"))
    assert err.value.field == "model.encoder"
