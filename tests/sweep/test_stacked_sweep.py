"""Stacked sweeps: which points stack, stacked runs against separate runs of the same points,
exact resume of a killed stack, the ``--stack`` option."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmicl_interp import checkpoints as ck
from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.sweep import Executor, Grid, LocalExecutor, run_sweep
from mmicl_interp.sweep.runner import stack_groups, train_runs
from mmicl_interp.train import stacked
from tests.conftest import TINY_TOML, tiny_run_config

# Weights of a stacked run vs a separate run of the same point, max |difference| over every
# tensor of every checkpoint of the 4 points below: measured 6.0e-08 (torch 2.13, CPU; the
# optimiser state 7.5e-09). The data, init, optimiser and schedule are the same; only the float
# rounding of vmap's batched matmuls (and their backward) differs from the unbatched ones, and
# Adam carries it on. A float32 ulp at the weights' size (<= 1) is 6e-8 to 1.2e-7.
WEIGHT_ATOL = 1.5e-7
# Metrics (accuracy, loss) of the same runs: measured 2.4e-07 (the losses of weights 6e-8 apart;
# no prediction sat on a tie, which would move an accuracy by a whole 1/64).
METRIC_ATOL = 5e-7
VOLATILE = ("created", "wall_time_s", "trained_on")
"""Manifest keys that record when and how long, not what: they differ between any two runs."""


class InProcess(LocalExecutor):
    """The local executor's stacking default, without worker processes (fast; monkeypatchable)."""

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)


class Elsewhere(Executor):
    """An executor that is not the local one (as Ray is): ``stack="auto"`` does not stack there."""

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            yield i, fn(item)


def _grid(root: Path) -> Grid:
    base = root / "tiny.toml"
    base.write_text(TINY_TOML)
    fixed = {"train.steps": 10, "train.ckpt_every": 4, "train.eval_every": 2, "model.mlp": "gelu"}
    return Grid.from_dict({"base": str(base), "set": fixed, "grid": {"task.K": [32, 64], "seed": [0, 1]}})


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The 4-point grid swept stacked and as separate runs: (grid, stacked folder, separate
    folder, stacked result, separate result, stacked log lines, separate log lines)."""
    root = tmp_path_factory.mktemp("stacked")
    grid = _grid(root)
    logs: dict[str, list[str]] = {"stacked": [], "separate": []}
    together = run_sweep(
        grid, root / "stacked", executor=InProcess(1), progress=False, log=logs["stacked"].append
    )
    apart = run_sweep(
        grid, root / "separate", executor=Elsewhere(), progress=False, log=logs["separate"].append
    )
    return grid, root / "stacked", root / "separate", together, apart, logs


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def _manifest(run: Path) -> dict:
    return {k: v for k, v in ck.read_manifest(run).items() if k not in VOLATILE}


def test_stack_key_groups_points_that_differ_only_in_seeds_and_sampling():
    base = tiny_run_config(model={"mlp": "gelu"})

    def change(section: str, **values) -> RunConfig:
        return replace(base, **{section: replace(getattr(base, section), **values)}).validate()

    same_shape = [
        base,
        change("task", K=32, B=1, p_B=0.5, eps=0.3, alpha=1.0, seed=4, eval_size=32),
        change("model", seed=3, init_std=0.05, mlp_init="torch_default"),
        change("train", seed=9),
    ]
    apart = [
        change("task", D=6),  # input width
        change("task", N=3, B=1),  # sequence length
        change("task", L=4),  # read-out width
        change("model", positions="rope"),  # forward pass
        change("model", rope_theta=500.0),  # a buffer's values
        change("train", lr=0.01),
        change("train", steps=10),
        change("train", batch_size=8),
        change("train", ckpt_every=3),
        change("train", precision="bf16"),
    ]
    alone = [
        change("train", clamp_pattern="prev_token", clamp_end=4),
        change("train", stop_plateau=0.01),
        change("train", compile=True),
    ]
    groups = stack_groups([*same_shape, *apart, *alone, *alone])
    assert groups[0] == [0, 1, 2, 3]
    assert all(len(g) == 1 for g in groups[1:]) and len(groups) == 1 + len(apart) + 2 * len(alone)
    assert stacked.stack_key(replace(base, kind="multimodal")) is None
    # fewer stacks than workers: the largest is halved until each worker has one (or all are single)
    assert stack_groups([*same_shape, apart[0]], parallel=2) == [[0, 1, 2, 3], [4]]
    assert stack_groups(same_shape, parallel=2) == [[0, 1], [2, 3]]
    assert stack_groups(same_shape, parallel=3) == [[0], [1], [2, 3]]
    assert stack_groups(same_shape, parallel=8) == [[0], [1], [2], [3]]


def test_stacked_sweep_writes_what_separate_runs_write(sweeps):
    grid, together_dir, apart_dir, together, apart, logs = sweeps
    names = [p.name for p in grid.points()]
    assert logs["stacked"] == [f"stacking 4 points as one model: {', '.join(names)}"]
    assert logs["separate"] == []  # auto stacks only with the local executor
    assert [r.name for r in together.results] == names and together.n_trained == 4
    worst_w = worst_m = 0.0
    for name in names:
        one, ref = together_dir / name, apart_dir / name
        assert _files(one) == _files(ref)
        assert [t["stacked"] for t in ck.read_manifest(one)["trained_on"]] == [4]
        assert "stacked" not in ck.read_manifest(ref)["trained_on"][0]
        assert _manifest(one) == _manifest(ref)  # config, seeds, schedule, status, last step, ...
        # the task (class means, label vectors): the same tensors and metadata, bit for bit
        (ta, ma, _), (tb, mb, _) = (ck.read_safetensors(x / ck.TASK) for x in (one, ref))
        assert ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        steps = ck.list_checkpoints(one)
        assert steps == ck.list_checkpoints(ref) == [0, 4, 8, 10]
        for step in steps:
            a, b = ck.read_weights(ck.ckpt_path(one, step)), ck.read_weights(ck.ckpt_path(ref, step))
            assert a.keys() == b.keys()
            if step == 0:  # the same init, bit for bit
                assert all(torch.equal(a[k], b[k]) for k in a)
            for k in a:
                worst_w = max(worst_w, (a[k] - b[k]).abs().max().item())
                torch.testing.assert_close(a[k], b[k], atol=WEIGHT_ATOL, rtol=0)
        # the data generator's state: the same batches were drawn, bit for bit
        ta, _, _ = ck.read_safetensors(one / ck.TRAIN_STATE)
        tb, _, _ = ck.read_safetensors(ref / ck.TRAIN_STATE)
        assert ta.keys() == tb.keys() and torch.equal(ta["rng.train"], tb["rng.train"])
        for k in ta:
            torch.testing.assert_close(ta[k], tb[k], atol=WEIGHT_ATOL, rtol=1e-4)
        rows, ref_rows = ck.read_metrics(one), ck.read_metrics(ref)
        assert [(r["step"], r["suite"], r["chance"]) for r in rows] == [
            (r["step"], r["suite"], r["chance"]) for r in ref_rows
        ]
        for r, q in zip(rows, ref_rows, strict=True):
            for metric in ("accuracy", "loss"):
                worst_m = max(worst_m, abs(r[metric] - q[metric]))
                assert r[metric] == pytest.approx(q[metric], abs=METRIC_ATOL, rel=0)
    assert 0 < worst_w <= WEIGHT_ATOL  # rounding is there, and within the bound
    assert worst_m <= METRIC_ATOL
    pd.testing.assert_frame_equal(together.table, apart.table, check_exact=False, atol=METRIC_ATOL, rtol=0)
    # the points differ (own data, own init): the stack did not train one model four times
    w = [ck.read_weights(ck.ckpt_path(together_dir / n, 10))["W_U"] for n in names]
    assert not any(torch.equal(w[0], x) for x in w[1:])


def _same_runs(a: Path, b: Path, names: list[str]) -> None:
    """Every file of every run equal, bit for bit: safetensors files tensor by tensor with their
    metadata (safetensors writes the metadata keys in no fixed order), the manifest up to when
    and how long, the metrics byte for byte."""
    for name in names:
        assert _files(a / name) == _files(b / name)
        for rel in _files(a / name):
            if rel == ck.MANIFEST:
                assert _manifest(a / name) == _manifest(b / name)
            elif rel.endswith(".safetensors"):
                (ta, ma, _), (tb, mb, _) = (ck.read_safetensors(x / name / rel) for x in (a, b))
                assert ma == mb and ta.keys() == tb.keys(), (name, rel)
                assert all(torch.equal(ta[k], tb[k]) for k in ta), (name, rel)
            else:
                assert (a / name / rel).read_bytes() == (b / name / rel).read_bytes(), (name, rel)


def test_a_killed_stack_resumes_every_point_bit_for_bit(sweeps, tmp_path, monkeypatch):
    grid, together_dir, _, together, _, _ = sweeps
    names = [p.name for p in grid.points()]
    real = stacked.make_stacked_update

    def dies_after(n: int):
        def make(*args, **kwargs):
            update, calls = real(*args, **kwargs), [0]

            def counted():
                calls[0] += 1
                if calls[0] > n:
                    raise RuntimeError("killed")
                return update()

            return counted

        return make

    monkeypatch.setattr(stacked, "make_stacked_update", dies_after(6))  # after step 6: checkpoints at 4
    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(grid, tmp_path / "k", executor=InProcess(1), progress=False)
    for name in names:
        m = ck.read_manifest(tmp_path / "k" / name)
        assert (m["status"], m["last_step"]) == ("running", 4)
        assert max(r["step"] for r in ck.read_metrics(tmp_path / "k" / name)) == 6
    monkeypatch.setattr(stacked, "make_stacked_update", real)
    again = run_sweep(grid, tmp_path / "k", executor=InProcess(1), progress=False)
    assert [r.steps_trained for r in again.results] == [6] * 4
    _same_runs(tmp_path / "k", together_dir, names)
    pd.testing.assert_frame_equal(again.table, together.table)
    for name in names:
        resumed = ck.read_manifest(tmp_path / "k" / name)["trained_on"]
        assert [(t["from_step"], t["stacked"]) for t in resumed] == [(0, 4), (4, 4)]

    # finished points are skipped: nothing is retrained, no file changes
    before = {n: (tmp_path / "k" / n / ck.MANIFEST).read_bytes() for n in names}
    assert run_sweep(grid, tmp_path / "k", executor=InProcess(1), progress=False).n_trained == 0
    assert {n: (tmp_path / "k" / n / ck.MANIFEST).read_bytes() for n in names} == before


def test_a_stack_killed_between_two_points_checkpoints_resumes_each_from_its_own(
    sweeps, tmp_path, monkeypatch
):
    grid, together_dir, _, _, _, _ = sweeps
    names = [p.name for p in grid.points()]
    real, calls = ck.save_weights, []

    def save(model, path, step):
        calls.append(step)
        if step == 8 and calls.count(8) == 3:  # the third point's checkpoint at step 8
            raise RuntimeError("killed")
        real(model, path, step)

    monkeypatch.setattr(ck, "save_weights", save)
    with pytest.raises(RuntimeError, match="killed"):
        run_sweep(grid, tmp_path / "k", executor=InProcess(1), progress=False)
    monkeypatch.setattr(ck, "save_weights", real)
    assert [ck.read_manifest(tmp_path / "k" / n)["last_step"] for n in names] == [8, 8, 4, 4]
    again = run_sweep(grid, tmp_path / "k", executor=InProcess(1), progress=False)
    assert [r.steps_trained for r in again.results] == [2, 2, 6, 6]  # two stacks: from 8 and from 4
    # each point resumed from its own checkpoint with its own optimiser and data state, but in a
    # stack of two: the batched matmuls' rounding depends on the stack's size, so the weights
    # after the resume match the uninterrupted stack of four within the rounding bound only
    for name in names:
        one, ref = tmp_path / "k" / name, together_dir / name
        assert _files(one) == _files(ref) and _manifest(one) == _manifest(ref)
        resumed_from = ck.read_manifest(one)["trained_on"][-1]["from_step"]
        for step in ck.list_checkpoints(ref):
            a, b = ck.read_weights(ck.ckpt_path(one, step)), ck.read_weights(ck.ckpt_path(ref, step))
            for k in a:
                if step <= resumed_from:  # written before the kill, by the stack of four
                    assert torch.equal(a[k], b[k])
                torch.testing.assert_close(a[k], b[k], atol=WEIGHT_ATOL, rtol=0)
        rng = [ck.read_safetensors(p / ck.TRAIN_STATE)[0]["rng.train"] for p in (one, ref)]
        assert torch.equal(*rng)


def test_a_point_that_diverges_leaves_the_stack_and_the_others_finish(sweeps, tmp_path, monkeypatch):
    grid, _, _, _, _, _ = sweeps
    names = [p.name for p in grid.points()]
    real = stacked.make_stacked_update

    def poisoned(models, *args, **kwargs):
        update, whole = real(models, *args, **kwargs), len(models) == 4

        def step():
            losses, correct = update()
            if whole:  # the second point's loss becomes nan while the stack has all four
                losses = losses.clone()
                losses[1] = float("nan")
            return losses, correct

        return step

    monkeypatch.setattr(stacked, "make_stacked_update", poisoned)
    nan_at_1 = r"^train\.lr: loss became nan at step 1; kept checkpoints up to step 0 "
    with pytest.raises(ConfigError, match=nan_at_1):
        run_sweep(grid, tmp_path / "d", executor=InProcess(1), progress=False)
    status = [ck.read_manifest(tmp_path / "d" / n)["status"] for n in names]
    assert status == ["complete", "diverged", "complete", "complete"]
    assert ck.list_checkpoints(tmp_path / "d" / names[1]) == [0]
    assert ck.list_checkpoints(tmp_path / "d" / names[2]) == [0, 4, 8, 10]
    with pytest.raises(ConfigError, match="diverged"):  # a rerun names it, as for a separate run
        run_sweep(grid, tmp_path / "d", executor=InProcess(1), progress=False)


def test_a_stack_too_big_for_the_memory_is_refused_naming_the_stack(tmp_path, monkeypatch):
    real = stacked.check_resources

    def small_machine(config, out=None, device=None):  # room for a batch of 32, not more
        if config.train.batch_size > 32:
            raise ConfigError("train.batch_size", "too large for the CPU")
        real(config, out, device)

    monkeypatch.setattr(stacked, "check_resources", small_machine)
    configs = [tiny_run_config(model={"seed": s}, train={"seed": s}) for s in range(3)]  # batch 16
    outs = [tmp_path / str(s) for s in range(3)]
    too_big = r"^train\.batch_size: too large for the CPU \(a stack of 3 runs; --stack off"
    with pytest.raises(ConfigError, match=too_big):
        stacked.train_group(configs, outs)
    assert not any(out.exists() for out in outs)  # refused before any work
    assert [r.steps_trained for r in stacked.train_group(configs[:2], outs[:2])] == [12, 12]


def test_cli_stack_option_prints_one_line_per_stack_and_refuses_bad_values(tmp_path, monkeypatch, capsys):
    import mmicl_interp.sweep as sweep

    grid = tmp_path / "grid.toml"
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    grid.write_text('base = "tiny.toml"\n[set]\n"train.steps" = 3\n[grid]\nseed = [0, 1]\n')
    monkeypatch.setattr(sweep, "make_executor", lambda *args: InProcess(1))
    assert main(["sweep", str(grid), "--out", str(tmp_path / "on"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("precision: fp32")  # tests/conftest.py pins the timing to a tie
    assert out[1] == "stacking 2 points as one model: seed=0, seed=1"
    assert out[-1].startswith("2 runs (2 trained, 0 already complete)")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "off"), "--stack", "off", "--quiet"]) == 0
    assert "stacking" not in capsys.readouterr().out
    assert "stacked" not in ck.read_manifest(tmp_path / "off" / "seed=0")["trained_on"][0]

    assert main(["sweep", str(grid), "--out", str(tmp_path / "bad"), "--stack", "maybe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmicl: error: --stack: must be one of auto, on, off; got 'maybe'"]
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="^--stack: must be one of auto, on, off"):
        train_runs([], stack="yes")
