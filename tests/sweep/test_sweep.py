"""Sweeps: grid parsing and expansion, bad grids, the local executor, skipping, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mmicl_interp import checkpoints as ck
from mmicl_interp.analyses.tidy import COLUMNS
from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError
from mmicl_interp.sweep import Grid, LocalExecutor, load_grid, make_executor, run_sweep
from mmicl_interp.sweep.executors import threads_per_worker
from tests.conftest import TINY_TOML as TINY


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "configs" / "tiny.toml"
    path.parent.mkdir()
    path.write_text(TINY)
    return path


def _grid_file(folder: Path, body: str) -> Path:
    path = folder / "grid.toml"
    path.write_text('base = "configs/tiny.toml"\n' + body)
    return path


def test_points_cross_in_file_order_with_readable_names(base):
    grid = load_grid(
        _grid_file(
            base.parent.parent,
            '[set]\n"train.steps" = 3\n[grid]\n"task.K" = [64, 128]\n'
            '"model.positions" = ["onehot", "rope"]\ntrain.seed = [0, 1]\n',
        )
    )
    assert grid.name == "grid" and grid.base == str(base)
    points = grid.points()
    assert [p.name for p in points] == [
        f"K={k}_positions={pos}_seed={s}" for k in (64, 128) for pos in ("onehot", "rope") for s in (0, 1)
    ]
    last = points[-1]
    assert last.values == {"task.K": 128, "model.positions": "rope", "train.seed": 1}
    assert (last.config.task.K, last.config.model.positions, last.config.train.seed) == (128, "rope", 1)
    assert last.config.train.steps == 3 and last.config.task.L == 8 and last.config.name == last.name


def test_clashing_key_ends_get_longer_labels_and_names_are_filesystem_safe(base):
    grid = Grid.from_dict(
        {
            "base": str(base),
            "grid": {"task.seed": [0], "train.seed": [1], "train.lr": [0.001], "model.positions": ["a/b"]},
        }
    )
    assert grid.labels() == {
        "task.seed": "task.seed",
        "train.seed": "train.seed",
        "train.lr": "lr",
        "model.positions": "positions",
    }
    with pytest.raises(ConfigError) as err:  # "a/b" is no position type, but the name was safe
        grid.points()
    assert err.value.field == "grid.model.positions"
    grid.axes["model.positions"] = ["rope"]
    assert [p.name for p in grid.points()] == ["task.seed=0_train.seed=1_lr=0.001_positions=rope"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[grid]\n"task.Kx" = [64]\n', "grid.task.Kx"),
        ('[grid]\n"foo.bar" = [1]\n', "grid.foo.bar"),
        ('[grid]\n"task.K" = []\n', "grid.task.K"),
        ('[grid]\n"task.K" = 64\n', "grid.task.K"),
        ('[grid]\n"task.K" = [63, 64]\n', "grid.task.K"),
        ('[grid]\n"task.K" = [64, 64]\n', "grid.task.K"),
        ('[set]\n"train.stepz" = 3\n[grid]\n"task.K" = [64]\n', "set.train.stepz"),
        ('[set]\n"task.K" = 64\n[grid]\n"task.K" = [64]\n', "set.task.K"),
        ('grids = 1\n[grid]\n"task.K" = [64]\n', "grids"),
        ("[grid]\n", "grid"),
        ('[grid]\n"task.L" = [8, 3]\n', "task.K"),  # L=3 breaks another field: K=64 % 3
    ],
)
def test_bad_grids_name_the_field(base, body, field):
    with pytest.raises(ConfigError) as err:
        load_grid(_grid_file(base.parent.parent, body)).points()
    assert err.value.field == field, str(err.value)
    if field == "task.K":
        assert "(at grid point L=3)" in err.value.message


def test_missing_or_unknown_base_names_base(tmp_path):
    (tmp_path / "a.toml").write_text('[grid]\n"task.K" = [64]\n')
    with pytest.raises(ConfigError, match="^base: missing"):
        load_grid(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text('base = "nope.toml"\n[grid]\n"task.K" = [64]\n')
    with pytest.raises(ConfigError) as err:
        load_grid(tmp_path / "b.toml").points()
    assert err.value.field == "base"
    with pytest.raises(ConfigError, match="^grid: no such file"):
        load_grid(tmp_path / "c.toml")


def test_executor_choices_and_threads():
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(1, cores=16) == 16
    assert threads_per_worker(32, cores=16) == 1
    assert LocalExecutor(3).workers == 3
    with pytest.raises(ConfigError, match="^--executor"):
        make_executor("slurm", 2)
    with pytest.raises(ConfigError, match="^--workers"):
        LocalExecutor(0)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny 2-point grid swept once with 2 workers: (grid file, sweep folder, result)."""
    root = tmp_path_factory.mktemp("swept")
    (root / "configs").mkdir()
    (root / "configs" / "tiny.toml").write_text(TINY)
    grid_path = _grid_file(root, 'name = "pos"\n[grid]\n"model.positions" = ["onehot", "rope"]\n')
    out = root / "two"
    return grid_path, out, run_sweep(load_grid(grid_path), out, executor=LocalExecutor(2), progress=False)


def test_local_sweep_is_deterministic_and_a_rerun_skips_every_run(swept):
    grid_path, out2, two = swept
    grid = load_grid(grid_path)
    assert [r.name for r in two.results] == ["positions=onehot", "positions=rope"]
    assert two.n_trained == 2 and not any(r.already_complete for r in two.results)

    table = two.table
    assert list(table.columns) == [*COLUMNS, "model.positions"]
    assert table["layer"].isna().all() and table["step"].notna().all()
    assert len(table) == 2 * 3 * 5 * 2 - 2 * 2  # 2 runs x steps 0,3,6 x 5 suites x 2 metrics; no train at 0
    assert table["run"].tolist() == sorted(table["run"].tolist())
    first = table[table["run"] == "positions=onehot"]
    assert first[["step", "suite", "metric"]].apply(tuple, axis=1).is_monotonic_increasing
    assert set(table["metric"]) == {"accuracy", "loss"} and (table["model.positions"] == "onehot").sum() == 28
    pd.testing.assert_frame_equal(pd.read_parquet(out2 / "sweep.parquet"), table, check_dtype=False)

    one = run_sweep(grid, grid_path.parent / "one", executor=LocalExecutor(1), progress=False)
    pd.testing.assert_frame_equal(one.table, table)

    walls = {r.name: ck.read_manifest(out2 / r.name)["wall_time_s"] for r in two.results}
    again = run_sweep(grid, out2, executor=LocalExecutor(2), progress=False)
    assert again.n_trained == 0 and all(r.already_complete for r in again.results)
    assert {r.name: ck.read_manifest(out2 / r.name)["wall_time_s"] for r in again.results} == walls
    pd.testing.assert_frame_equal(again.table, table)


def test_cli_resumes_unfinished_runs_writes_the_table_and_rejects_bad_grids(swept, capsys):
    grid_path, out2, two = swept
    root = grid_path.parent
    out = root / "cli"
    shutil.copytree(out2, out)
    (out / "sweep.parquet").unlink()
    rope = out / "positions=rope"  # unfinished, killed before its first checkpoint state was kept
    ck.write_manifest(rope, {**ck.read_manifest(rope), "status": "running"})
    (rope / "train_state.safetensors").unlink()
    assert main(["sweep", str(grid_path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "2 runs (1 trained, 1 already complete)" in capsys.readouterr().out
    assert json.loads((rope / "manifest.json").read_text())["status"] == "complete"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "sweep.parquet"), two.table, check_dtype=False)

    bad = root / "bad.toml"
    bad.write_text(grid_path.read_text().replace('"model.positions"', '"model.position"'))
    assert main(["sweep", str(bad), "--out", str(root / "sw2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmicl: error: grid.model.position: unknown key"), err
    assert not (root / "sw2").exists()
    assert main(["sweep", str(root / "missing.toml")]) == 2
    assert main(["sweep", str(grid_path), "--executor", "slurm"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_ray_executor_started_locally_gives_the_same_table_as_the_local_executor(swept):
    ray = pytest.importorskip("ray", reason="the optional extra: pip install '.[ray]'")
    grid_path, _, local = swept
    try:
        result = run_sweep(
            load_grid(grid_path), grid_path.parent / "ray", executor=make_executor("ray", 2), progress=False
        )
    finally:
        ray.shutdown()
    assert result.n_trained == 2
    pd.testing.assert_frame_equal(result.table, local.table)


def test_seed_axis_sets_task_model_and_train_seeds_together(tmp_path):
    """``seed`` varies every source of randomness; eval_seed stays fixed across points."""
    from mmicl_interp.sweep.grid import Grid

    grid = Grid.from_dict({"base": "default", "grid": {"seed": [3, 7]}, "set": {"train.steps": 5}})
    points = grid.points()
    assert [p.name for p in points] == ["seed=3", "seed=7"]
    for p, s in zip(points, (3, 7), strict=True):
        assert (p.config.task.seed, p.config.model.seed, p.config.train.seed) == (s, s, s)
    assert points[0].config.task.eval_seed == points[1].config.task.eval_seed


def test_seed_axis_rejects_a_field_it_sets_and_bad_values():
    from mmicl_interp.config import ConfigError
    from mmicl_interp.sweep.grid import Grid

    with pytest.raises(ConfigError) as err:
        Grid.from_dict({"base": "default", "grid": {"seed": [0, 1]}, "set": {"train.seed": 2}})
    assert err.value.field == "grid.seed" and "train.seed" in err.value.message
    with pytest.raises(ConfigError) as err:
        Grid.from_dict({"base": "default", "grid": {"seed": [-1]}}).points()
    assert err.value.field == "grid.seed"


def test_a_second_sweep_into_a_folder_in_use_is_refused_in_one_line(swept, capsys):
    import subprocess
    import sys

    grid_path, out2, _ = swept
    out = grid_path.parent / "busy"
    shutil.copytree(out2, out)
    # another process holds the folder, as a running `mmicl sweep` does
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="another sweep is training into"):
            run_sweep(grid_path, out, executor=LocalExecutor(1), progress=False)
        assert main(["sweep", str(grid_path), "--out", str(out), "--workers", "1", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mmicl: error: --out: another sweep is training into"), err
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: the kernel drops its lock): the same command goes ahead
    assert main(["sweep", str(grid_path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
