"""`mmicl analyze` into a shared table: each run keeps its own rows under its own id.

Runs are small copies of the shipped example run (three of its checkpoints each), so two
"runs of the same config" cost nothing to make.
"""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mmicl_interp import load_run
from mmicl_interp.analyses.tables import analyze_run, read_table, table_runs, write_table
from mmicl_interp.cli import main
from mmicl_interp.io import CorruptFileError
from mmicl_interp.runs import Run

EXAMPLE = Path(__file__).resolve().parents[1] / "checkpoints" / "example"
N_SEQS = "16"


def copy_run(parent: Path, name: str, steps=(0, 500, 1000), config_name: str = "", **manifest) -> Path:
    """A copy of the example run holding only ``steps``, its manifest updated with ``manifest``
    (and its config renamed to ``config_name``)."""
    keep = {f"step_{s:07d}.safetensors" for s in steps}

    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder).name == "ckpt":
            return [n for n in names if n not in keep]
        return [n for n in names if n in ("analysis.parquet", "reports", "report.html")]

    dst = parent / name
    shutil.copytree(EXAMPLE, dst, ignore=ignore)
    if manifest or config_name:
        data = json.loads((dst / "manifest.json").read_text())
        data.update(manifest)
        if config_name:
            data["name"] = data["config"]["name"] = config_name
        (dst / "manifest.json").write_text(json.dumps(data))
    return dst


def analyze(*args: str) -> int:
    return main(["analyze", *map(str, args), "--n-seqs", N_SEQS, "--quiet"])


def exit_code(argv: list[str]) -> int:
    """main's status, whether argparse exits or main returns."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def rows_of(table: pd.DataFrame, run: str) -> pd.DataFrame:
    return table[table["run"] == run].reset_index(drop=True)


def test_run_id_is_the_manifest_run_id_else_the_folder_name(tmp_path):
    assert load_run(copy_run(tmp_path, "t1")).run_id == "t1"
    run = load_run(copy_run(tmp_path, "t2", run_id="alpha"))
    assert run.run_id == run.name == "alpha" and run.config.name == "default"


def test_two_runs_of_one_config_get_their_own_rows_in_a_shared_table(tmp_path, capsys):
    t1 = copy_run(tmp_path, "t1", steps=(0, 500, 1000))
    t2 = copy_run(tmp_path, "t2", steps=(0, 50, 1000))
    shared = tmp_path / "shared.parquet"
    assert analyze(t1, "--out", shared) == 0
    capsys.readouterr()
    assert analyze(t2, "--out", shared) == 0
    out = capsys.readouterr().out
    assert "analysed 3 checkpoints" in out and "skipped" not in out
    table = read_table(shared)
    assert sorted(rows_of(table, "t1")["step"].unique()) == [0, 500, 1000]
    assert sorted(rows_of(table, "t2")["step"].unique()) == [0, 50, 1000]
    # the two copies hold the same weights at steps 0 and 1000: the same values, under two ids
    same = ["step", "suite", "metric", "layer", "head", "value"]
    a = rows_of(table, "t1").query("step != 500")[same].reset_index(drop=True)
    b = rows_of(table, "t2").query("step != 50")[same].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert set(table_runs(shared)) == {"t1", "t2"}


def test_the_same_id_from_another_run_is_refused_in_one_line_and_run_id_resolves_it(tmp_path, capsys):
    t1 = copy_run(tmp_path, "t1", run_id="default")
    t2 = copy_run(tmp_path, "t2", run_id="default", created="2027-01-01T00:00:00+0000")
    shared = tmp_path / "shared.parquet"
    assert analyze(t1, "--out", shared) == 0
    before = read_table(shared)
    capsys.readouterr()
    assert analyze(t2, "--out", shared) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run-id" in err[0] and str(t1.resolve()) in err[0]
    pd.testing.assert_frame_equal(read_table(shared), before)  # nothing touched
    assert analyze(t2, "--out", shared, "--run-id", "default-2") == 0
    table = read_table(shared)
    assert set(table["run"]) == {"default", "default-2"}
    pd.testing.assert_frame_equal(rows_of(table, "default"), rows_of(before, "default"))


def test_a_moved_copy_of_the_same_run_is_the_same_run(tmp_path, capsys):
    t1 = copy_run(tmp_path, "t1", run_id="default")
    moved = copy_run(tmp_path / "elsewhere", "t1", run_id="default")
    shared = tmp_path / "shared.parquet"
    assert analyze(t1, "--out", shared) == 0
    capsys.readouterr()
    assert analyze(moved, "--out", shared) == 0
    assert "analysed 0 checkpoints (3 already analysed, skipped)" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_third_run_keeps_every_earlier_runs_rows(tmp_path, suffix, capsys):
    shared = tmp_path / f"shared{suffix}"
    # three configs (as from a sweep), each run analysed into the one file in turn
    runs = [
        copy_run(tmp_path, f"t{i}", steps=(s,), config_name=f"config{i}")
        for i, s in enumerate((500, 800, 1000), 1)
    ]
    snapshots = {}
    for path in runs:
        assert analyze(path, "--out", shared) == 0
        snapshots[path.name] = rows_of(read_table(shared), path.name)
    table = read_table(shared)
    assert set(table["run"]) == {"t1", "t2", "t3"}
    assert len(table) == sum(len(s) for s in snapshots.values())
    for name, rows in snapshots.items():
        pd.testing.assert_frame_equal(rows_of(table, name), rows)
    assert "it also holds 2 other run(s), kept" in capsys.readouterr().out


def test_force_recomputes_this_run_only(tmp_path):
    t1, t2 = copy_run(tmp_path, "t1", steps=(1000,)), copy_run(tmp_path, "t2", steps=(1000,))
    shared = tmp_path / "shared.parquet"
    assert analyze(t1, "--out", shared) == 0 and analyze(t2, "--out", shared) == 0
    good = read_table(shared)
    stale = good.assign(value=123.0)  # pretend both runs' rows are stale
    write_table(stale, shared, table_runs(shared))
    assert analyze(t1, "--out", shared, "--force") == 0
    table = read_table(shared)
    pd.testing.assert_frame_equal(rows_of(table, "t1"), rows_of(good, "t1"))  # recomputed
    assert (rows_of(table, "t2")["value"] == 123.0).all()  # another run's rows: untouched
    assert len(table) == len(good)


def _interrupt_at(monkeypatch, call: int) -> list[int]:
    """Make the ``call``-th checkpoint load raise KeyboardInterrupt (Ctrl-C); returns the loads."""
    loaded: list[int] = []
    real = Run.model

    def model(self, step=None):
        loaded.append(step)
        if len(loaded) == call:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(Run, "model", model)
    return loaded


def test_ctrl_c_keeps_the_checkpoints_done_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    run = copy_run(tmp_path, "t1")
    out = tmp_path / "scores.parquet"
    _interrupt_at(monkeypatch, 3)
    assert analyze(run, "--out", out) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"kept 2 of 3 checkpoints in {out}; rerun the same command to resume" in err[0]
    assert sorted(read_table(out)["step"].unique()) == [0, 500]
    loaded = _interrupt_at(monkeypatch, 99)
    assert analyze(run, "--out", out) == 0
    assert "analysed 1 checkpoints (2 already analysed, skipped)" in capsys.readouterr().out
    assert loaded == [1000]
    assert sorted(read_table(out)["step"].unique()) == [0, 500, 1000]


def test_analyze_saves_completed_checkpoints_as_it_goes(tmp_path, monkeypatch):
    run = load_run(copy_run(tmp_path, "t1"))
    out = tmp_path / "scores.parquet"
    on_disk: list[list[int]] = []
    real = Run.model

    def model(self, step=None):
        on_disk.append(sorted(read_table(out)["step"].unique()) if out.exists() else [])
        return real(self, step)

    monkeypatch.setattr(Run, "model", model)
    analyze_run(run, out, n_seqs=16, progress=False, flush_every_s=0)
    assert on_disk == [[], [0], [0, 500]]


def test_a_corrupt_table_is_named_in_one_line_and_force_replaces_it(tmp_path, capsys):
    run = copy_run(tmp_path, "t1")
    out = run / "analysis.parquet"
    out.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(CorruptFileError, match="--force"):
        read_table(out)
    assert analyze(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "--force" in err[0]
    assert analyze(run, "--force") == 0
    assert sorted(read_table(out)["step"].unique()) == [0, 500, 1000]
    assert (run / "analysis.parquet.corrupt").read_bytes() == b"PAR1 this is not a parquet file"


def test_a_foreign_csv_is_refused_not_overwritten(tmp_path, capsys):
    run = copy_run(tmp_path, "t1")
    out = tmp_path / "notes.csv"
    out.write_text("a,b\n1,2\n")
    assert analyze(run, "--out", out) == 2
    assert "not a table written by `mmicl analyze`" in capsys.readouterr().err
    assert out.read_text() == "a,b\n1,2\n"


def test_a_run_still_training_counts_what_was_analysed_and_says_so(tmp_path, monkeypatch, capsys):
    run = copy_run(tmp_path, "live", status="running", last_step=1000)
    real = Run.model

    def model(self, step=None):  # the trainer writes another checkpoint meanwhile
        shutil.copy(EXAMPLE / "ckpt" / "step_0000800.safetensors", run / "ckpt")
        return real(self, step)

    monkeypatch.setattr(Run, "model", model)
    assert analyze(run) == 0
    out = capsys.readouterr().out
    assert "analysed 3 checkpoints" in out
    assert "still training or was stopped (status running)" in out and "rerun later" in out
    assert sorted(read_table(run / "analysis.parquet")["step"].unique()) == [0, 500, 1000]
    monkeypatch.setattr(Run, "model", real)
    assert analyze(run) == 0
    assert "analysed 1 checkpoints (3 already analysed, skipped)" in capsys.readouterr().out


def test_bad_n_seqs_and_an_unwritable_out_fail_before_any_work(tmp_path, monkeypatch, capsys):
    run = copy_run(tmp_path, "t1")
    loaded = _interrupt_at(monkeypatch, 99)
    for bad in ("0", "-5"):
        assert exit_code(["analyze", str(run), "--n-seqs", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--n-seqs" in err[0]
    (tmp_path / "file").write_text("")
    assert analyze(run, "--out", tmp_path / "file" / "scores.parquet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]
    assert loaded == []


def test_the_run_folders_own_table_from_before_run_ids_is_adopted(tmp_path, capsys):
    run = copy_run(tmp_path, "t1")
    legacy = read_table(EXAMPLE / "analysis.parquet")
    legacy = legacy[legacy["step"].isin([0, 500, 1000])].assign(run="default")
    legacy.to_parquet(run / "analysis.parquet", index=False)  # as the old code wrote it
    assert set(read_table(run / "analysis.parquet")["run"]) == {"t1"}
    assert analyze(run) == 0
    assert "analysed 0 checkpoints (3 already analysed, skipped)" in capsys.readouterr().out
    assert set(table_runs(run / "analysis.parquet")) == {"t1"}


def test_rows_another_analysis_writes_meanwhile_are_kept(tmp_path, monkeypatch):
    t1, t2 = copy_run(tmp_path, "t1"), copy_run(tmp_path, "t2", steps=(1000,))
    shared = tmp_path / "shared.parquet"
    real = Run.model

    def model(self, step=None):  # while t1 is analysed, t2's analysis writes the same file
        if self.run_id == "t1" and step == 1000:
            analyze_run(load_run(t2), shared, n_seqs=16, progress=False)
        return real(self, step)

    monkeypatch.setattr(Run, "model", model)
    analyze_run(load_run(t1), shared, n_seqs=16, progress=False, flush_every_s=0)
    table = read_table(shared)
    assert sorted(rows_of(table, "t1")["step"].unique()) == [0, 500, 1000]
    assert sorted(rows_of(table, "t2")["step"].unique()) == [1000]
    assert set(table_runs(shared)) == {"t1", "t2"}


def test_the_table_records_n_and_refuses_to_mix_two_ns_in_one_run(tmp_path, capsys):
    import pyarrow.parquet as pq

    run = copy_run(tmp_path, "nrun", steps=(0, 1000))
    out = tmp_path / "t.parquet"
    assert main(["analyze", str(run), "--out", str(out), "--n-seqs", "16", "--quiet"]) == 0
    record = json.loads(pq.read_schema(out).metadata[b"mmicl_runs"])
    assert record["nrun"]["n_seqs"] == "16"
    capsys.readouterr()
    assert main(["analyze", str(run), "--out", str(out), "--n-seqs", "32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n-seqs" in err[0] and "n = 16" in err[0]
