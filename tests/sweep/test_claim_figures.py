"""The tables and figure loops the claim scripts share (mmicl_interp.sweep.measures,
mmicl_interp.sweep.figures): each against a hand computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from mmicl_interp.sweep import measures
from mmicl_interp.sweep.figures import (
    DASHES,
    OTHER,
    SUITE_COLOURS,
    accuracy_axes,
    add_curves_by,
    add_suites_by_group,
    add_values_by_suite,
    panels,
)
from mmicl_interp.sweep.measures import (
    final_table,
    fixed_text,
    grid_evidence,
    number_texts,
    over_learners,
    plateau_runs_table,
    spread_texts,
    threshold_rows,
    threshold_table,
)
from tests.sweep import sweep_table

POS, K, HEADS = "model.positions", "task.K", "model.n_heads"


def _summary(key: str, curves: dict, suites=("icl", "iwl")) -> pd.DataFrame:
    """A final_values-shaped summary: per (key value, K, suite) mean / min / max / count, from
    ``curves`` {key value: {K: (mean, min, max)}}; iwl is 1 - icl."""
    rows = []
    for value, per_k in curves.items():
        for k, (mean, lo, hi) in per_k.items():
            for suite in suites:
                m, a, b = (mean, lo, hi) if suite == "icl" else (1 - mean, 1 - hi, 1 - lo)
                rows.append({key: value, K: k, "suite": suite, "mean": m, "min": a, "max": b, "count": 2})
    return pd.DataFrame(rows)


def _grid(name: str, tasks: dict, steps: int = 10) -> SimpleNamespace:
    """A stand-in Grid: point name -> task (N, B)."""
    points = [
        SimpleNamespace(name=n, config=SimpleNamespace(task=t, train=SimpleNamespace(steps=steps)))
        for n, t in tasks.items()
    ]
    return SimpleNamespace(name=name, points=lambda: points, fixed={})


def test_plateau_runs_table_names_the_grid_and_scores_the_common_suite(monkeypatch):
    tasks = {"a": SimpleNamespace(N=8, B=2), "b": SimpleNamespace(N=8, B=4)}
    result = SimpleNamespace(
        table=sweep_table({"a": (64, 0, 0.625, 0.2), "b": (128, 0, 0.5, 0.9)}),
        results=[SimpleNamespace(run_dir=f"/runs/{n}") for n in tasks],
    )
    runs = plateau_runs_table(_grid("g", tasks), result)
    assert list(runs.columns[:2]) == ["grid", "run"] and (runs["grid"] == "g").all()
    # (icl - B/N) / (1 - B/N): a at plateau 2/8 -> 0.375 / 0.75; b at its plateau 4/8 -> 0
    assert list(runs["icl_rel"]) == pytest.approx([0.5, 0.0]) and list(runs["plateau"]) == [0.25, 0.5]
    assert list(runs["iwl"]) == pytest.approx([0.2, 0.9]) and "icl_b2" not in runs
    seen = []
    monkeypatch.setattr(
        measures,
        "common_suite_scores",
        lambda run_dir, B, n: seen.append((str(run_dir), B, n)) or {f"icl_b{B}": 0.75, f"ih_b{B}": 0.3},
    )
    runs = plateau_runs_table(_grid("g", tasks), result, common_B=2, n_seqs=64)
    assert seen == [("/runs/a", 2, 64), ("/runs/b", 2, 64)]
    # the common suite's plateau is 2/8 for every run: (0.75 - 0.25) / 0.75
    assert list(runs["icl_b2_rel"]) == pytest.approx([2 / 3, 2 / 3]) and list(runs["ih_b2"]) == [0.3, 0.3]


def test_grid_evidence_and_fixed_text(monkeypatch):
    monkeypatch.setattr(measures, "n_unique_configs", lambda dirs: len(set(dirs)))
    result = SimpleNamespace(results=[SimpleNamespace(run_dir=d) for d in ("x", "y", "x")])
    grid = _grid("g", {"a": SimpleNamespace(N=8, B=2)}, steps=3000)
    assert grid_evidence(grid, result, "cmd") == dict(n_unique_configs=2, steps=3000, command="cmd")
    grid.fixed = {"task.K": 128, "model.n_heads": 2, "task.B": 1}
    assert fixed_text(grid) == "K = 128, B = 1" and fixed_text(grid, "model.") == "n_heads = 2"
    grid.fixed = {}
    assert fixed_text(grid) == ""


def test_over_learners_skips_runs_that_never_learned():
    runs = pd.DataFrame(
        {
            POS: ["a", "a", "a", "b"],
            K: [64, 64, 64, 64],
            "final_icl": [0.4, 0.6, 0.8, 0.1],
            "icl_onset": [100.0, 200.0, 400.0, 50.0],
        }
    )
    assert over_learners(runs, [POS, K], "icl_onset").to_dict() == {("a", 64): 300.0}  # (200 + 400) / 2
    assert over_learners(runs, [POS, K], "icl_onset", "max").to_dict() == {("a", 64): 400.0}


def test_cell_texts_spread_and_numbers():
    runs = pd.DataFrame({POS: ["a", "a", "b"], K: [64, 64, 64], "x": [0.2, 0.4, 0.5]})
    assert spread_texts(runs, [POS, K], "x") == {("a", 64): "0.300 [0.200, 0.400]", ("b", 64): "0.500"}
    assert spread_texts(runs, [POS], "x") == {"a": "0.300 [0.200, 0.400]", "b": "0.500"}
    values = pd.Series({("a", 64): 12.4, ("b", 64): math.nan})
    assert number_texts(values) == {("a", 64): "12", ("b", 64): "-"}
    assert number_texts(pd.Series({1: 0.12345}), 3) == {1: "0.123"}


def test_final_table_rows_in_order_with_extra_columns():
    summary = _summary(
        POS, {"onehot": {64: (0.3, 0.2, 0.4), 128: (0.8, 0.7, 0.9)}, "rope": {64: (0.1, 0.1, 0.1)}}
    )
    lines = final_table(summary, [POS, K], extra={"onset": {("rope", 64): "120"}}, order=["rope", "onehot"])
    assert lines == [
        "| positions | K | icl | iwl | onset |",
        "|---|---|---|---|---|",
        "| rope | 64 | 0.100 [0.100, 0.100] | 0.900 [0.900, 0.900] | 120 |",
        "| onehot | 64 | 0.300 [0.200, 0.400] | 0.700 [0.600, 0.800] | - |",
        "| onehot | 128 | 0.800 [0.700, 0.900] | 0.200 [0.100, 0.300] | - |",
    ]
    one = final_table(summary[summary[POS] == "rope"], [K], ("icl", "icl_flip"), {"r": {64: "z"}})
    assert one[0] == "| K | icl | icl_flip | r |" and one[2] == "| 64 | 0.100 [0.100, 0.100] | - | z |"


def test_threshold_rows_read_the_mean_curve_and_each_seed():
    curves = {
        1: {64: (0.2, 0.2, 0.2), 128: (0.6, 0.6, 0.6), 256: (0.9, 0.9, 0.9)},
        2: {64: (0.1,) * 3, 256: (0.3,) * 3},
    }
    summary = _summary(HEADS, curves)
    runs = pd.DataFrame(
        [
            {HEADS: h, K: k, "seed": s, "icl": mean}
            for h, per_k in curves.items()
            for k, (mean, _, _) in per_k.items()
            for s in (0, 1)
        ]
    )
    rows = threshold_rows(summary, runs, K, HEADS)
    # n_heads 1: first K with mean >= 0.5 is 128; on log K between 64 (0.2) and 128 (0.6):
    # 64 * 2 ** ((0.5 - 0.2) / (0.6 - 0.2)) = 107.6; both seeds cross there (a zero-width interval)
    assert rows[0][:3] == [1, "128", "108"]
    assert rows[0][3] == "108 [108, 108] (95% t of log K over 2 seeds), in K (64, 128]"
    assert rows[1][:3] == [2, "> 256", "> 256"]
    assert (
        rows[1][3].startswith("grid cells only: 2 of 2 seeds never reach the level")
        and "K > 256" in rows[1][3]
    )
    assert [r[0] for r in threshold_rows(summary, runs, K, HEADS, order=[2, 1])] == [2, 1]
    only = summary[summary[HEADS] == 1]
    assert threshold_rows(only, runs[runs[HEADS] == 1], K) == [rows[0][1:]]  # no group: one row
    table = threshold_table(summary, runs, HEADS, K)
    assert table[0] == (
        "| n_heads | threshold K | crossing K (log-interpolated) | crossing K per seed [95% t], grid cell |"
    )
    assert table[2] == "| " + " | ".join(str(c) for c in rows[0]) + " |"


def test_accuracy_axes_span_0_to_1_with_the_level_in_every_panel():
    fig = panels(["a", "b"])
    for col in (1, 2):  # plotly draws the level only in panels with data
        fig.add_scatter(x=[1], y=[0.5], row=1, col=col)
    accuracy_axes(fig)
    assert list(fig.layout.yaxis.range) == [0, 1.05] and list(fig.layout.yaxis2.range) == [0, 1.05]
    assert fig.layout.yaxis.title.text == "final accuracy" and fig.layout.yaxis2.title.text is None
    assert [s.y0 for s in fig.layout.shapes] == [0.5, 0.5]


def test_suites_by_group_share_a_panel_one_dash_per_group():
    summary = _summary(
        "task.alpha", {0.0: {64: (0.2, 0.1, 0.3), 128: (0.6, 0.5, 0.7)}, 1.0: {64: (0.4, 0.4, 0.4)}}
    )
    fig = panels(["a", "b"])
    add_suites_by_group(fig, summary, K, ["task.alpha"], col=2, legend=False, log_x=True)
    assert [t.name for t in fig.data] == ["icl alpha=0.0", "iwl alpha=0.0", "icl alpha=1.0", "iwl alpha=1.0"]
    assert [t.line.dash for t in fig.data] == [DASHES[0], DASHES[0], DASHES[1], DASHES[1]]
    assert [t.line.color for t in fig.data] == [SUITE_COLOURS["icl"], SUITE_COLOURS["iwl"]] * 2
    assert all(t.xaxis == "x2" and t.showlegend for t in fig.data)  # groups to tell apart: in the legend
    first = fig.data[0]
    assert list(first.x) == [64, 128] and list(first.y) == pytest.approx([0.2, 0.6])
    assert list(first.error_y.array) == pytest.approx([0.1, 0.1])
    assert list(first.error_y.arrayminus) == pytest.approx([0.1, 0.1])
    assert fig.layout.xaxis2.type == "log" and fig.layout.xaxis2.title.text == "K"
    fig = panels(["a"])
    add_suites_by_group(fig, summary[summary["task.alpha"] == 0.0], K, [], col=1, legend=False)
    assert [(t.name, t.showlegend) for t in fig.data] == [("icl", False), ("iwl", False)]
    assert fig.layout.xaxis.type == "linear"


def test_values_by_suite_one_panel_per_suite_one_colour_per_value():
    summary = _summary(HEADS, {1: {64: (0.2, 0.1, 0.3)}, 8: {64: (0.6, 0.5, 0.7)}})
    fig = panels(["a", "b", "c"])
    add_values_by_suite(fig, summary, K, HEADS, col=2)
    assert [(t.name, t.xaxis, t.showlegend) for t in fig.data] == [
        ("n_heads=1", "x2", True),
        ("n_heads=1", "x3", False),
        ("n_heads=8", "x2", True),
        ("n_heads=8", "x3", False),
    ]
    # Viridis from end to end: #440154 and #fde725
    assert [t.line.color for t in fig.data] == ["rgb(68, 1, 84)"] * 2 + ["rgb(253, 231, 37)"] * 2
    assert list(fig.data[1].y) == pytest.approx([0.8]) and fig.data[0].legendgroup is None
    fig = panels(["a"])
    add_values_by_suite(
        fig, summary, K, HEADS, ("icl",), values=[8, 1], colours={8: "red"}, name=str, legendgroup=True
    )
    assert [(t.name, t.line.color, t.legendgroup) for t in fig.data] == [("8", "red", "8"), ("1", OTHER, "1")]


def test_curves_by_draw_each_runs_accuracy_or_best_head():
    rows = []
    for run, pos, final in (("r1", "onehot", 0.9), ("r2", "onehot", 0.7), ("r3", "rope", 0.4)):
        for step, scale in ((0, 0.5), (25, 1.0)):
            base = dict(run=run, step=step, suite="icl", **{POS: pos})
            rows.append(dict(base, metric="accuracy", value=final * scale, layer=math.nan, head=math.nan))
            # head (0, 1) ends strongest though (0, 0) starts ahead
            rows.append(dict(base, metric="ih", value=0.3, layer=0, head=0))
            rows.append(dict(base, metric="ih", value=0.6 * scale * 2 - 0.3, layer=0, head=1))
    scores = pd.DataFrame(rows)
    fig = panels(["a", "b"])
    colours = {"onehot": "blue"}
    add_curves_by(fig, scores, POS, "accuracy", 1, ["onehot", "rope"], colours)
    add_curves_by(fig, scores, POS, "ih", 2, ["rope"], colours)
    acc = [t for t in fig.data if t.xaxis == "x"]
    assert [(t.name, t.line.color, t.opacity) for t in acc] == [
        ("onehot", "blue", 1.0),
        ("onehot", "blue", 0.5),
        ("rope", OTHER, 1.0),
    ]
    assert list(acc[1].x) == [0, 25] and list(acc[1].y) == pytest.approx([0.35, 0.7])
    (ih,) = [t for t in fig.data if t.xaxis == "x2"]
    assert list(ih.y) == pytest.approx([0.3, 0.9]) and ih.name == "rope"
