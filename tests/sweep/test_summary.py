"""The sweep-table summaries the claim scripts share (hand-made tables, no training)."""

import math
import shutil
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from mmicl_interp.plots import figures
from mmicl_interp.sweep import summary as sm
from tests.sweep import curve_table


def _table(points: dict[tuple[int, int], dict[str, list[float]]]) -> pd.DataFrame:
    """A sweep table over (K, seed): each suite's accuracy curve at steps 0, 10, 20, ..."""
    return curve_table(
        points, run=lambda p: f"K={p[0]}_seed={p[1]}", keys=lambda p: {"task.K": p[0], "train.seed": p[1]}
    )


def test_final_values_take_each_runs_last_step_and_spread_over_seeds():
    table = _table(
        {
            (32, 0): {"icl": [0.0, 0.9, 0.1], "iwl": [0.0, 1.0, 1.0]},
            (32, 1): {"icl": [0.0, 0.0, 0.3], "iwl": [0.0, 1.0, 0.8]},
            (512, 0): {"icl": [0.0, 0.7], "iwl": [0.0, 0.1]},  # a shorter run: its last step is 10
        }
    )
    out = sm.final_values(table).set_index(["task.K", "suite"])
    assert sm.swept_keys(table) == ["task.K"]
    assert out.loc[(32, "icl"), "mean"] == pytest.approx(0.2)
    assert (out.loc[(32, "icl"), "min"], out.loc[(32, "icl"), "max"]) == (0.1, 0.3)
    assert out.loc[(32, "iwl"), "count"] == 2 and out.loc[(512, "icl"), "mean"] == 0.7
    assert set(out.index.get_level_values("suite")) == {"icl", "iwl"}


def test_final_values_name_an_unknown_key():
    with pytest.raises(ValueError, match=r"model.n_heads.*task.K"):
        sm.final_values(_table({(32, 0): {"icl": [0.0, 1.0]}}), ["model.n_heads"])


def test_threshold_is_the_smallest_K_reaching_the_level_per_group_and_nan_when_none():
    summary = pd.DataFrame(
        {
            "heads": [1, 1, 1, 8, 8, 8],
            "task.K": [128, 512, 2048] * 2,
            "suite": ["icl"] * 6,
            "mean": [0.1, 0.6, 0.4, 0.1, 0.2, 0.3],
        }
    )
    assert sm.threshold(summary, by=["heads"]) == {1: 512.0, 8: pytest.approx(math.nan, nan_ok=True)}
    one = summary[summary["heads"] == 1]
    assert sm.threshold(one)[None] == 512.0 and sm.threshold(one, level=0.05)[None] == 128.0
    assert sm.threshold(summary)[None] != sm.threshold(summary)[None]  # no group split: K means 0.4 at 512
    assert sm.format_threshold(math.nan, 2048) == "> 2048" and sm.format_threshold(512.0, 2048) == "512"


def test_interpolated_threshold_lies_between_the_grid_values_on_a_log_scale():
    summary = pd.DataFrame({"task.K": [128, 512, 2048], "suite": ["icl"] * 3, "mean": [0.1, 0.9, 1.0]})
    # 0.5 is halfway from 0.1 to 0.9: halfway between 128 and 512 in log2 K, i.e. 256
    assert sm.threshold(summary, interpolate=True)[None] == pytest.approx(256.0)
    assert sm.threshold(summary, level=0.05, interpolate=True)[None] == 128.0  # the first value reaches it
    assert math.isnan(sm.threshold(summary, level=1.5, interpolate=True)[None])
    eps = pd.DataFrame({"task.eps": [0.0, 0.4], "suite": ["icl"] * 2, "mean": [0.1, 0.9]})
    with pytest.raises(ValueError, match=r"log scale: task.eps must be > 0"):
        sm.threshold(eps, "task.eps", interpolate=True)


def test_spread_wide_and_markdown_table_format_the_summary():
    summary = pd.DataFrame(
        {
            "task.K": [32, 32],
            "suite": ["icl", "iwl"],
            "mean": [0.2, 0.9],
            "min": [0.1, 0.8],
            "max": [0.3, 1.0],
            "count": [2, 2],
        }
    )
    assert sm.spread(summary.iloc[0]) == "0.200 [0.100, 0.300]"
    assert sm.spread({"mean": 0.5, "min": 0.5, "max": 0.5, "count": 1}) == "0.500"
    row = sm.wide(summary, ["task.K"]).iloc[0]
    assert row["task.K"] == 32 and row["iwl"] == "0.900 [0.800, 1.000]"
    assert sm.markdown_table(["K", "icl"], [[32, "0.2"]]) == ["| K | icl |", "|---|---|", "| 32 | 0.2 |"]
    assert sm.short("model.n_heads") == "n_heads"


def test_save_figure_writes_html_and_reports_a_missing_png_exporter(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(figures, "png_export_available", lambda: False)
    written = sm.save_figure(go.Figure(go.Scatter(x=[1, 2], y=[0, 1])), tmp_path / "r", "fig")
    assert (
        written == [tmp_path / "r" / "fig.html"] and written[0].stat().st_size > 100_000
    )  # plotly.js inlined
    assert not (tmp_path / "r" / "fig.png").exists()
    assert "kaleido is not installed" in capsys.readouterr().out


def test_save_figure_survives_a_png_exporter_that_fails(tmp_path, monkeypatch, capsys):
    def broken(fig, path, **kw):
        raise RuntimeError("no chromium")

    monkeypatch.setattr(figures, "png_export_available", lambda: True)
    monkeypatch.setattr(figures, "export_png", broken)
    written = sm.save_figure(go.Figure(), tmp_path, "fig")
    assert written == [tmp_path / "fig.html"]
    assert "no PNG for fig: RuntimeError: no chromium" in capsys.readouterr().out


@pytest.mark.skipif(
    not figures.png_export_available() or not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="PNG export needs kaleido (the png extra) and a Chromium",
)
def test_save_figure_writes_a_real_png_when_kaleido_and_chromium_are_there(tmp_path):
    written = sm.save_figure(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])), tmp_path, "fig")
    assert [p.name for p in written] == ["fig.html", "fig.png"]
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[1].stat().st_size > 1000


# --------------------------------------------------------------------------- seed bootstrap
def _finals(values: dict[int, list[float]]) -> pd.DataFrame:
    """A sweep table whose run (K, seed) ends at icl accuracy values[K][seed]."""
    return _table({(k, s): {"icl": [0.0, v]} for k, vs in values.items() for s, v in enumerate(vs)})


def test_threshold_bootstrap_point_is_the_threshold_and_equal_seeds_collapse_the_interval():
    table = _finals({128: [0.1, 0.2, 0.15], 512: [0.5, 0.7, 0.9], 2048: [1.0, 0.9, 1.0]})
    out = sm.threshold_bootstrap(table, n_boot=500)
    row = out.iloc[0]
    expected = sm.threshold(sm.final_values(table), interpolate=True)[None]
    assert row["threshold"] == pytest.approx(expected)
    assert row["lo"] <= row["threshold"] <= row["hi"] and row["lo"] < row["hi"]
    assert row["reached"] == 1.0 and row["min_seeds"] == 3
    plain = sm.threshold_bootstrap(table, interpolate=False, n_boot=200).iloc[0]
    assert plain["threshold"] == sm.threshold(sm.final_values(table))[None] == 512.0
    same = _finals({128: [0.1] * 3, 512: [0.7] * 3, 2048: [1.0] * 3})
    row = sm.threshold_bootstrap(same, n_boot=300).iloc[0]
    assert row["lo"] == row["hi"] == pytest.approx(row["threshold"])  # 128 * 4^(0.4/0.6)
    assert row["threshold"] == pytest.approx(128 * 4 ** (0.4 / 0.6))


def test_threshold_bootstrap_interval_matches_the_exact_resampling_distribution():
    # two seeds at K=512 (0.3, 0.9): a resampled mean is 0.3, 0.6 or 0.9 with probability
    # 1/4, 1/2, 1/4; the others are the same for both seeds
    table = _finals({128: [0.1, 0.1], 512: [0.3, 0.9], 2048: [1.0, 1.0]})
    row = sm.threshold_bootstrap(table, n_boot=4000, seed=1).iloc[0]
    at_09 = 128 * 4 ** (0.4 / 0.8)  # = 256: mean 0.9 crosses 0.5 between 128 (0.1) and 512
    at_03 = 512 * 4 ** (0.2 / 0.7)  # mean 0.3: the crossing moves between 512 and 2048 (1.0)
    assert row["lo"] == pytest.approx(at_09) and row["hi"] == pytest.approx(at_03)
    assert row["threshold"] == pytest.approx(128 * 4 ** (0.4 / 0.5))  # mean 0.6
    plain = sm.threshold_bootstrap(table, interpolate=False, n_boot=4000).iloc[0]
    assert (plain["threshold"], plain["lo"], plain["hi"]) == (512.0, 512.0, 2048.0)


def test_threshold_bootstrap_counts_resamples_that_never_reach_the_level_and_splits_by_group():
    table = _finals({128: [0.1, 0.1], 512: [0.2, 0.2], 2048: [0.4, 0.6]})
    row = sm.threshold_bootstrap(table, interpolate=False, n_boot=2000).iloc[0]
    assert row["threshold"] == 2048.0 and row["hi"] == math.inf
    assert row["reached"] == pytest.approx(0.75, abs=0.04)  # mean 0.4 (1 in 4 resamples) never reaches 0.5
    assert sm.format_threshold_interval(row, 2048) == "2048 [2048, > 2048]"
    never = _finals({128: [0.1], 512: [0.2]})
    row = sm.threshold_bootstrap(never, n_boot=50).iloc[0]
    assert math.isnan(row["threshold"]) and row["lo"] == math.inf and row["reached"] == 0.0
    assert sm.format_threshold_interval(row, 512) == "> 512 [> 512, > 512]"
    both = pd.concat(
        [
            _finals({128: [0.1, 0.2], 512: [0.9, 0.8]}).assign(heads=1),
            _finals({128: [0.6, 0.7], 512: [0.9, 1.0]}).assign(heads=8),
        ]
    )
    out = sm.threshold_bootstrap(both, by=["heads"], interpolate=False, n_boot=100).set_index("heads")
    assert out.loc[1, "threshold"] == 512.0 and out.loc[8, "threshold"] == 128.0
    assert out.loc[8, "lo"] == out.loc[8, "hi"] == 128.0  # both seeds of heads=8 reach 0.5 at K=128
    with pytest.raises(ValueError, match="model.n_heads"):
        sm.threshold_bootstrap(both, by=["model.n_heads"])
    with pytest.raises(ValueError, match="n_boot"):
        sm.threshold_bootstrap(both, n_boot=0)


# --------------------------------------------------------------------------- per-seed crossings
def test_seed_crossings_take_each_seeds_own_curve_and_its_grid_cell():
    # seed 0 crosses between 128 (0.1) and 512 (0.9); seed 1 only at 2048; seed 2 already at 128
    table = _finals({128: [0.1, 0.2, 0.6], 512: [0.9, 0.4, 0.8], 2048: [1.0, 0.6, 1.0]})
    out = sm.seed_crossings(table).set_index("seed")
    assert out.loc[0, "crossing"] == pytest.approx(128 * 4 ** (0.4 / 0.8))
    assert (out.loc[0, "cell_lo"], out.loc[0, "cell_hi"]) == (128.0, 512.0)
    assert out.loc[1, "crossing"] == pytest.approx(512 * 4 ** (0.1 / 0.2))
    assert (out.loc[1, "cell_lo"], out.loc[1, "cell_hi"]) == (512.0, 2048.0)
    assert out.loc[2, "crossing"] == 128.0 and (out.loc[2, "cell_lo"], out.loc[2, "cell_hi"]) == (0.0, 128.0)
    plain = sm.seed_crossings(table, interpolate=False).set_index("seed")
    assert list(plain["crossing"]) == [512.0, 2048.0, 128.0]
    never = sm.seed_crossings(_finals({128: [0.1], 512: [0.2]})).iloc[0]
    assert math.isnan(never["crossing"]) and (never["cell_lo"], never["cell_hi"]) == (512.0, math.inf)


def test_seed_crossings_read_a_per_run_frame_too_and_split_by_group():
    runs = pd.DataFrame(
        {
            "pos": ["a"] * 4 + ["b"] * 4,
            "task.K": [128, 512] * 4,
            "seed": [0, 0, 1, 1] * 2,
            "final_icl": [0.1, 0.9, 0.3, 0.7, 0.6, 1.0, 0.7, 0.9],
        }
    )
    out = sm.seed_crossings(runs, by=["pos"], value="final_icl").set_index(["pos", "seed"])
    assert out.loc[("a", 1), "crossing"] == pytest.approx(128 * 4 ** (0.2 / 0.4))
    assert out.loc[("b", 0), "crossing"] == 128.0 and out.loc[("b", 1), "cell_hi"] == 128.0
    assert sm.seed_key(runs) == "seed" and sm.seed_key(_finals({128: [0.1]})) == "train.seed"
    with pytest.raises(ValueError, match="nope"):
        sm.seed_crossings(runs, "nope", value="final_icl")


def test_claim_parser_adds_from_results_only_when_asked(tmp_path):
    parser = sm.claim_parser("doc", ["g.toml"], tmp_path, from_results="x_runs.csv")
    args = parser.parse_args(["--from-results"])
    assert args.from_results == ""
    with pytest.raises(SystemExit, match="no per-run table"):
        sm.from_results_path(args, "x_runs.csv")
    (tmp_path / "x_runs.csv").write_text("run\n")
    assert sm.from_results_path(args, "x_runs.csv") == tmp_path / "x_runs.csv"
    assert parser.parse_args([]).from_results is None
    assert not hasattr(sm.claim_parser("doc", ["g.toml"], tmp_path).parse_args([]), "from_results")


def test_write_tables_writes_what_pandas_writes_and_leaves_an_old_file_whole_on_failure(
    tmp_path, capsys, monkeypatch
):
    frame = pd.DataFrame({"run": ["a", "b"], "icl": [0.123456, math.nan], "K": [128, 256]})
    sm.write_tables(tmp_path, "claim", ["# title", "", "body"], {"claim_runs.csv": frame})
    frame.to_csv(tmp_path / "direct.csv", index=False, float_format="%.4f")
    assert (tmp_path / "claim_runs.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()
    assert (tmp_path / "claim.md").read_text() == "# title\n\nbody\n" and "body" in capsys.readouterr().out

    def half_then_fail(self, text, *args, **kwargs):  # a write cut off halfway (disk full, kill)
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        sm.write_tables(tmp_path, "claim", ["new"], {"claim_runs.csv": frame.assign(icl=1.0)})
    monkeypatch.undo()
    assert (tmp_path / "claim_runs.csv").read_bytes() == (tmp_path / "direct.csv").read_bytes()
    assert (tmp_path / "claim.md").read_text() == "# title\n\nbody\n"  # not half-replaced either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claim.md", "claim_runs.csv", "direct.csv"]
