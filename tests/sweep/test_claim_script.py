"""The shared claim-script machinery (mmicl_interp.sweep.claim_script, measures, figures,
multimodal, reference_table): each helper against a hand computation."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from mmicl_interp.sweep import claim_script
from mmicl_interp.sweep.claim_script import (
    ClaimScript,
    Outcome,
    by_seed,
    mean_range,
    moving_line,
    paired_subclaim,
    plateau_note,
)
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.figures import add_run_curves, panels, range_trace
from mmicl_interp.sweep.measures import final_accuracies, with_plateau
from mmicl_interp.sweep.multimodal import integer_columns, parse_size, size_tag
from mmicl_interp.sweep.published_code import width_of
from mmicl_interp.sweep.reference_table import merge_table, read_table, table_csv
from tests.sweep import sweep_table


def _table() -> pd.DataFrame:
    """A sweep table of two runs, two eval steps each, icl and iwl accuracy (and an icl loss row)."""
    return sweep_table({"a": (64, None, 0.3, 0.9), "b": (128, None, 0.8, 0.2)}, loss=True)


def test_final_accuracies_take_each_runs_last_step():
    runs = final_accuracies(_table()).set_index("run")
    assert runs.loc["a", "icl"] == pytest.approx(0.3) and runs.loc["a", "iwl"] == pytest.approx(0.9)
    assert runs.loc["b", "icl"] == pytest.approx(0.8) and runs.loc["b", "iwl"] == pytest.approx(0.2)
    assert (runs["step"] == 10).all() and list(runs["task.K"]) == [64, 128]


def test_icl_relative_to_each_runs_own_plateau():
    task = {"a": SimpleNamespace(N=8, B=2), "b": SimpleNamespace(N=8, B=4)}
    grid = SimpleNamespace(
        points=lambda: [SimpleNamespace(name=n, config=SimpleNamespace(task=t)) for n, t in task.items()]
    )
    runs = with_plateau(pd.DataFrame({"run": ["a", "b"], "icl": [0.625, 0.5]}), grid)
    # (icl - B/N) / (1 - B/N): a at plateau 1/4 -> (0.625 - 0.25) / 0.75; b at its plateau 1/2 -> 0
    assert list(runs["icl_rel"]) == pytest.approx([0.5, 0.0]) and list(runs["plateau"]) == [0.25, 0.5]
    assert "plateau" not in with_plateau(pd.DataFrame({"run": ["a"], "icl": [1.0]}), grid, plateau=False)


def test_moving_line_counts_and_cuts_the_names_short():
    assert moving_line([], 4).endswith("): 0 of 4.")
    assert moving_line(["r1", "r2"], 4).endswith("): 2 of 4 (r1, r2).")
    names = [f"r{i}" for i in range(12)]
    line = moving_line(names, 20)
    assert line.endswith("12 of 20 (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, ...).")


def test_plateau_note_caps_only_when_a_compared_run_moves():
    assert "not known" in plateau_note(None) and "capped at weak" in plateau_note(None)
    assert plateau_note([]).startswith("every compared run at a plateau")
    assert plateau_note(["x"], 2).startswith("1 of the compared runs still moving")
    assert plateau_note(["x"], 2).endswith("capped at weak; 2 run(s) of other position types still moving")


def test_paired_subclaim_pairs_the_arms_seed_by_seed():
    rows = pd.DataFrame({"seed": [2, 0, 1], "icl": [0.3, 0.1, 0.2]})
    base = by_seed(rows, "icl")
    other = pd.Series({0: 0.9, 1: 0.7, 2: 0.95, 7: 0.5})  # seed 7 has no partner: not paired
    sub = paired_subclaim("4x", "a claim", base, other, "icl difference", 0.2, dict(steps=10))
    diffs = [0.9 - 0.1, 0.7 - 0.2, 0.95 - 0.3]
    assert sub.effect == pytest.approx(sum(diffs) / 3) and sub.n_seeds == 3 and sub.n_runs == 7
    assert sub.interval[0] < sub.effect < sub.interval[1] and sub.verdict == "supported" and sub.steps == 10
    assert by_seed(rows.iloc[:0], "icl").empty


def test_mean_range_is_mean_min_max():
    values = pd.Series([0.2, 0.5, 0.8, 0.1])
    assert mean_range(values) == f"{sum(values) / 4:.3f} [0.100, 0.800]"
    assert mean_range(pd.Series([], dtype=float)) == "-"


def test_range_trace_error_bars_are_the_range_around_the_mean():
    frame = pd.DataFrame({"g": ["x", "x", "y", "y"], "n": [1, 1, 4, 4], "acc": [0.2, 0.6, 0.5, 0.9]})
    per = frame.groupby("g")[["n", "acc"]].agg(["mean", "min", "max"])
    trace = range_trace(per, "n", "acc", name="t")
    assert list(trace.x) == [1, 4] and list(trace.y) == pytest.approx([0.4, 0.7])
    assert list(trace.error_y.array) == pytest.approx([0.2, 0.2])
    assert list(trace.error_y.arrayminus) == pytest.approx([0.2, 0.2])
    assert list(trace.text) == ["x", "y"]


def test_run_curves_draw_the_first_run_opaque_and_the_rest_faded():
    fig = panels(["a", "b"])
    curves = {r: pd.Series([0.1, 0.5], index=[0, 10]) for r in ("r1", "r2", "r3")}
    add_run_curves(fig, curves, "rope", "#d62728", row=1, col=2)
    assert [t.opacity for t in fig.data] == [1.0, 0.5, 0.5]
    assert all(t.xaxis == "x2" and not t.showlegend and t.legendgroup == "rope" for t in fig.data)


def test_parse_size_and_its_run_name_tag():
    assert parse_size("64x3x2") == (64, 3, 2) and size_tag((64, 3, 2)) == "d64_l3_h2"
    assert size_tag(parse_size("0x2x1")) == "l2_h1"
    for bad in ("64x3", "0x0x1", "ax2x1"):
        with pytest.raises(Exception, match="--sizes"):
            parse_size(bad)


def test_integer_columns_keep_gaps_as_missing():
    table = integer_columns(pd.DataFrame({"K2": [32.0, math.nan], "other": [1.5, 2.5]}))
    assert str(table["K2"].dtype) == "Int64" and table["K2"].iloc[0] == 32 and pd.isna(table["K2"].iloc[1])
    assert table["other"].dtype == float


def test_published_width_follows_the_position_scheme():
    assert width_of({"positions": "ape", "D": 64}) == 2 * 32 + 1 + 64
    assert width_of({"positions": "rope", "D": 64}) == 64
    assert width_of({"positions": "hybrid", "D": 64}) == 2 * 32 + 64 + 2


def test_reference_table_merges_replaces_and_reads_back(tmp_path):
    old = [dict(K=2048, seed=s, step=0, suite="icl", accuracy=0.1, loss=3.0) for s in (0, 1)]
    new = {(2048, 1): [dict(step=0, suite="icl", accuracy=0.7, loss=1.0)]}
    merged = merge_table(old, new)
    assert [(r["seed"], r["accuracy"]) for r in merged] == [(0, 0.1), (1, 0.7)]
    path = tmp_path / "published_reference.csv"
    path.write_text(table_csv(merged))
    assert read_table(path) == merged


class _Done:
    """Stands in for a GridsResult: the claim script only asks it for its compute time."""

    def compute_s(self, invocation_s: float) -> float:
        return 100.0 + invocation_s


def _script(tmp_path, judged: list, key: str | None = "9"):
    def report(done, args, command):
        return Outcome(
            ["# report", "", f"command {command}"],
            None,
            "",
            lambda wall: [SubClaim("9a", "a claim", "supported", 1.0, wall_time_s=wall)],
            csv={"demo_runs.csv": pd.DataFrame({"run": ["r"], "icl": [0.5]})},
        )

    def judge(runs, csv):
        judged.append((list(runs["run"]), csv.name))
        return [SubClaim("9a", "a claim", "weak", 0.5)]

    return ClaimScript(
        "demo", key, "Demo", "Demo claim.\n\nMore.", ["g.toml"], report, judge=judge, out=tmp_path
    )


def test_claim_script_writes_report_csv_and_section_then_rejudges_from_the_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(claim_script, "run_grids", lambda grids, runs, workers: _Done())
    judged: list = []
    script = _script(tmp_path, judged)
    script.main(["--out", str(tmp_path), "--no-png"])
    assert (tmp_path / "demo.md").read_text().startswith("# report\n")
    assert pd.read_csv(tmp_path / "demo_runs.csv")["icl"].tolist() == [0.5]
    section = json.loads((tmp_path / "claims.json").read_text())["claims"]["9"]
    assert section["subclaims"][0]["verdict"] == "supported" and section["wall_time_s"] >= 100.0
    assert section["command"].startswith(".venv/bin/python analyses/demo.py")
    script.main(["--out", str(tmp_path), "--from-results"])
    assert judged == [(["r"], "demo_runs.csv")]
    again = json.loads((tmp_path / "claims.json").read_text())["claims"]["9"]["subclaims"][0]
    assert again["verdict"] == "weak" and "--from-results" in again["notes"]


def test_claim_script_without_a_key_writes_no_section_and_one_grid_refuses_two(tmp_path, monkeypatch):
    monkeypatch.setattr(claim_script, "run_grids", lambda grids, runs, workers: _Done())
    _script(tmp_path, [], key=None).main(["--out", str(tmp_path)])
    assert (tmp_path / "demo.md").is_file() and not (tmp_path / "claims.json").exists()
    one = _script(tmp_path, [])
    one.one_grid = "K x seed"
    with pytest.raises(SystemExit):
        one.main(["--grid", "a.toml", "b.toml", "--out", str(tmp_path)])


def test_claim_script_options_are_declared_and_from_results_only_with_a_judge(tmp_path):
    script = _script(tmp_path, [])
    script.options = [("--n-seqs", dict(type=int, default=500))]
    args = script.parser().parse_args(["--n-seqs", "64"])
    assert args.n_seqs == 64 and args.from_results is None
    script.judge = None
    assert not hasattr(script.parser().parse_args([]), "from_results")


def test_from_results_names_a_missing_csv(tmp_path):
    with pytest.raises(SystemExit, match="no per-run table"):
        _script(tmp_path, []).from_results(SimpleNamespace(from_results="", out=str(tmp_path)))
