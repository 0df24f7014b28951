"""The plotly figures: returned (never shown), with the right traces, labels and markers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from mmicl_interp.analyses.correlation import pearson
from mmicl_interp.plots import figures
from mmicl_interp.plots.figures import (
    ablation_bars,
    circuit_formation,
    export_png,
    head_heatmaps,
    ih_vs_icl,
    patching_heatmap,
)
from tests.analyses.test_correlation import STEPS, make_scores, ramp


@pytest.fixture(autouse=True)
def never_show(monkeypatch):
    """Figures are returned, never shown: showing one fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError("a plotting function called show()")

    monkeypatch.setattr(go.Figure, "show", fail)
    monkeypatch.setattr("plotly.io.show", fail)


def ablation_table() -> pd.DataFrame:
    rows = []
    for method, scale in (("zero", 1.0), ("mean", 0.5)):
        for suite in ("icl", "iwl"):
            for heads, drop in (("L0H0", 0.1), ("L1H0", 0.6), ("L0H0+L1H0", 0.7)):
                d = -drop * scale if suite == "icl" else -0.01
                for metric, clean in (("accuracy", 0.9), ("loss", 0.5)):
                    rows.append(
                        dict(
                            suite=suite,
                            metric=metric,
                            heads=heads,
                            method=method,
                            clean=clean,
                            value=clean + d,
                            delta=d,
                        )
                    )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- circuit formation
def onset_lines(fig: go.Figure) -> list[tuple[float, str]]:
    """(x, legend name) of the dashed onset lines."""
    return sorted((s.x0, s.name) for s in fig.layout.shapes if s.legendgroup == "onsets")


def legend_onsets(fig: go.Figure) -> list[str]:
    """Names of every onset legend entry: lines (shapes) and "no onset" entries (empty traces)."""
    shapes = [(s.legendrank, s.name) for s in fig.layout.shapes if s.showlegend and s.legendgroup == "onsets"]
    traces = [(t.legendrank, t.name) for t in fig.data if t.legendgroup == "onsets"]
    return [name for _, name in sorted(shapes + traces)]


def test_circuit_formation_traces_and_onset_lines():
    fig = circuit_formation(make_scores())
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert names == [
        "accuracy: icl",
        "accuracy: iwl",
        "prev_token_label (L0H0)",
        "ih (L1H0)",
    ]  # tila is absent from this table; suites in SUITES order; every onset drawn: no empty entries
    acc = fig.data[0]
    assert list(acc.x) == STEPS and np.allclose(acc.y, ramp(0.1, 0.9, 300, 500))
    assert fig.data[0].xaxis == "x" and fig.data[3].xaxis == "x2"  # two panels, shared x
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    # onsets of phases(): prev-token 200, induction 300, icl 400 (half of each ramp's rise);
    # one line through both panels each, named with its step in the legend (no floating labels)
    assert onset_lines(fig) == [
        (200, "prev-token onset (prev_token_label L0H0): 200"),
        (300, "induction onset (ih L1H0): 300"),
        (400, "icl accuracy onset: 400"),
    ]
    assert all(s.yref == "paper" and (s.y0, s.y1) == (0, 1) for s in fig.layout.shapes)
    assert not [a for a in fig.layout.annotations if "onset" in a.text]
    assert "rises by >= 0.1" in fig.layout.shapes[0].legendgrouptitle.text


def test_circuit_formation_log_x_and_options():
    fig = circuit_formation(make_scores(), log_x=True, suites=["icl"])
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert all(min(t.x) > 0 for t in fig.data)  # step 0 cannot sit on a log axis
    assert [t.name for t in fig.data][0] == "accuracy: icl" and len(fig.data) == 3
    # shapes stay in data units on a log axis
    assert [x for x, _ in onset_lines(fig)] == pytest.approx([200, 300, 400])
    plain = circuit_formation(make_scores(), onsets=False)
    assert len(plain.layout.shapes) == 0 and legend_onsets(plain) == []
    # measures scored on another suite only: accuracy panel alone, icl onset still marked,
    # the others named in the legend as absent
    other = circuit_formation(make_scores(), measure_suite="test")
    assert [t.name for t in other.data if t.legendgroup != "onsets"] == ["accuracy: icl", "accuracy: iwl"]
    assert [x for x, _ in onset_lines(other)] == pytest.approx([400])
    assert legend_onsets(other) == [
        "prev-token onset: no curve (prev_token_label not scored)",
        "induction onset: no curve (ih not scored)",
        "icl accuracy onset: 400",
    ]


def test_onsets_only_where_the_curve_rises_and_labels_never_overlap():
    """A measure that never forms gets no onset line, and says why; close onsets stay legible.

    Old behaviour: a line at the flat curve's "half rise" (0.009 of 0.018) and floating
    annotations stacked at the lines' x positions.
    """
    flat_ih = ramp(0.0, 0.018, 200, 600)  # rises 0.018: far below 0.1, but phases(min_rise=0) would mark it
    heads = {
        (0, 0): {"prev_token_label": ramp(0.1, 0.9, 300, 500), "ih": np.full(len(STEPS), 0.001)},
        (1, 0): {"prev_token_label": np.full(len(STEPS), 0.1), "ih": flat_ih},
    }
    scores = make_scores(heads=heads, icl=ramp(0.1, 0.9, 310, 510))  # onsets 400 and 410: 10 steps apart
    fig = circuit_formation(scores)
    lines = onset_lines(fig)
    assert [x for x, _ in lines] == pytest.approx([400, 410])  # no line for induction
    legend = legend_onsets(fig)
    assert legend == [
        "prev-token onset (prev_token_label L0H0): 400",
        "induction onset (ih L1H0): no onset (rise 0.018 < 0.1)",
        "icl accuracy onset: 410",
    ]
    # every label is a distinct legend entry: none is drawn on the plot where it could overlap
    assert not [a for a in fig.layout.annotations if "onset" in a.text]
    marks = figures.onset_marks(scores)
    assert marks["rise"].to_numpy() == pytest.approx([0.8, 0.018, 0.8])
    assert marks["shown"].tolist() == [True, False, True]
    # the threshold is a parameter: at min_rise 0.01 the small rise counts (half of it at step 400)
    low = circuit_formation(scores, min_rise=0.01)
    assert [x for x, _ in onset_lines(low)] == pytest.approx([400, 400, 410])
    assert "rises by >= 0.01" in low.layout.shapes[0].legendgrouptitle.text
    with pytest.raises(ValueError, match="min_rise"):
        figures.onset_marks(scores, min_rise=-1)


def test_circuit_formation_errors():
    both = pd.concat([make_scores("a"), make_scores("b")])
    with pytest.raises(ValueError, match="several"):
        circuit_formation(both)
    assert circuit_formation(both, run="b").layout.title.text.endswith("b")
    with pytest.raises(ValueError, match="suites.*test"):
        circuit_formation(make_scores(), suites=["test"])
    with pytest.raises(ValueError, match="empty"):
        circuit_formation(make_scores().iloc[:0])


# --------------------------------------------------------------------------- heatmaps
def test_head_heatmaps_layout():
    scores = make_scores()
    fig = head_heatmaps(scores, "ih")
    (hm,) = fig.data
    assert list(hm.y) == ["L0H0", "L0H1", "L1H0"]
    assert list(hm.x) == [str(s) for s in STEPS] and fig.layout.xaxis.type == "category"
    z = np.asarray(hm.z)
    assert z.shape == (3, len(STEPS))
    assert np.allclose(z[2], ramp(0.0, 0.6, 200, 400))  # L1H0's ih curve
    assert fig.layout.yaxis.autorange == "reversed"  # L0H0 on top

    two = head_heatmaps(scores, ["ih", "prev_token_label"], x_scale="log")
    assert [t.name for t in two.data] == ["ih", "prev_token_label"]
    assert list(two.data[1].x) == STEPS and two.layout.xaxis.type == "log"


def test_head_heatmaps_share_one_colour_scale():
    """Panels share one coloraxis on at least [0, 1]: a head at 0.02 is not drawn as bright as
    one at 0.9 (old behaviour: each panel scaled to its own maximum)."""
    heads = {
        (0, 0): {"prev_token_label": ramp(0.1, 0.9, 100, 300), "ih": ramp(0.0, 0.02, 100, 300)},
        (1, 0): {"prev_token_label": np.full(len(STEPS), 0.1), "ih": ramp(-0.01, 0.015, 200, 400)},
    }
    fig = head_heatmaps(make_scores(heads=heads), ["ih", "prev_token_label"])
    assert [t.coloraxis for t in fig.data] == ["coloraxis", "coloraxis"]
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == pytest.approx((-0.01, 1.0))  # [0, 1] widened to the data's -0.01
    # the ih panel's brightest cell sits low on the scale
    assert (0.02 - axis.cmin) / (axis.cmax - axis.cmin) < 0.05
    single = head_heatmaps(make_scores(heads=heads), "ih")
    assert (single.layout.coloraxis.cmin, single.layout.coloraxis.cmax) == pytest.approx((-0.01, 1.0))
    own = head_heatmaps(make_scores(heads=heads), "ih", zrange=None)  # the data's range
    assert (own.layout.coloraxis.cmin, own.layout.coloraxis.cmax) == pytest.approx((-0.01, 0.02))
    with pytest.raises(ValueError, match="zrange"):
        head_heatmaps(make_scores(heads=heads), "ih", zrange=(1.0, 0.0))


def test_head_heatmaps_errors():
    with pytest.raises(ValueError, match="'tiia'"):
        head_heatmaps(make_scores(), "tiia")
    with pytest.raises(ValueError, match="x_scale"):
        head_heatmaps(make_scores(), "ih", x_scale="sqrt")
    with pytest.raises(ValueError, match="at least one"):
        head_heatmaps(make_scores(), [])


# --------------------------------------------------------------------------- ih vs icl
def test_ih_vs_icl_scatter_fit_and_r():
    scores = make_scores()
    fig = ih_vs_icl(scores)
    points, line = fig.data
    ih, acc = ramp(0.0, 0.6, 200, 400), ramp(0.1, 0.9, 300, 500)
    assert np.allclose(points.x, ih) and np.allclose(points.y, acc)
    assert list(points.customdata) == STEPS and len(points.marker.color) == len(STEPS)
    r = pearson(ih, acc)
    assert f"r = {r:.3f}" in fig.layout.title.text and "L1H0" in fig.layout.title.text
    slope, intercept = np.polyfit(ih, acc, 1)
    assert np.allclose(line.y, slope * np.asarray(line.x) + intercept)


def test_ih_vs_icl_chosen_head_and_degenerate():
    fig = ih_vs_icl(make_scores(), layer=0, head=0)  # constant ih: no r, no line
    assert len(fig.data) == 1 and "r = n/a" in fig.layout.title.text
    with pytest.raises(ValueError, match="together"):
        ih_vs_icl(make_scores(), layer=1)
    with pytest.raises(ValueError, match="L3H0"):
        ih_vs_icl(make_scores(), layer=3, head=0)


# --------------------------------------------------------------------------- ablation, patching
def test_ablation_bars():
    fig = ablation_bars(ablation_table())
    assert [(t.name, t.xaxis) for t in fig.data] == [("icl", "x"), ("iwl", "x"), ("icl", "x2"), ("iwl", "x2")]
    icl_zero = fig.data[0]
    assert list(icl_zero.x) == ["L0H0", "L1H0", "L0H0+L1H0"]
    assert np.allclose(icl_zero.y, [-0.1, -0.6, -0.7])
    assert [a.text for a in fig.layout.annotations] == ["zero", "mean"]
    loss = ablation_bars(ablation_table(), metric="loss", value="ablated")
    assert np.allclose(loss.data[0].y, [0.4, -0.1, -0.2])


def test_ablation_bars_errors():
    with pytest.raises(ValueError, match="lacks columns.*delta"):
        ablation_bars(ablation_table().drop(columns="delta"))
    with pytest.raises(ValueError, match="'kl'.*accuracy, loss"):
        ablation_bars(ablation_table(), metric="kl")
    with pytest.raises(ValueError, match="empty"):
        ablation_bars(ablation_table().iloc[:0])
    with pytest.raises(ValueError, match="value"):
        ablation_bars(ablation_table(), value="clean")


def test_patching_heatmap_diverging_centred():
    values = torch.tensor([[0.5, -2.0, 0.0], [1.0, 0.25, -0.5]])
    fig = patching_heatmap(values, ["item", "label", "query"], ["L0", "L1"], "resid patching")
    (hm,) = fig.data
    assert np.allclose(hm.z, values.numpy())
    assert hm.zmid == 0 and hm.zmin == -2.0 and hm.zmax == 2.0
    assert list(hm.x) == ["item", "label", "query"] and list(hm.y) == ["L0", "L1"]
    assert fig.layout.title.text == "resid patching"
    df = pd.DataFrame(np.eye(2), index=["L0H0", "L0H1"], columns=["L1H0", "L1H1"])
    fig = patching_heatmap(df, title="path")
    assert list(fig.data[0].x) == ["L1H0", "L1H1"] and list(fig.data[0].y) == ["L0H0", "L0H1"]
    assert patching_heatmap(np.zeros((2, 2))).data[0].zmax == 1.0  # all-zero: a valid scale


def test_patching_panels_share_one_symmetric_scale():
    """Path patching into k / q / v: one scale for all panels, so q at 1e-4 looks like nothing
    next to k at 0.993 (old behaviour: each heatmap scaled to its own maximum)."""
    nan = float("nan")
    k = torch.tensor([[nan, 0.993], [nan, nan]])
    q = torch.tensor([[nan, 1e-4], [nan, nan]])
    v = torch.tensor([[nan, -0.004], [nan, nan]])
    names = ["L0H0", "L1H0"]
    fig = figures.patching_panels({"k": k, "q": q, "v": v}, names, names, "path", x_title="receiver")
    assert [t.name for t in fig.data] == ["k", "q", "v"]
    assert [t.coloraxis for t in fig.data] == ["coloraxis"] * 3
    assert all(t.zmin is None and t.zmax is None for t in fig.data)  # no per-panel scale
    m = max(float(np.nanmax(np.abs(x.numpy()))) for x in (k, q, v))
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == pytest.approx((-m, m)) and m == pytest.approx(0.993)
    assert axis.colorscale[0][1] != axis.colorscale[-1][1]  # diverging: two different ends
    # q's value sits at the scale's centre (colour of 0), k's at the top
    assert (1e-4 - axis.cmin) / (axis.cmax - axis.cmin) == pytest.approx(0.5, abs=1e-3)
    assert [fig.data[i].xaxis for i in range(3)] == ["x", "x2", "x3"]  # side by side
    assert np.allclose(np.asarray(fig.data[0].z, float), k.numpy(), equal_nan=True)
    # stacked panels of different shapes, each with its own labels and axis titles
    frames = {
        "all positions": pd.DataFrame([[0.5], [-2.0]], index=["L0", "L1"], columns=["H0"]),
        "by position": pd.DataFrame([[0.1, 0.2, 0.0]], index=["L0H0"], columns=["a", "b", "c"]),
    }
    rows = figures.patching_panels(frames, arrange="rows", x_title=["head", "position"], y_title="layer")
    assert (rows.layout.coloraxis.cmin, rows.layout.coloraxis.cmax) == (-2.0, 2.0)
    assert list(rows.data[1].x) == ["a", "b", "c"] and list(rows.data[1].y) == ["L0H0"]
    assert rows.layout.xaxis.title.text == "head" and rows.layout.xaxis2.title.text == "position"


def test_patching_panels_errors():
    with pytest.raises(ValueError, match="non-empty"):
        figures.patching_panels({})
    with pytest.raises(ValueError, match="arrange"):
        figures.patching_panels({"k": np.zeros((2, 2))}, arrange="grid")
    with pytest.raises(ValueError, match="panel 'q' must be 2-D"):
        figures.patching_panels({"k": np.zeros((2, 2)), "q": np.zeros(3)})
    with pytest.raises(ValueError, match="x_title has 1 titles for 2 panels"):
        figures.patching_panels({"k": np.zeros((2, 2)), "q": np.zeros((2, 2))}, x_title=["a"])


def test_patching_heatmap_errors():
    with pytest.raises(ValueError, match="2-D"):
        patching_heatmap(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="x_labels has 2 labels but values has 3 columns"):
        patching_heatmap(np.zeros((2, 3)), ["a", "b"], ["r", "s"])
    with pytest.raises(ValueError, match="y_labels"):
        patching_heatmap(np.zeros((2, 3)), ["a", "b", "c"], ["r"])


def test_png_export_is_optional(monkeypatch, tmp_path):
    monkeypatch.setattr(figures, "png_export_available", lambda: False)
    with pytest.raises(RuntimeError, match="kaleido"):
        export_png(go.Figure(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_png_export_retries_one_failed_render_and_not_two(monkeypatch, tmp_path):
    """Under load kaleido can fail once before Chromium's page is ready; a second failure is real."""
    import sys
    import types

    calls = []

    def flaky(fig, opts, kopts):
        calls.append(opts["format"])
        if len(calls) <= fails:
            raise RuntimeError("ReferenceError: kaleido_scopes is not defined")
        return b"\x89PNG fake"

    monkeypatch.setitem(sys.modules, "kaleido", types.SimpleNamespace(calc_fig_sync=flaky))
    monkeypatch.setattr(figures, "png_export_available", lambda: True)
    fails = 1
    export_png(go.Figure(), tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes() == b"\x89PNG fake" and calls == ["png", "png"]
    calls.clear()
    fails = 2
    with pytest.raises(RuntimeError, match="kaleido_scopes"):
        export_png(go.Figure(), tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists() and len(calls) == 2
