"""Claim 4's command (mmicl_interp.sweep.multimodal_run): the input checks the claim-script
miniatures do not reach (``--encoder-steps``, ``--stage1-steps``, ``--merge``) and its
``--from-results`` (ClaimScript's), no training."""

import json

import pytest

from mmicl_interp.sweep.claim_script import ClaimScript
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.multimodal_run import MultimodalScript


def _script() -> MultimodalScript:
    def never(*_args):
        raise AssertionError("bad input must stop before any judging")

    return MultimodalScript("mm_test", "4", "t", "A test script.\n\nMore.", judge=never, verdicts=never)


def test_defaults_fill_the_stage1_steps_and_the_sweeps_k2():
    script = _script()
    given = script.inputs(script.parser().parse_args(["--k2", "512", "64", "--steps", "7"]))
    assert (given.stage1_steps, given.low_k2, given.merge_csv) == (7, 64, None)
    assert script.parser().description == "A test script."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encoder-steps", "5", "0"], "--encoder-steps: must be positive step counts, got [5, 0]"),
        (["--stage1-steps", "0"], "--steps: must be positive step counts, got [1000, 0]"),
        (["--merge"], "--merge: no per-run table at {out}/mm_test_runs.csv"),
        (["--merge", "{tmp}/missing.csv"], "--merge: no per-run table at {tmp}/missing.csv"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_written(tmp_path, capsys, args, message):
    out, runs = tmp_path / "out", tmp_path / "runs"
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        _script().main([*args, "--out", str(out), "--runs", str(runs)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message.format(out=out, tmp=tmp_path) in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not runs.exists()


def test_from_results_is_claim_scripts_with_the_integer_columns_kept(tmp_path):
    seen = {}

    def judge(table, csv):
        seen.update(dtype=str(table["K2"].dtype), csv=csv.name, rows=len(table))
        return [SubClaim("4a", "a", "weak", effect=0.5)]

    script = MultimodalScript("mm_test", "4", "t", "A test script.", judge=judge)
    assert isinstance(script, ClaimScript) and script.runs_csv == "mm_test_runs.csv"
    (tmp_path / "mm_test_runs.csv").write_text("arm,K2,seed\nstage 1,,0\nstage 2,32,0\n")
    script.main(["--from-results", "--out", str(tmp_path)])
    assert seen == dict(dtype="Int64", csv="mm_test_runs.csv", rows=2)  # read_runs, not pd.read_csv
    section = json.loads((tmp_path / "claims.json").read_text())["claims"]["4"]
    assert [(s["id"], s["verdict"], s["effect"]) for s in section["subclaims"]] == [("4a", "weak", 0.5)]


def test_a_script_without_verdicts_refuses_to_train_before_anything_is_written(tmp_path):
    script = MultimodalScript("mm_test", "4", "t", "A test script.", judge=lambda table, csv: [])
    with pytest.raises(TypeError, match="verdicts="):
        script.main(["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
