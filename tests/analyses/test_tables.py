import pandas as pd
import pytest

from mmicl_interp import load_run
from mmicl_interp.analyses.tables import COLUMNS, circuit_scores, circuit_scores_runs, read_table, write_table
from mmicl_interp.cli import main
from mmicl_interp.config import RunConfig
from mmicl_interp.io import CorruptFileError
from mmicl_interp.train import train
from tests.conftest import tiny_run_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_run_config(model={"n_heads": 2}), path, progress=False)
    return load_run(path)


def test_circuit_scores_is_a_tidy_table_over_every_checkpoint(tiny_run):
    df = circuit_scores(tiny_run, progress=False)
    assert list(df.columns) == COLUMNS
    assert sorted(df["step"].unique()) == tiny_run.steps
    heads = df[df["metric"] == "ih"]
    assert set(zip(heads["layer"], heads["head"], strict=True)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    model_level = df[df["metric"].isin(["accuracy", "loss", "cla"])]
    assert model_level["layer"].isna().all() and set(model_level["suite"]) == {
        "test",
        "icl",
        "icl_flip",
        "iwl",
    }
    assert set(df["metric"]) >= {"prev_token", "prev_token_label", "ih", "tila", "tiia", "tla", "cla"}


def test_accuracy_in_the_table_matches_the_training_metrics(tiny_run):
    df = circuit_scores(tiny_run, steps=[tiny_run.steps[-1]], progress=False)
    got = df[(df["metric"] == "accuracy") & (df["suite"] == "icl")]["value"].item()
    metrics = tiny_run.metrics()
    want = metrics[(metrics["suite"] == "icl") & (metrics["step"] == tiny_run.steps[-1])]["accuracy"].item()
    assert got == pytest.approx(want, abs=1e-6)


def test_unknown_step_or_suite_is_refused_with_the_allowed_values(tiny_run):
    with pytest.raises(ValueError, match="available"):
        circuit_scores(tiny_run, steps=[999], progress=False)
    with pytest.raises(ValueError, match="allowed: test, icl, icl_flip, iwl"):
        circuit_scores(tiny_run, suites=["train"], progress=False)


def test_analyze_cli_writes_parquet_and_skips_checkpoints_already_analysed(tiny_run, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    assert main(["analyze", str(tiny_run.path), "--out", str(out), "--quiet", "--n-seqs", "32"]) == 0
    first = read_table(out)
    assert sorted(first["step"].unique()) == tiny_run.steps
    assert main(["analyze", str(tiny_run.path), "--out", str(out), "--quiet"]) == 0
    assert "already analysed, skipped" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read_table(out).reset_index(drop=True), first.reset_index(drop=True))


def test_analyze_cli_rejects_a_non_run_directory_and_a_bad_suffix(tiny_run, tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["analyze", str(tiny_run.path), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err


def test_circuit_scores_reports_progress_as_plain_lines_off_a_terminal(tiny_run, capsys):
    circuit_scores(tiny_run, steps=tiny_run.steps[:2], n_seqs=16, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err  # no redrawn bar in a log
    assert "analyse tiny: 2/2 ckpt" in err


def test_a_truncated_table_raises_corrupt_file_error_naming_it(tiny_run, tmp_path):
    out = tmp_path / "scores.parquet"
    write_table(circuit_scores(tiny_run, steps=tiny_run.steps[:1], n_seqs=16, progress=False), out)
    out.write_bytes(out.read_bytes()[:-20])
    with pytest.raises(CorruptFileError, match="scores.parquet.*--force"):
        read_table(out)
    empty = tmp_path / "scores.csv"
    empty.write_text("")
    with pytest.raises(CorruptFileError, match="scores.csv"):
        read_table(empty)


ENCODER_RUN = {
    "name": "enc",
    "kind": "encoder",
    "task": {"K1": 64, "L1": 8, "D1": 8, "K2": 16, "L2": 8, "D2": 6, "N": 4, "B": 2, "eval_size": 200},
    "model": {"encoder": "mlp", "encoder_hidden": 32},
    "train": {
        "steps": 40,
        "batch_size": 16,
        "lr": 1e-2,
        "eval_every": 20,
        "ckpt_schedule": "linear",
        "ckpt_every": 20,
    },
}


def test_analyze_on_an_encoder_run_gives_an_accuracy_table_matching_its_training_eval(tmp_path, capsys):
    path = tmp_path / "enc"
    train(RunConfig.from_dict(ENCODER_RUN), path, progress=False)
    assert main(["analyze", str(path), "--quiet"]) == 0
    assert "analysed 3 checkpoints" in capsys.readouterr().out
    table = read_table(path / "analysis.parquet")
    assert set(table["metric"]) == {"accuracy", "loss"} and set(table["suite"]) == {"test"}
    assert table["layer"].isna().all() and sorted(table["step"].unique()) == [0, 20, 40]
    acc = table[table["metric"] == "accuracy"].set_index("step")["value"]
    metrics = load_run(path).metrics().query("suite == 'test'").set_index("step")["accuracy"]
    assert acc.to_dict() == pytest.approx(metrics.to_dict(), abs=1e-6)  # the trainer's own eval
    assert acc[40] > 3 / 16  # it learned something: well above chance


def test_circuit_scores_of_several_runs_in_worker_processes_equal_each_run_scored_here(tiny_run, tmp_path):
    other = tmp_path / "other"
    train(tiny_run_config(train={"seed": 1}), other, progress=False)
    runs = [tiny_run, other]
    parallel = circuit_scores_runs(runs, workers=2, suites=["icl"], n_seqs=32, progress=False)
    for path, table in zip(runs, parallel, strict=True):  # in run order, not completion order
        here = circuit_scores(path, suites=["icl"], n_seqs=32, progress=False)
        pd.testing.assert_frame_equal(table, here)
    assert parallel[0]["run"].iloc[0] != parallel[1]["run"].iloc[0]
