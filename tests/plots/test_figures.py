"""The plotly figures: returned (never shown), with the right traces, labels and markers."""

from __future__ import annotations

import math

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
                            ablated=clean + d,
                            delta=d,
                        )
                    )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- circuit formation
def test_circuit_formation_traces_and_onset_lines():
    fig = circuit_formation(make_scores())
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert names == [
        "accuracy: icl",
        "accuracy: iwl",
        "prev_token_label (L0H0)",
        "ih (L1H0)",
    ]  # tila is absent from this table; suites in SUITES order
    acc = fig.data[0]
    assert list(acc.x) == STEPS and np.allclose(acc.y, ramp(0.1, 0.9, 300, 500))
    assert fig.data[0].xaxis == "x" and fig.data[3].xaxis == "x2"  # two panels, shared x
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    # onsets of phases(): prev-token 200, induction 300, icl 400; a line in each panel
    xs = sorted(s.x0 for s in fig.layout.shapes)
    assert xs == pytest.approx([200, 200, 300, 300, 400, 400])
    labels = [a.text for a in fig.layout.annotations if "onset" in a.text]
    assert labels == ["prev-token onset: 200", "induction onset: 300", "icl accuracy onset: 400"]


def test_circuit_formation_log_x_and_options():
    fig = circuit_formation(make_scores(), log_x=True, suites=["icl"])
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert all(min(t.x) > 0 for t in fig.data)  # step 0 cannot sit on a log axis
    assert [t.name for t in fig.data][0] == "accuracy: icl" and len(fig.data) == 3
    # shapes stay in data units, annotations take log10 on a log axis
    assert sorted({s.x0 for s in fig.layout.shapes}) == pytest.approx([200, 300, 400])
    ann = sorted(a.x for a in fig.layout.annotations if "onset" in a.text)
    assert ann == pytest.approx([math.log10(200), math.log10(300), math.log10(400)])
    plain = circuit_formation(make_scores(), onsets=False)
    assert len(plain.layout.shapes) == 0
    # measures scored on another suite only: accuracy panel alone, icl onset still marked
    other = circuit_formation(make_scores(), measure_suite="test")
    assert [t.name for t in other.data] == ["accuracy: icl", "accuracy: iwl"]
    assert sorted({s.x0 for s in other.layout.shapes}) == pytest.approx([400])


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
