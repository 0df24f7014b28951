"""Figure pieces the claim scripts share: colours, the icl = 0.5 level, per-run curves and
mean lines with min/max error bars (a range over seeds, not an interval)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

POSITION_COLOURS = {"onehot": "#1f77b4", "learned": "#2ca02c", "rope": "#d62728", "rope_paper": "#ff7f0e"}
"""One colour per position encoding (``model.positions``), the same in every figure."""
OTHER = "#7f7f7f"
"""The colour of a value without its own."""


def panels(titles: Sequence[str]) -> go.Figure:
    """One row of subplots, one per title."""
    return make_subplots(rows=1, cols=len(titles), subplot_titles=list(titles))


def add_level(fig: go.Figure, level: float = 0.5, **where) -> None:
    """The dotted grey line at ``level`` (icl 0.5: where a crossing is read)."""
    fig.add_hline(y=level, line=dict(color="grey", dash="dot"), **where)


def value_colours(values: Sequence) -> list[str]:
    """``len(values)`` colours along Viridis, for an ordered axis (e.g. model sizes)."""
    return sample_colorscale("Viridis", [i / max(len(values) - 1, 1) for i in range(len(values))])


def add_run_curves(
    fig: go.Figure, curves: Mapping[str, pd.Series], name: str, colour: str, row: int, col: int
) -> None:
    """One line per run (``curves``: run -> series indexed by step), the first opaque, the rest
    half-transparent, grouped under ``name`` in the legend without an entry of their own."""
    for i, curve in enumerate(curves.values()):
        fig.add_scatter(
            x=curve.index,
            y=curve.values,
            name=name,
            legendgroup=name,
            showlegend=False,
            mode="lines",
            line=dict(color=colour),
            opacity=1.0 if i == 0 else 0.5,
            row=row,
            col=col,
        )


def range_trace(per: pd.DataFrame, x: str, y: str, **scatter) -> go.Scatter:
    """A lines+markers trace of ``per`` (columns ``(column, "mean" | "min" | "max")``, as from
    ``groupby(...).agg(["mean", "min", "max"])``): mean of ``y`` over mean of ``x``, min/max of
    ``y`` as error bars; the index as hover text."""
    return go.Scatter(
        x=per[(x, "mean")],
        y=per[(y, "mean")],
        error_y=dict(
            type="data",
            symmetric=False,
            array=per[(y, "max")] - per[(y, "mean")],
            arrayminus=per[(y, "mean")] - per[(y, "min")],
        ),
        text=[str(i) for i in per.index],
        mode="lines+markers",
        **scatter,
    )


__all__ = [
    "OTHER",
    "POSITION_COLOURS",
    "add_level",
    "add_run_curves",
    "panels",
    "range_trace",
    "value_colours",
]
