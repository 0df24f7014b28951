"""Speed options: ``train.precision = "bf16"`` (autocast) and ``train.compile``, on the CPU.

Fast tests compile with dynamo's ``eager`` backend (the same wrapper and state-dict keys as
inductor, without its C++ build); the slow ones use the real compiler and the default config.
"""

import functools

import pytest
import torch
from safetensors.torch import load_file

from mmicl_interp import checkpoints as ck
from mmicl_interp import load_run
from mmicl_interp.config import ConfigError, load_config
from mmicl_interp.device import resolve_device
from mmicl_interp.model.transformer import ICLTransformer
from mmicl_interp.train import train
from mmicl_interp.train.trainer import make_optimizer, make_update
from tests.conftest import tiny_run_config


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile with the ``eager`` backend: dynamo's wrapper, no code generation; returns the
    list of what was compiled."""
    compiled = []
    real = functools.partial(torch.compile, backend="eager")

    def compile_(model, **kwargs):
        compiled.append(model)
        return real(model, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_)
    return compiled


def _weights(run, step):
    return load_file(ck.ckpt_path(run, step))


@pytest.mark.parametrize(("field", "value"), [("precision", "fp16"), ("precision", 16), ("compile", "yes")])
def test_bad_precision_or_compile_values_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        tiny_run_config(train={field: value})
    assert err.value.field == f"train.{field}"


def test_fp32_and_eager_are_the_default():
    tc = load_config("default").train
    assert (tc.precision, tc.compile) == ("fp32", False)


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_bf16_runs_the_forward_matmuls_in_bfloat16_and_keeps_the_weights_float32(precision, dtype, tiny_task):
    config = tiny_run_config(train={"precision": precision, "device": "cpu"})
    model = ICLTransformer.from_task(config.model, config.task)
    seen = []
    model.blocks[0].attn.hook_q.add_hook(lambda q, hook: seen.append(q.dtype))
    optimizer = make_optimizer(model, config)
    update = make_update(model, optimizer, tiny_task, config.train, resolve_device("cpu"), torch.Generator())
    loss, correct = update()
    assert seen == [dtype]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert 0 <= int(correct) <= config.train.batch_size
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(
        s.dtype == torch.float32 for st in optimizer.state.values() for k, s in st.items() if k != "step"
    )


def test_bf16_run_is_reproducible_writes_float32_checkpoints_and_differs_from_fp32(tmp_path):
    runs = {}
    for name, precision in (("a", "bf16"), ("b", "bf16"), ("fp32", "fp32")):
        runs[name] = tmp_path / name
        train(tiny_run_config(train={"precision": precision, "device": "cpu"}), runs[name], progress=False)
    assert ck.read_metrics(runs["a"]) == ck.read_metrics(runs["b"])
    last = ck.list_checkpoints(runs["a"])[-1]
    wa, wb, w32 = (_weights(runs[k], last) for k in ("a", "b", "fp32"))
    assert set(wa) == set(w32)
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in wa.values())
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], w32[k]) for k in wa)  # bf16 rounding did change the updates
    assert max((wa[k] - w32[k]).abs().max() for k in wa) < 0.05  # but only by rounding


def test_a_compiled_run_saves_the_plain_models_weights_and_loads_back(tmp_path, eager_compile):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    train(tiny_run_config(train={"device": "cpu"}), eager, progress=False)
    train(tiny_run_config(train={"device": "cpu", "compile": True}), compiled, progress=False)
    assert len(eager_compile) == 1 and isinstance(eager_compile[0], ICLTransformer)
    steps = ck.list_checkpoints(compiled)
    assert steps == ck.list_checkpoints(eager)
    for step in steps:
        we, wc = _weights(eager, step), _weights(compiled, step)
        assert set(wc) == set(we) and not any(k.startswith("_orig_mod.") for k in wc)
        for k in we:
            torch.testing.assert_close(wc[k], we[k], rtol=1e-5, atol=1e-6)
    model = load_run(compiled).model(steps[-1], device="cpu")
    assert torch.equal(model.W_U.detach(), _weights(compiled, steps[-1])["W_U"])


def test_device_and_compile_are_not_part_of_a_runs_identity_but_precision_is(tmp_path, eager_compile):
    out = tmp_path / "run"
    train(tiny_run_config(train={"device": "cpu"}), out, progress=False)
    again = train(tiny_run_config(train={"device": "auto", "compile": True}), out, progress=False)
    assert again.already_complete and not eager_compile  # found complete: nothing compiled or trained
    with pytest.raises(ConfigError, match=r"holds a different run \(train.precision: 'fp32' -> 'bf16'\)"):
        train(tiny_run_config(train={"device": "cpu", "precision": "bf16"}), out, progress=False)


# ---------------------------------------------------------------------- they still learn (slow)
def _first_step_at(run, level=0.9):
    icl = sorted((r["step"], r["accuracy"]) for r in ck.read_metrics(run) if r["suite"] == "icl")
    return next((step for step, acc in icl if acc >= level), None), icl[-1][1]


@pytest.fixture(scope="module")
def fp32_default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32") / "run"
    train(load_config("default", ["train.device=cpu"]), out, progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [["train.precision=bf16"], ["train.compile=true"], ["train.precision=bf16", "train.compile=true"]],
)
def test_bf16_and_compiled_runs_learn_icl_as_fast_as_fp32_eager(options, fp32_default_run, tmp_path):
    """icl >= 0.9 on the default config, first reached within 25% of the fp32 eager run's step."""
    base_step, base_final = _first_step_at(fp32_default_run)
    assert base_step is not None and base_final >= 0.9
    out = tmp_path / "run"
    train(load_config("default", ["train.device=cpu", *options]), out, progress=False)
    step, final = _first_step_at(out)
    assert final >= 0.9, (options, final)
    assert step is not None and abs(step - base_step) <= 0.25 * base_step, (options, step, base_step)
