"""Stage 1 -> stage 2 (init_from + freeze) and the early-fusion control."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.train import train
from tests.conftest import tiny_run_config, toml_text

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stage1") / "run"
    train(tiny_run_config(model={"n_max": 7}), path, progress=False)
    return path


def stage2_dict(stage1: Path | None, **changes) -> dict:
    data = {
        "name": "stage2",
        "kind": "multimodal",
        "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 64},
        "model": {"n_max": 7},
        "train": {"steps": 12, "batch_size": 16, "eval_every": 4, "ckpt_log_points": 4, "ckpt_every": 6},
        "pipeline": {"init_from": str(stage1), "freeze": ["embed", "blocks"]}
        if stage1
        else {"early_fusion": True},
    }
    for key, value in changes.items():
        section, name = key.split("__")
        data[section][name] = value
    return data


def test_stage2_loads_stage1_decoder_and_task_vectors_and_trains_only_unfrozen_parts(stage1, tmp_path):
    config = RunConfig.from_dict(stage2_dict(stage1))
    train(config, tmp_path / "s2", progress=False)
    s1_weights = load_file(ck.ckpt_path(stage1, 12))
    s2_first = load_file(ck.ckpt_path(tmp_path / "s2", 0))
    s2_last = load_file(ck.ckpt_path(tmp_path / "s2", 12))
    for name, value in s1_weights.items():
        assert torch.equal(s2_first[name], value), f"{name} not loaded from stage 1"
        if name.startswith("blocks."):
            assert torch.equal(s2_last[name], value), f"frozen {name} changed"
    assert not torch.equal(s2_last["W_U"], s1_weights["W_U"])  # read-out trains
    assert not torch.equal(s2_last["projector.W_in"], s2_first["projector.W_in"])  # projector trains
    s1_task, s2_task = load_run(stage1).task, load_run(tmp_path / "s2").task
    assert torch.equal(s2_task.label_vectors, s1_task.label_vectors)
    assert torch.equal(s2_task.m1_means, s1_task.class_means)
    manifest = json.loads((tmp_path / "s2" / "manifest.json").read_text())
    assert manifest["init_from"] == str(stage1.resolve()) and manifest["init_step"] == 12
    assert {r["suite"] for r in ck.read_metrics(tmp_path / "s2")} >= {"icl", "icl_m1_only", "icl_m2_only"}


def test_early_fusion_trains_everything_from_scratch(tmp_path):
    config = RunConfig.from_dict(stage2_dict(None))
    train(config, tmp_path / "ef", progress=False)
    first, last = (load_file(ck.ckpt_path(tmp_path / "ef", s)) for s in (0, 12))
    assert all(
        not torch.equal(first[k], last[k]) for k in first if k.startswith("blocks.") and k.endswith("W_Q")
    )


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"task__K1": 128}, "task.K1"),
        ({"model__n_layers": 3}, "model.n_layers"),
        ({"pipeline__init_from": "/no/such/run"}, "pipeline.init_from"),
        ({"pipeline__freeze": ["decoder"]}, "pipeline.freeze"),
        ({"pipeline__early_fusion": True}, "pipeline.early_fusion"),
        ({"task__L2": 9}, "task.L2"),
        ({"task__K2": 20}, "task.K2"),
        ({"model__n_max": 5}, "model.n_max"),
    ],
)
def test_bad_pipeline_configs_name_the_field(stage1, tmp_path, changes, field):
    with pytest.raises(ConfigError) as err:
        train(RunConfig.from_dict(stage2_dict(stage1, **changes)), tmp_path / "x", progress=False)
    assert err.value.field == field


def test_unimodal_runs_refuse_pipeline_settings():
    with pytest.raises(ConfigError, match="pipeline"):
        RunConfig.from_dict({"pipeline": {"freeze": ["blocks"]}})


def test_killed_stage2_run_resumes_to_the_uninterrupted_weights(stage1, tmp_path):
    data = stage2_dict(stage1)
    cfg = tmp_path / "s2.toml"
    cfg.write_text(toml_text(data))
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-m", "mmicl_interp.cli", "train", str(cfg), "--out", str(killed), "--quiet"],
        env={**os.environ, "MMICL_TEST_KILL_AT_STEP": "9"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    config = RunConfig.from_dict(data)
    train(config, killed, resume=True, progress=False)
    train(config, tmp_path / "whole", progress=False)
    assert ck.read_metrics(killed) == ck.read_metrics(tmp_path / "whole")
    a, b = load_file(ck.ckpt_path(killed, 12)), load_file(ck.ckpt_path(tmp_path / "whole", 12))
    assert all(torch.equal(a[k], b[k]) for k in a)
