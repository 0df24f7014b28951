"""Every number of a config is finite and in range; sizes are checked against this machine.

Each case here used to pass validation and then train to nan weights, crash with a
traceback (ValueError, OverflowError, RuntimeError) or exhaust memory or CPUs.
"""

import os
import re

import pytest
import torch

from mmicl_interp import config as config_module
from mmicl_interp.cli import main
from mmicl_interp.config import (
    ConfigError,
    ModelConfig,
    MultimodalTaskConfig,
    RunConfig,
    TaskConfig,
    check_resources,
    load_config,
    memory_estimate,
    parameter_estimate,
    resources,
    usable_cpus,
)
from mmicl_interp.data.multimodal import make_task
from mmicl_interp.data.task import Task
from mmicl_interp.model.transformer import ICLTransformer, parameter_count
from tests.conftest import TINY_TOML, tiny_task_config

MM_TOML = """\
name = "mm"
kind = "multimodal"
[task]
K1 = 64
L1 = 8
D1 = 8
K2 = 16
L2 = 8
D2 = 6
N = 4
B = 2
eval_size = 16
[model]
n_max = 7
[train]
steps = 2
batch_size = 4
eval_every = 1
"""


def _path(tmp_path, text=TINY_TOML):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


NON_FINITE = [
    ("train.lr", "inf", "(0, 1000]"),
    ("train.lr", "nan", "(0, 1000]"),
    ("train.lr", "-inf", "(0, 1000]"),
    ("train.lr", "1e300", "(0, 1000]"),  # used to fail casting to float32 inside the optimiser
    ("train.weight_decay", "nan", "[0, 1000]"),
    ("train.weight_decay", "inf", "[0, 1000]"),
    ("train.momentum", "1", "[0, 1)"),
    ("train.momentum", "nan", "[0, 1)"),
    ("task.eps", "inf", ">= 0"),
    ("task.eps", "nan", ">= 0"),
    ("task.eps", "1e200", "<= 1e+06"),  # eps**2 used to raise OverflowError in the sampler
    ("task.alpha", "inf", ">= 0"),
    ("task.alpha", "nan", ">= 0"),
    ("task.p_B", "nan", "[0, 1]"),
    ("task.p_C", "inf", "[0, 1]"),
    ("model.init_std", "inf", "(0, 100]"),
    ("model.init_std", "nan", "(0, 100]"),
    ("model.rope_theta", "inf", ">= 1"),
    ("model.rope_theta", "nan", ">= 1"),
]


@pytest.mark.parametrize("key,value,allowed", NON_FINITE)
def test_non_finite_or_out_of_range_numbers_are_refused_naming_field_and_range(tmp_path, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(_path(tmp_path), [f"{key}={value}"])
    assert err.value.field == key
    assert "finite" in err.value.message and allowed in err.value.message


@pytest.mark.parametrize("key,value,allowed", NON_FINITE[:4] + NON_FINITE[8:11])
def test_cli_refuses_non_finite_numbers_with_one_line_exit_2(tmp_path, capsys, key, value, allowed):
    out = tmp_path / "o"
    assert main(["train", _path(tmp_path), "--out", str(out), "--quiet", "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and allowed in err[0] and "Traceback" not in err[0]
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    "key,value", [("task.eps1", "nan"), ("task.eps2", "inf"), ("task.alpha1", "inf"), ("task.alpha2", "nan")]
)
def test_multimodal_task_numbers_must_be_finite(tmp_path, key, value):
    with pytest.raises(ConfigError) as err:
        load_config(_path(tmp_path, MM_TOML), [f"{key}={value}"])
    assert err.value.field == key and "finite" in err.value.message


def test_in_range_values_at_the_bounds_are_accepted(tmp_path):
    config = load_config(
        _path(tmp_path),
        ["train.lr=1000", "train.momentum=0.99", "task.p_C=1", "task.eps=1e6", "task.alpha=0"],
    )
    assert (config.train.lr, config.train.momentum, config.task.p_C, config.task.eps) == (1000, 0.99, 1, 1e6)


@pytest.mark.parametrize(
    "overrides,field",
    [
        (["model.n_heads=1000"], "model.n_heads"),  # d_model // n_heads = 0: was a ValueError traceback
        (["model.positions=rope", "model.d_head=7"], "model.d_head"),  # rope needs an even d_head
        (["model.use_w_o=false", "model.n_heads=2"], "model.use_w_o"),
        (["model.positions=rope", "task.N=8", "task.B=2"], "model.n_max"),  # 17 positions > 2*4+1
        (["train.ckpt_log_points=5000"], "train.ckpt_log_points"),  # the schedule took 20+ s
    ],
)
def test_shapes_the_model_cannot_build_are_config_errors(tmp_path, capsys, overrides, field):
    with pytest.raises(ConfigError) as err:
        load_config(_path(tmp_path), overrides)
    assert err.value.field == field
    args = ["train", _path(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and field in err_lines[0]


def test_decoder_shape_checks_agree_with_the_model_constructor():
    """What validate() refuses is exactly what ICLTransformer would raise on (and vice versa)."""
    task = {"K": 64, "L": 8, "D": 8, "N": 4, "B": 2}
    for positions in ("onehot", "rope", "none"):
        for n_heads in (1, 2, 3, 5, 13, 17, 18, 40):
            model = {"n_max": 4, "n_heads": n_heads, "positions": positions}
            try:
                accepted = RunConfig.from_dict({"task": task, "model": model}) is not None
            except ConfigError:
                accepted = False
            try:
                builds = ICLTransformer.from_task(ModelConfig(**model), tiny_task_config()) is not None
            except ValueError:
                builds = False
            assert accepted == builds, (positions, n_heads)


def _alpha_limit(message: str) -> int:
    return int(re.search(r"<= about (\d+)", message).group(1))


def test_zipf_exponent_too_large_for_no_repeats_is_refused_and_the_limit_samples():
    base = {"K": 256, "L": 32, "D": 8, "N": 8, "B": 2, "no_repeats": True, "eval_size": 16}
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"task": {**base, "alpha": 100.0}, "model": {"n_max": 8}})
    assert err.value.field == "task.alpha"
    limit = _alpha_limit(err.value.message)
    assert 1 <= limit < 100
    g = torch.Generator().manual_seed(0)
    # the refused value really breaks sampling (this is what used to crash with a RuntimeError) ...
    bad = TaskConfig(**{**base, "alpha": 100.0})
    with pytest.raises(RuntimeError):
        Task.create(bad).sample(64, g, p_B=1.0)
    # ... and the largest accepted one samples distinct labels in every bursty context
    ok = RunConfig.from_dict({"task": {**base, "alpha": float(limit)}, "model": {"n_max": 8}}).task
    batch = Task.create(ok).sample(64, g, p_B=1.0)
    for labels in batch.context_labels:
        assert len(set(labels.tolist())) == base["N"] // base["B"]


def test_multimodal_zipf_exponent_too_large_for_no_repeats_is_refused():
    data = {"K1": 64, "L1": 8, "D1": 8, "K2": 64, "L2": 8, "D2": 6, "N": 8, "B": 2, "no_repeats": True}
    with pytest.raises(ConfigError) as err:
        MultimodalTaskConfig(**data, alpha2=200.0).validate()
    assert err.value.field == "task.alpha2"
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError):
        make_task(MultimodalTaskConfig(**data, alpha2=200.0)).sample(32, g, p_B=1.0)
    limit = _alpha_limit(err.value.message)
    cfg = MultimodalTaskConfig(**data, alpha2=float(limit))
    cfg.validate()
    make_task(cfg).sample(32, g, p_B=1.0)


# ------------------------------------------------------------------ machine resources
@pytest.mark.parametrize(
    "overrides",
    [
        {"model": {"n_heads": 3, "mlp": "gelu", "norm": "ln", "attn_bias": True}},
        {"model": {"positions": "learned", "mlp": "swiglu", "d_embed": 12, "n_layers": 3}},
        {"model": {"use_w_o": False, "mlp": "paper_gated", "d_mlp": 20}},
        {"kind": "multimodal", "model": {"encoder": "mlp", "d_proj": 10, "n_max": 7}},
        {"kind": "encoder", "model": {"encoder": "mlp", "encoder_hidden": 24}},
    ],
)
def test_parameter_estimate_equals_the_models_parameter_count(overrides):
    from mmicl_interp.train.pipeline import build_model

    mm_task = {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2}
    kind = overrides.get("kind", "unimodal")
    task = {"K": 64, "L": 8, "D": 8, "N": 4, "B": 2} if kind == "unimodal" else mm_task
    config = RunConfig.from_dict({"kind": kind, "task": task, "model": {"n_max": 4, **overrides["model"]}})
    assert sum(parameter_estimate(config).values()) == parameter_count(build_model(config))


def test_task_memory_estimate_covers_the_allocation_torch_reported():
    """torch reported "can't allocate 128000000000 bytes" for K=1e9, D=32 (the class means)."""
    config = load_config("default", ["task.K=1000000000"])
    parts = dict((field, b) for field, b, _ in memory_estimate(config))
    assert parts["task.K"] >= 1e9 * 32 * 4
    assert max(memory_estimate(config), key=lambda p: p[1])[0] == "task.K"


def test_default_config_fits_in_a_modest_machine():
    need = sum(b for _, b, _ in memory_estimate(load_config("default")))
    assert 1e6 < need < 0.5e9


def test_cli_refuses_a_task_too_large_for_any_machine_with_the_estimate(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["train", _path(tmp_path), "--out", str(out), "--quiet", "--set", "task.K=100000000000"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "task.K" in err[0]
    needed, available = re.search(r"needs about ([\d.]+) GB, ([\d.]+) GB available", err[0]).groups()
    assert float(needed) >= 1e11 * 8 * 4 / 1e9 > float(available)
    assert not (out / "manifest.json").exists()


def test_batch_too_large_for_the_available_memory_names_batch_size(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 2 * 10**9)
    args = [
        "train",
        _path(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        "--set",
        "train.batch_size=10000000",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.batch_size" in err[0] and "2.0 GB available" in err[0]


def test_available_memory_reads_a_positive_number_not_above_physical_memory():
    avail = config_module.available_memory()
    assert avail is not None and 0 < avail
    total = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    assert total is None or avail <= total


@pytest.mark.parametrize("extra", [1, 997])
def test_more_threads_than_cpus_is_refused_naming_the_range(tmp_path, capsys, extra):
    cpus = usable_cpus()
    assert 1 <= cpus <= os.cpu_count()
    args = ["train", _path(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--set", f"train.threads={cpus + extra}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.threads" in err[0] and f"[0, {cpus}]" in err[0]


def test_threads_equal_to_the_cpu_count_pass_the_check(tmp_path):
    config = load_config(_path(tmp_path), [f"train.threads={usable_cpus()}"])
    check_resources(config, tmp_path / "o")  # no error


def test_checkpoints_that_do_not_fit_on_disk_are_refused(tmp_path, monkeypatch):
    config = load_config(_path(tmp_path), ["train.steps=1000", "train.ckpt_every=1"])
    usage = resources.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: usage._replace(free=10**6))
    with pytest.raises(ConfigError) as err:
        check_resources(config, tmp_path / "o")
    assert err.value.field == "train.ckpt_every" and "on disk" in err.value.message
    assert "1001 checkpoints" in err.value.message  # steps 0, 1, ..., 1000


@pytest.mark.parametrize(
    "dense",
    ["[1, 2]", "[5, 5, 1]", "[10, 5, 1]", "[0, 2000, 1]", "[0, 10, 0]", "[-1, 10, 1]", "[0.5, 10, 1]", "5"],
)
def test_bad_dense_checkpoint_range_is_one_config_error(tmp_path, dense):
    with pytest.raises(ConfigError) as err:
        load_config(_path(tmp_path), ["train.steps=1000", f"train.ckpt_dense={dense}"])
    assert err.value.field == "train.ckpt_dense" and "[start, stop, every]" in err.value.message
    assert "\n" not in str(err.value)


def test_dense_checkpoints_count_toward_the_disk_check(tmp_path, monkeypatch):
    ok = load_config(_path(tmp_path), ["train.steps=1000", 'train.ckpt_schedule="list"'])
    dense = load_config(
        _path(tmp_path), ["train.steps=1000", 'train.ckpt_schedule="list"', "train.ckpt_dense=[0, 1000, 1]"]
    )
    usage = resources.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: usage._replace(free=10**6))
    check_resources(ok, tmp_path / "o")  # 2 checkpoints fit
    with pytest.raises(ConfigError) as err:
        check_resources(dense, tmp_path / "o")
    assert "1001 checkpoints" in err.value.message


def test_a_cuda_run_is_sized_against_the_gpus_free_memory_not_the_hosts(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**9, 80 * 10**9))
    monkeypatch.setattr(resources, "available_memory", lambda: 10**15)  # the host has plenty
    big = load_config("default", ["train.device=cuda", "train.batch_size=1000000"])
    need = sum(b for _, b, _ in config_module.memory_estimate(big))
    assert need > 10**9  # more than the GPU has free, far less than the host
    gpu = torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"too large for the GPU cuda:0: .*1\.0 GB available") as err:
        config_module.check_resources(big, device=gpu)
    assert err.value.field == "train.batch_size"
    config_module.check_resources(big)  # on the host it fits
    monkeypatch.setattr(resources, "available_memory", lambda: 1)  # the host is not asked
    config_module.check_resources(load_config("default", ["train.device=cuda"]), device=gpu)


def test_train_checks_memory_where_it_trains(tmp_path, monkeypatch):
    from mmicl_interp.train import trainer

    seen = []
    monkeypatch.setattr(trainer, "check_resources", lambda config, out, device: seen.append(device))
    config = load_config("default", ["train.steps=1", "train.device=cpu"])
    trainer.train(config, tmp_path / "r", progress=False)
    assert seen == [torch.device("cpu")]  # the resolved device, so a CUDA run is sized on its GPU


def test_stop_plateau_on_an_encoder_run_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "enc"
    args = ["train", "mm_encoder", "--out", str(out), "--quiet", "--set", "train.stop_plateau=0.01"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmicl: error: train.stop_plateau: watches the icl suite"), err
    assert not out.exists()
