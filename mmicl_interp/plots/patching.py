"""Patching results as heatmaps on a diverging scale centred at 0.

- :func:`patching_heatmap`: one result (layer x position, head x head, ...);
- :func:`patching_panels`: several results (e.g. path patching into k / q / v) on one shared
  symmetric scale, so a panel near 0 looks near 0 beside one that is not.

Both accept a tensor, an array or a labelled DataFrame (its index and columns become the labels);
:mod:`mmicl_interp.plots.figures` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots

PatchValues = Float[torch.Tensor, "rows cols"] | Float[np.ndarray, "rows cols"] | pd.DataFrame


def _labelled(
    values: PatchValues, x_labels: Sequence[str] | None, y_labels: Sequence[str] | None, where: str = "values"
) -> tuple[np.ndarray, list[str], list[str]]:
    """A 2-D float array with its column (x) and row (y) labels; a DataFrame supplies its own."""
    if isinstance(values, pd.DataFrame):
        x_labels = list(values.columns) if x_labels is None else x_labels
        y_labels = list(values.index) if y_labels is None else y_labels
        arr = values.to_numpy(dtype=float)
    elif isinstance(values, torch.Tensor):
        arr = values.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{where} must be 2-D (rows x cols), got shape {arr.shape}")
    rows, cols = arr.shape
    xs = [str(v) for v in (range(cols) if x_labels is None else x_labels)]
    ys = [str(v) for v in (range(rows) if y_labels is None else y_labels)]
    if len(xs) != cols:
        raise ValueError(f"x_labels has {len(xs)} labels but {where} has {cols} columns")
    if len(ys) != rows:
        raise ValueError(f"y_labels has {len(ys)} labels but {where} has {rows} rows")
    return arr, xs, ys


def _symmetric_bound(*arrays: np.ndarray) -> float:
    """The largest finite |value| over all arrays (1 when none is finite or all are 0)."""
    finite = np.concatenate([a[np.isfinite(a)].ravel() for a in arrays]) if arrays else np.zeros(0)
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    return bound if bound > 0 else 1.0


def patching_heatmap(
    values: PatchValues,
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str = "",
    *,
    x_title: str | None = None,
    y_title: str | None = None,
    colorscale: str = "RdBu",
    value_name: str = "effect",
) -> go.Figure:
    """A 2-D patching result on a diverging colour scale centred at 0 (row 0 at the top).

    E.g. layer x position, or sender head x receiver head for path patching. A DataFrame
    supplies its own labels (columns -> x, index -> y) unless they are given. The scale runs
    from -m to m with m the largest |value|; to compare several results, draw them with
    :func:`patching_panels` (one scale for all).
    """
    arr, xs, ys = _labelled(values, x_labels, y_labels)
    bound = _symmetric_bound(arr)
    fig = go.Figure(
        go.Heatmap(
            z=arr,
            x=xs,
            y=ys,
            colorscale=colorscale,
            zmid=0.0,
            zmin=-bound,
            zmax=bound,
            colorbar=dict(title=dict(text=value_name)),
            hovertemplate="%{y} / %{x}<br>" + value_name + " = %{z:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(type="category", title_text=x_title)
    fig.update_yaxes(type="category", autorange="reversed", title_text=y_title)
    fig.update_layout(title=title, template="plotly_white")
    return fig


def patching_panels(
    panels: Mapping[str, PatchValues],
    x_labels: Sequence[str] | None = None,
    y_labels: Sequence[str] | None = None,
    title: str = "",
    *,
    arrange: Literal["columns", "rows"] = "columns",
    x_title: str | Sequence[str | None] | None = None,
    y_title: str | Sequence[str | None] | None = None,
    colorscale: str = "RdBu",
    value_name: str = "effect",
) -> go.Figure:
    """Several patching results in one figure on ONE symmetric diverging scale centred at 0.

    ``panels`` maps a panel title to its values (as :func:`patching_heatmap`; a DataFrame
    brings its own labels). Every heatmap uses the shared ``coloraxis`` running from -m to m,
    m the largest |value| over all panels, so path patching into queries at 0.0001 reads as
    nothing next to keys at 0.99 instead of equally dark. ``arrange``: side by side
    (``"columns"``) or stacked (``"rows"``, heights proportional to the panels' rows).
    ``x_title`` / ``y_title``: one axis title for all panels, or one per panel.
    """
    if arrange not in ("columns", "rows"):
        raise ValueError(f"arrange must be 'columns' or 'rows'; got {arrange!r}")
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError("panels must be a non-empty mapping {panel title: 2-D values}")
    data = [(str(name), *_labelled(v, x_labels, y_labels, f"panel {name!r}")) for name, v in panels.items()]
    bound = _symmetric_bound(*(arr for _, arr, _, _ in data))
    n = len(data)
    names = [name for name, *_ in data]

    def per_panel(title: str | Sequence[str | None] | None, which: str) -> list[str | None]:
        if title is None or isinstance(title, str):
            return [title] * n
        titles = list(title)
        if len(titles) != n:
            raise ValueError(f"{which} has {len(titles)} titles for {n} panels")
        return titles

    x_titles, y_titles = per_panel(x_title, "x_title"), per_panel(y_title, "y_title")
    total_rows = sum(max(arr.shape[0], 1) for _, arr, _, _ in data)
    if arrange == "columns":
        fig = make_subplots(rows=1, cols=n, subplot_titles=names, horizontal_spacing=min(0.08, 0.3 / n))
        where = [(1, j) for j in range(1, n + 1)]
        height = 420
    else:
        heights = [max(arr.shape[0], 1) for _, arr, _, _ in data]
        height = 220 * n + 24 * total_rows
        # ~100 px between panels (of ~180 px margins) for tick labels, the x title and the next title
        spacing = min(0.5 / (n - 1), 100 / (height - 180)) if n > 1 else 0.0
        fig = make_subplots(
            rows=n,
            cols=1,
            subplot_titles=names,
            row_heights=[h / sum(heights) for h in heights],
            vertical_spacing=spacing,
        )
        where = [(i, 1) for i in range(1, n + 1)]
    for (name, arr, xs, ys), (row, col), xt, yt in zip(data, where, x_titles, y_titles, strict=True):
        fig.update_xaxes(title_text=xt, row=row, col=col)
        if arrange == "rows" or col == 1 or len(set(y_titles)) > 1:
            fig.update_yaxes(title_text=yt, row=row, col=col)
        fig.add_trace(
            go.Heatmap(
                z=arr,
                x=xs,
                y=ys,
                coloraxis="coloraxis",
                name=name,
                hovertemplate=f"{name}<br>%{{y}} / %{{x}}<br>{value_name} = %{{z:.4f}}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        fig.update_xaxes(type="category", row=row, col=col)
        fig.update_yaxes(type="category", autorange="reversed", row=row, col=col)
    fig.update_layout(
        coloraxis=dict(
            colorscale=colorscale, cmin=-bound, cmax=bound, colorbar=dict(title=dict(text=value_name))
        ),
        title=title,
        template="plotly_white",
        height=height,
    )
    return fig


__all__ = ["PatchValues", "patching_heatmap", "patching_panels"]
