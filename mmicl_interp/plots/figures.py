"""Plotly figures over the tidy table and the causal analyses, returned (never shown).

Notebooks and the HTML report share these functions: each returns a
``plotly.graph_objects.Figure`` and leaves showing or saving it to the caller
(``fig.show()``, :func:`mmicl_interp.report.write_report`, or :func:`export_png`).

- :func:`circuit_formation`: accuracy per suite (top) and the best head's circuit measures
  (bottom) against training step, on a shared x axis, with dashed vertical lines at the
  onsets of :func:`~mmicl_interp.analyses.correlation.phases`.
- :func:`head_heatmaps`: one measure per head (rows ``L{l}H{h}``) over checkpoints.
- :func:`ih_vs_icl`: the best head's induction strength against icl accuracy, one point per
  checkpoint coloured by step, with a least-squares line and Pearson r in the title.
- :func:`ablation_bars`: the change in a metric when heads are ablated.
- :func:`patching_heatmap`: a patching result (layer x position, head x head) on a diverging
  scale centred at 0.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots

from mmicl_interp.analyses.correlation import (
    best_head,
    head_table,
    model_curve,
    pearson,
    phases,
    select_run,
)
from mmicl_interp.io import atomic_write_bytes
from mmicl_interp.types import SUITES

XScale = Literal["category", "linear", "log"]
X_SCALES: tuple[str, ...] = ("category", "linear", "log")
ABLATION_COLUMNS: tuple[str, ...] = ("suite", "metric", "heads", "method", "clean", "ablated", "delta")
SUITE_COLORS = {"test": "#636efa", "icl": "#ef553b", "icl_flip": "#00cc96", "iwl": "#ab63fa"}
MEASURE_TITLES = {
    "prev_token": "previous-token",
    "prev_token_label": "previous-token (labels)",
    "ih": "induction strength",
    "tila": "TILA",
    "tiia": "TIIA",
    "tla": "TLA",
}


def head_name(layer: int, head: int) -> str:
    """The label of a head: ``L{layer}H{head}``."""
    return f"L{layer}H{head}"


def _run_title(part: pd.DataFrame) -> str:
    runs = pd.unique(part["run"].astype(str))
    return str(runs[0]) if len(runs) else ""


def _metrics_in(part: pd.DataFrame) -> set[str]:
    return set(map(str, pd.unique(part["metric"].astype(str))))


# --------------------------------------------------------------------------- circuit formation
def circuit_formation(
    scores: pd.DataFrame,
    *,
    run: str | None = None,
    suites: Sequence[str] | None = None,
    measures: Sequence[str] = ("prev_token_label", "ih", "tila"),
    measure_suite: str = "icl",
    log_x: bool = False,
    onsets: bool = True,
    frac: float = 0.5,
    title: str | None = None,
) -> go.Figure:
    """Accuracy per suite and the best head's circuit measures against training step.

    Top panel: accuracy of each suite present (or of ``suites``). Bottom panel: for each
    measure present, the curve of its best head (highest final value), named e.g.
    ``ih (L1H0)``. With ``onsets``, dashed vertical lines mark the onsets (half the final
    rise) of previous-token formation, induction formation and icl accuracy. ``log_x`` puts
    step on a log axis (step 0 is then left out).
    """
    part = select_run(scores, run)
    present = _metrics_in(part)
    acc_rows = part[(part["metric"].astype(str) == "accuracy") & part["head"].isna()]
    have_suites = set(map(str, pd.unique(acc_rows["suite"].astype(str))))
    if suites is None:
        suites = [s for s in SUITES if s in have_suites] + sorted(have_suites - set(SUITES))
    else:
        unknown = [s for s in suites if s not in have_suites]
        if unknown:
            raise ValueError(
                f"suites {unknown} have no accuracy rows; "
                f"available: {', '.join(sorted(have_suites)) or 'none'}"
            )
    per_head = part[part["head"].notna() & (part["suite"].astype(str) == measure_suite)]
    measures = [m for m in measures if m in set(map(str, per_head["metric"].astype(str)))]
    if not suites and not measures:
        raise ValueError(
            "scores hold neither accuracies nor any of the measures; "
            f"metrics present: {', '.join(sorted(present))}"
        )

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("accuracy per suite", f"circuit measures, best head ({measure_suite} suite)"),
    )

    def keep(steps: np.ndarray) -> np.ndarray:
        return steps > 0 if log_x else np.ones(len(steps), bool)

    for suite in suites:
        curve = model_curve(part, "accuracy", suite=suite)
        s, v = curve.index.to_numpy(), curve.to_numpy()
        k = keep(s)
        fig.add_trace(
            go.Scatter(
                x=s[k],
                y=v[k],
                mode="lines+markers",
                name=f"accuracy: {suite}",
                legendgroup="accuracy",
                line=dict(color=SUITE_COLORS.get(suite)),
            ),
            row=1,
            col=1,
        )
    for measure in measures:
        layer, head = best_head(part, measure, suite=measure_suite)
        curve = head_table(part, measure, suite=measure_suite)[(layer, head)].dropna()
        s, v = curve.index.to_numpy(), curve.to_numpy()
        k = keep(s)
        fig.add_trace(
            go.Scatter(
                x=s[k],
                y=v[k],
                mode="lines+markers",
                name=f"{measure} ({head_name(layer, head)})",
                legendgroup="measures",
            ),
            row=2,
            col=1,
        )

    if onsets:
        ph = phases(part, suite=measure_suite, frac=frac).iloc[0]
        marks = [
            ("prev_token_onset", "prev-token onset", "#7f7f7f"),
            ("induction_onset", "induction onset", "#d62728"),
            ("icl_onset", "icl accuracy onset", "#1f77b4"),
        ]
        shown = 0
        for col, label, color in marks:
            x = ph[col]
            if pd.isna(x) or (log_x and x <= 0):
                continue
            line = dict(line_dash="dash", line_color=color, line_width=1.5)
            fig.add_vline(x=float(x), row="all", col=1, exclude_empty_subplots=False, **line)
            fig.add_annotation(  # annotations (unlike shapes) take log10(x) on a log axis
                x=math.log10(x) if log_x else float(x),
                y=1,
                xref="x",
                yref="y domain",
                text=f"{label}: {x:.4g}",
                showarrow=False,
                xanchor="left",
                yanchor="top",
                yshift=-14 * shown,
                font=dict(size=10, color=color),
                bgcolor="rgba(255,255,255,0.7)",
            )
            shown += 1

    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="score", row=2, col=1)
    fig.update_layout(
        title=title or f"Circuit formation: {_run_title(part)}",
        height=650,
        hovermode="x unified",
        legend=dict(groupclick="toggleitem"),
        template="plotly_white",
    )
    return fig


# --------------------------------------------------------------------------- head heatmaps
def head_heatmaps(
    scores: pd.DataFrame,
    metric: str | Sequence[str] = "ih",
    *,
    suite: str = "icl",
    run: str | None = None,
    x_scale: XScale = "category",
    colorscale: str = "Viridis",
    title: str | None = None,
) -> go.Figure:
    """Per-head heatmap(s) of a measure over checkpoints: y = ``L{l}H{h}``, x = step.

    ``metric`` may be one measure or a list (one panel each). ``x_scale`` is ``"category"``
    (one equal-width column per checkpoint: suits log-spaced schedules), ``"linear"`` or
    ``"log"``.
    """
    if x_scale not in X_SCALES:
        raise ValueError(f"x_scale must be one of {', '.join(X_SCALES)}; got {x_scale!r}")
    part = select_run(scores, run)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise ValueError("metric must name at least one per-head measure")
    tables = [head_table(part, m, suite=suite) for m in metrics]  # raises on unknown metric
    n = len(metrics)
    fig = make_subplots(
        rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.25 / n if n > 1 else 0.0, subplot_titles=metrics
    )
    for i, (m, table) in enumerate(zip(metrics, tables, strict=True), start=1):
        steps = table.index.to_numpy()
        x = [str(s) for s in steps] if x_scale == "category" else steps
        y = [head_name(layer, head) for layer, head in table.columns]
        domain = fig.layout["yaxis" if i == 1 else f"yaxis{i}"].domain
        fig.add_trace(
            go.Heatmap(
                z=table.to_numpy().T,
                x=x,
                y=y,
                colorscale=colorscale,
                colorbar=dict(title=dict(text=m), len=domain[1] - domain[0], y=(domain[0] + domain[1]) / 2),
                hovertemplate="step %{x}<br>%{y}<br>" + m + " = %{z:.3f}<extra></extra>",
                name=m,
            ),
            row=i,
            col=1,
        )
        fig.update_yaxes(title_text="head", autorange="reversed", type="category", row=i, col=1)
    fig.update_xaxes(type=x_scale)
    fig.update_xaxes(title_text="training step", row=n, col=1)
    fig.update_layout(
        title=title or f"Per-head {', '.join(metrics)} ({suite} suite): {_run_title(part)}",
        height=max(320, n * (140 + 18 * len(tables[0].columns))),
        template="plotly_white",
    )
    return fig


# --------------------------------------------------------------------------- ih vs icl
def ih_vs_icl(
    scores: pd.DataFrame,
    *,
    run: str | None = None,
    measure: str = "ih",
    suite: str = "icl",
    accuracy_suite: str = "icl",
    layer: int | None = None,
    head: int | None = None,
    log_color: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Scatter of a head's induction strength against icl accuracy, one point per checkpoint.

    The head defaults to the best one (highest final ``measure``); give ``layer`` and
    ``head`` to choose another. Points are coloured by step (on a log scale with
    ``log_color``); a least-squares line and Pearson r are added when defined.
    """
    part = select_run(scores, run)
    if (layer is None) != (head is None):
        raise ValueError("layer and head must be given together (or neither, for the best head)")
    table = head_table(part, measure, suite=suite)
    if layer is None:
        layer, head = best_head(part, measure, suite=suite)
    elif (layer, head) not in table.columns:
        heads = ", ".join(head_name(a, b) for a, b in table.columns)
        raise ValueError(f"layer/head {head_name(layer, head)} not in the table; heads: {heads}")
    acc = model_curve(part, "accuracy", suite=accuracy_suite)
    joined = pd.concat([table[(layer, head)].rename("x"), acc.rename("y")], axis=1, join="inner").dropna()
    steps = joined.index.to_numpy()
    x, y = joined["x"].to_numpy(float), joined["y"].to_numpy(float)
    r = pearson(x, y)

    color = np.log10(steps + 1.0) if log_color else steps
    colorbar = dict(title=dict(text="step"))
    if log_color and len(steps):
        top = int(math.ceil(math.log10(steps.max() + 1.0)))
        ticks = [0] + [10**k for k in range(0, top + 1)]
        colorbar.update(tickvals=[math.log10(t + 1.0) for t in ticks], ticktext=[str(t) for t in ticks])
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="checkpoints",
            customdata=steps,
            marker=dict(color=color, colorscale="Viridis", size=9, colorbar=colorbar, showscale=True),
            hovertemplate=(
                f"step %{{customdata}}<br>{measure} = %{{x:.3f}}<br>accuracy = %{{y:.3f}}<extra></extra>"
            ),
        )
    )
    if not math.isnan(r):
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.array([x.min(), x.max()])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=slope * xs + intercept,
                mode="lines",
                name=f"fit: y = {slope:.3g} x + {intercept:.3g}",
                line=dict(color="black", dash="dash"),
            )
        )
    r_text = "n/a" if math.isnan(r) else f"{r:.3f}"
    fig.update_layout(
        title=title
        or f"{measure} of {head_name(layer, head)} vs {accuracy_suite} accuracy: r = {r_text} (n = {len(x)})",
        xaxis_title=f"{measure} ({head_name(layer, head)}, {suite} suite)",
        yaxis_title=f"{accuracy_suite} accuracy",
        template="plotly_white",
        legend=dict(x=0.01, y=0.99),
    )
    return fig


# --------------------------------------------------------------------------- ablation
def ablation_bars(
    ablation_df: pd.DataFrame,
    *,
    metric: str = "accuracy",
    value: Literal["delta", "ablated"] = "delta",
    title: str | None = None,
) -> go.Figure:
    """Bars of an ablation table: x = ablated heads, colour = suite, one panel per method.

    ``value`` is ``"delta"`` (ablated - clean, default) or ``"ablated"``; clean and ablated
    values are in the hover text.
    """
    if not isinstance(ablation_df, pd.DataFrame):
        raise ValueError(f"ablation_df must be a pandas DataFrame, got {type(ablation_df).__name__}")
    missing = [c for c in ABLATION_COLUMNS if c not in ablation_df.columns]
    if missing:
        raise ValueError(f"ablation_df lacks columns {missing}; expected {', '.join(ABLATION_COLUMNS)}")
    if value not in ("delta", "ablated"):
        raise ValueError(f"value must be 'delta' or 'ablated'; got {value!r}")
    if ablation_df.empty:
        raise ValueError("ablation_df is empty: no ablations to plot")
    df = ablation_df[ablation_df["metric"].astype(str) == metric]
    if df.empty:
        have = ", ".join(sorted(map(str, pd.unique(ablation_df["metric"].astype(str)))))
        raise ValueError(f"metric {metric!r} not in ablation_df; metrics: {have}")
    methods = [str(m) for m in pd.unique(df["method"].astype(str))]
    heads_order = [str(h) for h in pd.unique(df["heads"].astype(str))]
    suites_present = set(map(str, pd.unique(df["suite"].astype(str))))
    suites = [s for s in SUITES if s in suites_present] + sorted(suites_present - set(SUITES))
    fig = make_subplots(rows=1, cols=len(methods), shared_yaxes=True, subplot_titles=methods)
    for j, method in enumerate(methods, start=1):
        for suite in suites:
            sub = df[(df["method"].astype(str) == method) & (df["suite"].astype(str) == suite)]
            if sub.empty:
                continue
            fig.add_trace(
                go.Bar(
                    x=sub["heads"].astype(str).tolist(),
                    y=sub[value].astype(float).tolist(),
                    name=suite,
                    legendgroup=suite,
                    showlegend=j == 1,
                    marker_color=SUITE_COLORS.get(suite),
                    customdata=np.stack([sub["clean"].astype(float), sub["ablated"].astype(float)], axis=1),
                    hovertemplate=(
                        "%{x}<br>clean %{customdata[0]:.3f}<br>ablated %{customdata[1]:.3f}"
                        "<br>delta %{y:.3f}<extra>" + suite + "</extra>"
                        if value == "delta"
                        else "%{x}<br>clean %{customdata[0]:.3f}<br>ablated %{y:.3f}<extra>"
                        + suite
                        + "</extra>"
                    ),
                ),
                row=1,
                col=j,
            )
        fig.update_xaxes(
            categoryorder="array", categoryarray=heads_order, title_text="ablated heads", row=1, col=j
        )
    if value == "delta":
        fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_yaxes(
        title_text=f"{metric} change (ablated - clean)" if value == "delta" else metric, row=1, col=1
    )
    fig.update_layout(
        barmode="group",
        title=title or f"Head ablations: {metric}",
        template="plotly_white",
        legend_title_text="suite",
    )
    return fig


# --------------------------------------------------------------------------- patching
def patching_heatmap(
    values: Float[torch.Tensor, "rows cols"] | Float[np.ndarray, "rows cols"] | pd.DataFrame,
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
    supplies its own labels (columns -> x, index -> y) unless they are given.
    """
    if isinstance(values, pd.DataFrame):
        x_labels = list(values.columns) if x_labels is None else x_labels
        y_labels = list(values.index) if y_labels is None else y_labels
        arr = values.to_numpy(dtype=float)
    elif isinstance(values, torch.Tensor):
        arr = values.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"values must be 2-D (rows x cols), got shape {arr.shape}")
    rows, cols = arr.shape
    x_labels = [str(v) for v in (range(cols) if x_labels is None else x_labels)]
    y_labels = [str(v) for v in (range(rows) if y_labels is None else y_labels)]
    if len(x_labels) != cols:
        raise ValueError(f"x_labels has {len(x_labels)} labels but values has {cols} columns")
    if len(y_labels) != rows:
        raise ValueError(f"y_labels has {len(y_labels)} labels but values has {rows} rows")
    finite = arr[np.isfinite(arr)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    bound = bound if bound > 0 else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=arr,
            x=x_labels,
            y=y_labels,
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


# --------------------------------------------------------------------------- PNG export
def png_export_available() -> bool:
    """True when kaleido (>= 1, an optional extra) is importable; it also needs a Chromium."""
    return importlib.util.find_spec("kaleido") is not None


def export_png(
    fig: go.Figure,
    path: str | Path,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float = 2.0,
) -> Path:
    """Write ``fig`` as a PNG with kaleido (optional: never a hard dependency).

    Raises RuntimeError when kaleido is missing. MathJax is disabled so no CDN is reached;
    when ``BROWSER_PATH`` is unset, a ``chromium`` on PATH is used.
    """
    if not png_export_available():
        raise RuntimeError("PNG export needs kaleido >= 1 (pip install 'kaleido>=1') and a Chromium")
    import kaleido

    kopts: dict = {"mathjax": False}
    if not os.environ.get("BROWSER_PATH"):
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if found:
            kopts["path"] = found
    opts = {"format": "png", "scale": scale}
    layout = fig.layout
    opts["width"] = width or layout.width or 900
    opts["height"] = height or layout.height or 500
    data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts=kopts)
    return atomic_write_bytes(path, data)


__all__ = [
    "ABLATION_COLUMNS",
    "X_SCALES",
    "ablation_bars",
    "circuit_formation",
    "export_png",
    "head_heatmaps",
    "head_name",
    "ih_vs_icl",
    "patching_heatmap",
    "png_export_available",
]
