"""The sweep's precision choice (``mmicl_interp.sweep.precision``): forced, kept, or measured."""

from __future__ import annotations

import json
import math

import pytest

from mmicl_interp.config import ConfigError
from mmicl_interp.sweep import precision as P
from tests.conftest import tiny_run_config

MEASURE = P.time_updates  # the real one (tests/conftest.py pins it to a tie in every test)


def _config(**train):
    return tiny_run_config(train={"device": "cpu", **train})


def _manifest(folder, precision):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"config": {"train": {"precision": precision}}}))


def test_a_forced_option_is_taken_without_measuring(monkeypatch):
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: pytest.fail("measured"))
    for option in ("fp32", "bf16"):
        assert P.choose_precision(option, _config()).precision == option


def test_a_grid_that_sets_the_precision_is_never_overridden(monkeypatch):
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: pytest.fail("measured"))
    choice = P.choose_precision("auto", _config(precision="fp32"), grid_sets_it=True)
    assert choice.precision == "fp32" and "grid" in choice.reason


def test_runs_already_in_the_folder_keep_their_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: pytest.fail("measured"))
    _manifest(tmp_path / "K=64_seed=0", "bf16")
    _manifest(tmp_path / "K=64_seed=1", "bf16")
    assert P.choose_precision("auto", _config(), out=tmp_path).precision == "bf16"
    _manifest(tmp_path / "K=64_seed=2", "fp32")
    with pytest.raises(ConfigError, match="--precision"):
        P.choose_precision("auto", _config(), out=tmp_path)


@pytest.mark.parametrize(
    ("bf16_ms", "expected"), [(5.0, "bf16"), (9.0, "bf16"), (9.5, "fp32"), (12.0, "fp32")]
)
def test_auto_takes_bf16_only_when_it_is_at_least_10_percent_faster(monkeypatch, bf16_ms, expected):
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: {"fp32": 10.0, "bf16": bf16_ms})
    choice = P.choose_precision("auto", _config())
    assert choice.precision == expected
    assert choice.line().startswith(f"precision: {expected} (bf16 {bf16_ms:.1f} ms/step against fp32 10.0 ms")


def test_a_bad_option_names_the_flag():
    with pytest.raises(ConfigError, match=r"--precision.*auto, fp32, bf16"):
        P.choose_precision("fp16", _config())


def test_time_updates_measures_real_steps_without_touching_the_config():
    config = _config()
    ms = MEASURE(config, ("fp32", "bf16"), steps=2, rounds=1, threads=1)
    assert set(ms) == {"fp32", "bf16"}
    assert all(math.isfinite(v) and v > 0 for v in ms.values())
    assert config.train.precision == "fp32"


def test_cli_sweep_says_which_precision_it_picked_and_trains_in_it(tmp_path, monkeypatch, capsys):
    from mmicl_interp import checkpoints as ck
    from mmicl_interp.cli import main
    from tests.conftest import TINY_TOML

    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    grid = tmp_path / "grid.toml"
    grid.write_text('base = "tiny.toml"\n[set]\n"train.steps" = 3\n[grid]\nseed = [0, 1]\n')
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: {"fp32": 10.0, "bf16": 6.0})
    args = ["sweep", str(grid), "--workers", "1", "--stack", "off", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "auto")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "precision: bf16 (bf16 6.0 ms/step against fp32 10.0 ms at the first point: faster; "
        "it is taken when <= 0.9x)"
    )
    for seed in (0, 1):
        assert ck.read_manifest(tmp_path / "auto" / f"seed={seed}")["config"]["train"]["precision"] == "bf16"
    # a rerun into the same folder keeps the runs' precision, whatever the timing says now
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: {"fp32": 1.0, "bf16": 5.0})
    assert main([*args, "--out", str(tmp_path / "auto")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("precision: bf16 (the runs already in")
    # forced, and a grid that pins fp32 stays fp32 under auto
    assert main([*args, "--out", str(tmp_path / "forced"), "--precision", "fp32"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "precision: fp32 (--precision)"
    grid.write_text(grid.read_text().replace("[set]\n", '[set]\n"train.precision" = "fp32"\n'))
    monkeypatch.setattr(P, "time_updates", lambda *a, **k: {"fp32": 10.0, "bf16": 1.0})
    assert main([*args, "--out", str(tmp_path / "pinned")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "precision: fp32 (the grid sets train.precision)"
    assert ck.read_manifest(tmp_path / "pinned" / "seed=0")["config"]["train"]["precision"] == "fp32"
    # bad value: one line, exit 2, nothing made
    assert main([*args, "--out", str(tmp_path / "bad"), "--precision", "fp16"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "mmicl: error: --precision: must be one of auto, fp32, bf16, got 'fp16'"
    )
    assert not (tmp_path / "bad").exists()
