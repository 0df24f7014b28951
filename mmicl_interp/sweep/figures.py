"""Figure pieces the claim scripts share: colours, the icl = 0.5 level, per-run curves and
mean lines with min/max error bars (a range over seeds, not an interval), and the loops that draw
a sweep's final accuracies by group."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from mmicl_interp.sweep.measures import best_head_curves
from mmicl_interp.sweep.summary import short, spread_trace

POSITION_COLOURS = {"onehot": "#1f77b4", "learned": "#2ca02c", "rope": "#d62728", "rope_paper": "#ff7f0e"}
"""One colour per position encoding (``model.positions``), the same in every figure."""
OTHER = "#7f7f7f"
"""The colour of a value without its own."""
SUITE_COLOURS = {"icl": "#1f77b4", "iwl": "#d62728"}
"""One colour per eval suite, where the suites share a panel."""
DASHES = ("solid", "dash", "dot", "dashdot")
"""The line dashes of the groups in one panel, in turn."""


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


def accuracy_axes(fig: go.Figure) -> None:
    """The y axes of a final-accuracy figure: 0 to 1.05, titled on the first panel, with the
    icl = 0.5 level (:func:`add_level`) in every panel."""
    add_level(fig)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)


def add_suites_by_group(
    fig: go.Figure,
    summary: pd.DataFrame,
    x: str,
    groups: Sequence[str],
    col: int,
    legend: bool = True,
    log_x: bool = False,
    colours: Mapping[str, str] = SUITE_COLOURS,
) -> None:
    """Panel ``col``: each suite of ``colours`` vs ``x`` (a :func:`~mmicl_interp.sweep.summary.
    final_values` ``summary``; mean, min/max bars), one colour per suite and one dash per
    combination of ``groups`` (e.g. Zipf alpha), so icl and iwl of one sweep share a panel; in the
    legend where ``legend`` or where there are groups to tell apart. Titles the x axis."""
    parts = summary.groupby(list(groups), sort=True) if groups else [((), summary)]
    for gi, (group, part) in enumerate(parts):
        group = group if isinstance(group, tuple) else (group,)
        label = ", ".join(f"{short(k)}={v}" for k, v in zip(groups, group, strict=True))
        for suite, colour in colours.items():
            fig.add_trace(
                spread_trace(
                    part[part["suite"] == suite],
                    x,
                    f"{suite} {label}".strip(),
                    legendgroup=f"{suite} {label}",
                    showlegend=legend or bool(groups),
                    line=dict(color=colour, dash=DASHES[gi % len(DASHES)]),
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text=short(x), type="log" if log_x else "linear", row=1, col=col)


def add_values_by_suite(
    fig: go.Figure,
    summary: pd.DataFrame,
    x: str,
    by: str,
    suites: Sequence[str] = ("icl", "iwl"),
    col: int = 1,
    values: Sequence | None = None,
    colours: Mapping[Any, str] | None = None,
    name: Callable[[Any], str] | None = None,
    legendgroup: bool = False,
) -> None:
    """Each suite vs ``x`` in its own panel (``col``, ``col + 1``, ...; a :func:`~mmicl_interp.
    sweep.summary.final_values` ``summary``: mean, min/max bars), one line per value of ``by``
    (``values``, default sorted) in one colour (``colours``, default Viridis along the values;
    :data:`OTHER` where missing), named ``name(value)`` (default ``n_heads=2``) and in the legend
    once (the first suite's line), grouped by that name with ``legendgroup``."""
    values = sorted(summary[by].unique()) if values is None else list(values)
    colours = dict(zip(values, value_colours(values), strict=True)) if colours is None else colours
    for value in values:
        label = name(value) if name else f"{short(by)}={value}"
        extra = dict(legendgroup=label) if legendgroup else {}
        for si, suite in enumerate(suites):
            rows = summary[(summary[by] == value) & (summary["suite"] == suite)]
            trace = spread_trace(
                rows, x, label, line=dict(color=colours.get(value, OTHER)), showlegend=si == 0, **extra
            )
            fig.add_trace(trace, row=1, col=col + si)


def add_curves_by(
    fig: go.Figure,
    scores: pd.DataFrame,
    by: str,
    metric: str,
    col: int,
    values: Sequence,
    colours: Mapping[Any, str],
) -> None:
    """Panel ``col``: per value of ``by`` (in ``values``' order), every run's curve of a
    checkpoint-score table (:func:`~mmicl_interp.sweep.measures.best_head_curves`: icl accuracy
    or the best head's ``metric``) in the value's colour (:data:`OTHER` where missing),
    :func:`add_run_curves`."""
    for value in values:
        curves = best_head_curves(scores[scores[by] == value], metric)
        add_run_curves(fig, curves, value, colours.get(value, OTHER), row=1, col=col)


__all__ = [
    "DASHES",
    "OTHER",
    "POSITION_COLOURS",
    "SUITE_COLOURS",
    "accuracy_axes",
    "add_curves_by",
    "add_level",
    "add_run_curves",
    "add_suites_by_group",
    "add_values_by_suite",
    "panels",
    "range_trace",
    "value_colours",
]
