import subprocess
import sys
from pathlib import Path

import pytest

from mmicl_interp.cli import main
from mmicl_interp.config import ConfigError, RunConfig, load_config, parse_override
from tests.conftest import TINY_TOML
from tests.test_config_validation import MM_TOML, _path

REPO = Path(__file__).resolve().parents[1]


def test_shipped_default_and_iwl_configs_load_by_name():
    default = load_config("default")
    iwl = load_config("iwl")
    assert default.model.positions == "onehot" and default.model.n_layers == 2
    assert iwl.task.K < default.task.K


def test_overrides_parse_toml_values_and_dotted_keys():
    assert parse_override("task.K=512") == (["task", "K"], 512)
    assert parse_override("model.positions=rope") == (["model", "positions"], "rope")
    assert parse_override("task.no_repeats=true") == (["task", "no_repeats"], True)


def test_override_applies_to_a_loaded_config(tmp_path):
    config = load_config(_path(tmp_path), ["task.K=128", "model.positions=alibi"])
    assert config.task.K == 128 and config.model.positions == "alibi"


def test_config_round_trips_through_dict():
    config = load_config("default")
    assert RunConfig.from_dict(config.to_dict()) == config


BAD = [
    (["task.K=65"], "task.K", "divisible by L"),
    (["task.N=5"], "task.B", "divisor of N"),
    (["model.positions=sinusoid"], "model.positions", "onehot, learned, rope, rope_paper, alibi, none"),
    (["task.eps=-0.1"], "task.eps", ">= 0"),
    (["task.alpha=-1"], "task.alpha", ">= 0"),
    (["task.L=1"], "task.L", ">= 2"),
    (["train.steps=0"], "train.steps", "> 0"),
    (["train.steps=-3"], "train.steps", "> 0"),
    (["task.colour=3"], "task.colour", "unknown key"),
    (["optim.lr=3"], "optim", "unknown section"),
    (["model.norm=batch"], "model.norm", "rms, ln, none"),
    (["model.mlp=relu"], "model.mlp", "none, gelu, swiglu, paper_gated"),
    (["train.optimizer=lion"], "train.optimizer", "sgd, adam, adamw"),
    (["task.p_B=1.5"], "task.p_B", "[0, 1]"),
    (["task.K=many"], "task.K", "integer"),
]


@pytest.mark.parametrize("overrides,field,allowed", BAD)
def test_invalid_value_raises_config_error_naming_field_and_allowed_values(
    tmp_path, overrides, field, allowed
):
    with pytest.raises(ConfigError) as err:
        load_config(_path(tmp_path), overrides)
    assert err.value.field == field
    assert allowed in str(err.value)


@pytest.mark.parametrize("overrides,field,allowed", BAD)
def test_cli_exits_2_with_one_line_naming_the_field_and_no_traceback(
    tmp_path, capsys, overrides, field, allowed
):
    args = ["train", _path(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0] and allowed in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_toml_syntax_error_exits_2(tmp_path, capsys):
    assert main(["train", _path(tmp_path, "[task\nK = 3"), "--quiet"]) == 2
    assert "TOML syntax error" in capsys.readouterr().err


def test_cli_missing_config_file_exits_2_and_lists_shipped_names(capsys):
    assert main(["train", "no/such/file.toml", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "default" in err


def test_cli_output_directory_with_a_different_run_exits_2(tmp_path, capsys):
    cfg = _path(tmp_path)
    out = str(tmp_path / "run")
    assert main(["train", cfg, "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", cfg, "--out", out, "--set", "task.K=128", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "different run" in err[0]


def test_cli_output_directory_with_unrelated_files_exits_2(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", _path(tmp_path), "--out", str(out), "--quiet"]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_console_script_process_exits_with_status_2_on_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mmicl_interp.cli", "train", _path(tmp_path), "--set", "task.K=65"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "task.K" in proc.stderr


def test_cli_trains_and_prints_accuracy_per_suite_by_step(tmp_path, capsys):
    assert main(["train", _path(tmp_path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "step       0 | test" in out and "icl" in out and "final accuracy" in out


# ---------------------------------------------------------------------- stage 2 before stage 1
def test_stage2_before_stage1_says_which_run_to_train_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "mm_stage2", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "mmicl: error: pipeline.init_from: no run at checkpoints/mm_stage1; "
        "train stage 1 first: mmicl train mm_stage1"
    ]


def test_missing_encoder_run_says_to_train_the_encoder_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = ["model.encoder=mlp", "pipeline.init_from=''", "pipeline.encoder_from=pre/enc"]
    args = ["train", "mm_stage2", "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pipeline.encoder_from: no run at pre/enc" in lines[0]
    assert "mmicl train mm_encoder --out pre/enc" in lines[0]


STAGE2 = MM_TOML.replace('name = "mm"', 'name = "s2"') + (
    '[pipeline]\ninit_from = "{init}"\nfreeze = ["embed", "blocks"]\n'
)


def test_stage2_refuses_an_unfinished_stage1_run_instead_of_using_its_last_checkpoint(tmp_path, capsys):
    import json

    stage1 = tmp_path / "s1"
    cfg1 = _path(tmp_path, TINY_TOML.replace("n_max = 4", "n_max = 7"))
    assert main(["train", str(cfg1), "--out", str(stage1), "--quiet"]) == 0
    manifest = json.loads((stage1 / "manifest.json").read_text())
    manifest["status"] = "running"  # what a killed stage 1 leaves
    (stage1 / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    cfg2 = tmp_path / "s2.toml"
    cfg2.write_text(STAGE2.format(init=stage1))
    assert main(["train", str(cfg2), "--out", str(tmp_path / "s2"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"pipeline.init_from: {stage1} is an unfinished run" in lines[0]
    assert f"--out {stage1} --resume" in lines[0]
    manifest["status"] = "complete"
    (stage1 / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", str(cfg2), "--out", str(tmp_path / "s2"), "--quiet"]) == 0
