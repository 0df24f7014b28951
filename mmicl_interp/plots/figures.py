"""Plotly figures over the tidy table and the causal analyses, returned (never shown).

Notebooks and the HTML report share these functions: each returns a
``plotly.graph_objects.Figure`` and leaves showing or saving it to the caller
(``fig.show()``, :func:`mmicl_interp.report.write_report`, or :func:`export_png`).

- :func:`circuit_formation`: accuracy per suite (top) and the best head's circuit measures
  (bottom) against training step, on a shared x axis, with dashed vertical lines at the
  onsets of :func:`~mmicl_interp.analyses.correlation.phases` (:func:`onset_marks`): only
  where the curve rises by at least ``min_rise`` (default 0.1, in the measure's units);
  each onset is named in the legend, so labels never overlap.
- :func:`head_heatmaps`: one measure per head (rows ``L{l}H{h}``) over checkpoints; several
  measures share one colour scale (at least [0, 1]: the measures are attention fractions).
- :func:`ih_vs_icl`: the best head's induction strength against icl accuracy, one point per
  checkpoint coloured by step, with a least-squares line and Pearson r in the title.
- :func:`ablation_bars`: the change in a metric when heads are ablated.
- :func:`patching_heatmap`, :func:`patching_panels`: patching results on a diverging scale
  centred at 0 (defined in :mod:`mmicl_interp.plots.patching`, re-exported here).
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
from mmicl_interp.plots.patching import PatchValues, patching_heatmap, patching_panels  # noqa: F401  (re-exported)
from mmicl_interp.types import SUITES

MIN_ONSET_RISE = 0.1
"""Onsets are drawn only where the curve rises by at least this much (in the measure's units)."""
ONSET_MARKS: tuple[tuple[str, str, str], ...] = (  # phases() column, label, colour
    ("prev_token_onset", "prev-token onset", "#7f7f7f"),
    ("induction_onset", "induction onset", "#d62728"),
    ("icl_onset", "icl accuracy onset", "#1f77b4"),
)
XScale = Literal["category", "linear", "log"]
X_SCALES: tuple[str, ...] = ("category", "linear", "log")
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


# --------------------------------------------------------------------------- onsets
def _rise(curve: pd.Series) -> float:
    """Last minus first finite value of a curve indexed by step (NaN with fewer than 2)."""
    v = curve.sort_index().astype(float).dropna().to_numpy()
    return float(v[-1] - v[0]) if len(v) >= 2 else math.nan


def onset_marks(
    scores: pd.DataFrame,
    *,
    run: str | None = None,
    suite: str = "icl",
    accuracy_suite: str = "icl",
    prev_token_measure: str = "prev_token_label",
    induction_measure: str = "ih",
    frac: float = 0.5,
    min_rise: float = MIN_ONSET_RISE,
    icl_metric: str = "accuracy",
) -> pd.DataFrame:
    """The onsets of :func:`~mmicl_interp.analyses.correlation.phases`, each kept only where its
    curve rises by at least ``min_rise`` (last minus first checkpoint, in the measure's units).

    One row per onset (previous-token, induction, icl accuracy) with columns ``onset`` (the
    phases column), ``label``, ``curve`` (e.g. ``ih L1H0``), ``rise``, ``step`` (NaN when not
    shown), ``shown`` and ``text``: ``"induction onset (ih L1H0): 235.9"`` or
    ``"induction onset (ih L1H0): no onset (rise 0.018 < 0.1)"``. So a curve that never forms
    (e.g. a RoPE run whose ``ih`` stays near 0) gets no marker, and the reason is stated.
    ``icl_metric`` (default ``"accuracy"``) is the model-level ICL curve on ``accuracy_suite``
    (e.g. ``rep_icl_gain`` of a real LM's checkpoint series).
    """
    if not min_rise >= 0:
        raise ValueError(f"min_rise must be >= 0, got {min_rise!r}")
    part = select_run(scores, run)
    ph = phases(
        part,
        prev_token_measure=prev_token_measure,
        induction_measure=induction_measure,
        suite=suite,
        accuracy_suite=accuracy_suite,
        icl_metric=icl_metric,
        frac=frac,
        min_rise=min_rise,
    ).iloc[0]
    per_head = part[part["head"].notna() & (part["suite"].astype(str) == suite)]
    have = set(map(str, per_head["metric"].astype(str)))
    curves: dict[str, tuple[str, pd.Series | None]] = {}
    for key, measure in (("prev_token_onset", prev_token_measure), ("induction_onset", induction_measure)):
        if measure in have:
            layer, head = best_head(part, measure, suite=suite)
            curve = head_table(part, measure, suite=suite)[(layer, head)]
            curves[key] = (f"{measure} {head_name(layer, head)}", curve)
        else:
            curves[key] = (measure, None)
    acc = part[
        (part["metric"].astype(str) == icl_metric)
        & (part["suite"].astype(str) == accuracy_suite)
        & part["head"].isna()
    ]
    curves["icl_onset"] = (
        f"{accuracy_suite} {icl_metric}",
        model_curve(part, icl_metric, suite=accuracy_suite) if len(acc) else None,
    )
    rows = []
    for key, label, _color in ONSET_MARKS:
        name, curve = curves[key]
        rise = _rise(curve) if curve is not None else math.nan
        step = float(ph[key]) if pd.notna(ph[key]) else math.nan
        shown = curve is not None and rise >= min_rise and not math.isnan(step)
        if key == "icl_onset":
            label = named = f"{accuracy_suite} {icl_metric} onset"
        else:
            named = f"{label} ({name})"
        if curve is None:
            text = f"{label}: no curve ({name} not scored)"
        elif shown:
            text = f"{named}: {step:.4g}"
        elif math.isnan(rise) or rise < min_rise:
            text = f"{named}: no onset (rise {rise:.3g} < {min_rise:g})"
        else:
            text = f"{named}: no onset found"
        rows.append(
            dict(
                onset=key,
                label=label,
                curve=name,
                rise=rise,
                step=step if shown else math.nan,
                shown=shown,
                text=text,
            )
        )
    return pd.DataFrame(rows)


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
    min_rise: float = MIN_ONSET_RISE,
    title: str | None = None,
    curves: Sequence[tuple[str, str]] | None = None,
    prev_token_measure: str = "prev_token_label",
    induction_measure: str = "ih",
    icl_suite: str = "icl",
    icl_metric: str = "accuracy",
) -> go.Figure:
    """Accuracy per suite and the best head's circuit measures against training step.

    Top panel: accuracy of each suite present (or of ``suites``). Bottom panel: for each
    measure present, the curve of its best head (highest final value), named e.g.
    ``ih (L1H0)``. With ``onsets``, dashed vertical lines through both panels mark the onsets
    (:func:`onset_marks`) of previous-token formation, induction formation and icl accuracy,
    only where the curve rises by at least ``min_rise``; each is named with its step in the
    legend ("no onset (rise 0.018 < 0.1)" otherwise), so no label overlaps another.
    ``log_x`` puts step on a log axis (step 0 is then left out).

    For tables whose ICL curves are not accuracies (a real LM's checkpoint series):
    ``curves`` lists the model-level ``(suite, metric)`` curves of the top panel instead of
    accuracy per suite (those present are drawn; the axis is then unbounded), and
    ``prev_token_measure`` / ``induction_measure`` / ``icl_suite`` / ``icl_metric`` name the
    curves whose onsets are marked (:func:`onset_marks`).
    """
    part = select_run(scores, run)
    present = _metrics_in(part)
    acc_rows = part[(part["metric"].astype(str) == "accuracy") & part["head"].isna()]
    have_suites = set(map(str, pd.unique(acc_rows["suite"].astype(str))))
    model_rows = part[part["layer"].isna() & part["head"].isna()]
    have_curves = set(zip(model_rows["suite"].astype(str), model_rows["metric"].astype(str), strict=True))
    top = [(s, m) for s, m in curves if (s, m) in have_curves] if curves is not None else None
    if top is not None:
        suites = []
    elif suites is None:
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
    if not suites and not measures and not top:
        raise ValueError(
            "scores hold neither accuracies nor any of the measures; "
            f"metrics present: {', '.join(sorted(present))}"
        )

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "ICL measures" if top is not None else "accuracy per suite",
            f"circuit measures, best head ({measure_suite} suite)",
        ),
    )

    def add_curve(curve: pd.Series, row: int, **scatter) -> None:
        """A lines+markers trace of ``curve`` (step-indexed) in panel ``row``; step 0 left out
        on a log axis."""
        s, v = curve.index.to_numpy(), curve.to_numpy()
        k = s > 0 if log_x else np.ones(len(s), bool)
        fig.add_trace(go.Scatter(x=s[k], y=v[k], mode="lines+markers", **scatter), row=row, col=1)

    for suite in suites:
        add_curve(
            model_curve(part, "accuracy", suite=suite),
            1,
            name=f"accuracy: {suite}",
            legendgroup="accuracy",
            line=dict(color=SUITE_COLORS.get(suite)),
        )
    for suite, metric in top or ():
        curve = model_curve(part, metric, suite=suite)
        add_curve(curve, 1, name=f"{metric} ({suite})", legendgroup="accuracy")
    for measure in measures:
        layer, head = best_head(part, measure, suite=measure_suite)
        curve = head_table(part, measure, suite=measure_suite)[(layer, head)].dropna()
        add_curve(curve, 2, name=f"{measure} ({head_name(layer, head)})", legendgroup="measures")

    if onsets:
        marks = onset_marks(
            part,
            suite=measure_suite,
            accuracy_suite=icl_suite,
            prev_token_measure=prev_token_measure,
            induction_measure=induction_measure,
            icl_metric=icl_metric,
            frac=frac,
            min_rise=min_rise,
        )
        group = dict(
            legendgroup="onsets",
            legendgrouptitle_text=f"onsets (shown where the curve rises by >= {min_rise:g})",
        )
        for i, ((_key, _label, color), mark) in enumerate(zip(ONSET_MARKS, marks.itertuples(), strict=True)):
            group["legendrank"] = 2000 + i  # after the curves, in ONSET_MARKS order
            if mark.shown and not (log_x and mark.step <= 0):
                # one line through both panels (x is shared; shapes stay in data units on a log axis)
                fig.add_shape(
                    type="line",
                    xref="x",
                    yref="paper",
                    x0=mark.step,
                    x1=mark.step,
                    y0=0,
                    y1=1,
                    line=dict(dash="dash", color=color, width=1.5),
                    name=mark.text,
                    showlegend=True,
                    **group,
                )
            else:  # a legend entry saying why there is no line
                fig.add_trace(
                    go.Scatter(
                        x=[None],
                        y=[None],
                        mode="lines",
                        name=mark.text + (" (step 0: off the log axis)" if mark.shown else ""),
                        line=dict(dash="dot", color=color, width=1),
                        hoverinfo="skip",
                        showlegend=True,
                        **group,
                    ),
                    row=1,
                    col=1,
                )
            group.pop("legendgrouptitle_text", None)

    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_xaxes(title_text="training step", row=2, col=1)
    if top is None:
        fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    else:
        fig.update_yaxes(title_text="ICL measure", row=1, col=1)
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
    zrange: tuple[float, float] | None = (0.0, 1.0),
    title: str | None = None,
) -> go.Figure:
    """Per-head heatmap(s) of a measure over checkpoints: y = ``L{l}H{h}``, x = step.

    ``metric`` may be one measure or a list (one panel each). ``x_scale`` is ``"category"``
    (one equal-width column per checkpoint: suits log-spaced schedules), ``"linear"`` or
    ``"log"``. Every panel uses one colour scale (a shared ``coloraxis``) spanning ``zrange``
    widened to cover the data: the measures are attention fractions, so on the default
    [0, 1] a head at 0.02 looks weak next to one at 0.9 rather than equally bright.
    ``zrange=None`` spans the data's own range (shared across panels).
    """
    if x_scale not in X_SCALES:
        raise ValueError(f"x_scale must be one of {', '.join(X_SCALES)}; got {x_scale!r}")
    part = select_run(scores, run)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise ValueError("metric must name at least one per-head measure")
    tables = [head_table(part, m, suite=suite) for m in metrics]  # raises on unknown metric
    if zrange is not None and not (len(zrange) == 2 and zrange[0] < zrange[1]):
        raise ValueError(f"zrange must be (low, high) with low < high, or None; got {zrange!r}")
    values = np.concatenate([t.to_numpy(dtype=float).ravel() for t in tables])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if zrange is not None:
        lo, hi = min(lo, float(zrange[0])), max(hi, float(zrange[1]))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(metrics)
    fig = make_subplots(
        rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.25 / n if n > 1 else 0.0, subplot_titles=metrics
    )
    for i, (m, table) in enumerate(zip(metrics, tables, strict=True), start=1):
        steps = table.index.to_numpy()
        x = [str(s) for s in steps] if x_scale == "category" else steps
        y = [head_name(layer, head) for layer, head in table.columns]
        fig.add_trace(
            go.Heatmap(
                z=table.to_numpy().T,
                x=x,
                y=y,
                coloraxis="coloraxis",
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
        coloraxis=dict(
            colorscale=colorscale,
            cmin=lo,
            cmax=hi,
            colorbar=dict(title=dict(text=metrics[0] if n == 1 else "value")),
        ),
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

    ``ablation_df`` is an ablation table (:mod:`mmicl_interp.analyses.ablation`: the shared
    columns, ``value`` = the ablated value, plus heads, method, clean, delta). ``value`` is
    ``"delta"`` (ablated - clean, default) or ``"ablated"``; clean and ablated values are in
    the hover text.
    """
    from mmicl_interp.analyses.ablation import ABLATION_EXTRA

    needed = ("suite", "metric", "value", *ABLATION_EXTRA)
    if not isinstance(ablation_df, pd.DataFrame):
        raise ValueError(f"ablation_df must be a pandas DataFrame, got {type(ablation_df).__name__}")
    missing = [c for c in needed if c not in ablation_df.columns]
    if missing:
        raise ValueError(f"ablation_df lacks columns {missing}; expected {', '.join(needed)}")
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
                    y=sub["delta" if value == "delta" else "value"].astype(float).tolist(),
                    name=suite,
                    legendgroup=suite,
                    showlegend=j == 1,
                    marker_color=SUITE_COLORS.get(suite),
                    customdata=np.stack([sub["clean"].astype(float), sub["value"].astype(float)], axis=1),
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
    when ``BROWSER_PATH`` is unset, a ``chromium`` on PATH is used. One failed render is
    retried: under load kaleido can query its page before the page's script has run
    (``ReferenceError: kaleido_scopes is not defined``).
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
    try:
        data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts=kopts)
    except Exception:  # a loaded machine can outrun Chromium's page load once; try again
        data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts=kopts)
    return atomic_write_bytes(path, data)


__all__ = [
    "MIN_ONSET_RISE",
    "ONSET_MARKS",
    "X_SCALES",
    "ablation_bars",
    "circuit_formation",
    "export_png",
    "head_heatmaps",
    "head_name",
    "ih_vs_icl",
    "onset_marks",
    "patching_heatmap",
    "patching_panels",
    "png_export_available",
]
