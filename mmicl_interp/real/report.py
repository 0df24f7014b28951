"""The offline ``report.html`` of ``mmicl heads`` / ``mmicl knockout`` on a real model.

Sections: a summary (model, prompt set, prompts, accuracy); the top heads of each
measure; one layer x head heatmap per measure (and of head patching when computed); the
knockout bars: accuracy with the top-k induction / previous-token (or given) heads knocked
out, against the mean of the random k-head draws with their 2.5-97.5 percentile range.
One self-contained page (:func:`mmicl_interp.report.html.write_report`): plotly is inlined,
no network is needed to open it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.real.heads import measures_from_table, min_layer_of, top_heads
from mmicl_interp.real.knockout import accuracy_summary
from mmicl_interp.report.html import write_report

TITLES = {
    "prev_token": "previous-token (all positions)",
    "prev_token_label": "previous-token (label -> item)",
    "prev_token_label2": "previous-token (label -> second item)",
    "ih": "induction (query -> matching labels minus others)",
    "tila": "TILA (query -> matching labels)",
    "tiia": "TIIA (query -> matching items)",
    "tla": "TLA (query -> all labels)",
    "act_patch_head": "activation patching of head outputs (label corruption; 0 corrupted, 1 clean)",
}


def heatmap(values, title: str) -> go.Figure:
    """A layer (rows) x head (columns) heatmap of a [layer, head] tensor."""
    n_layers, n_heads = values.shape
    fig = go.Figure(
        go.Heatmap(
            z=values.tolist(),
            x=[f"H{h}" for h in range(n_heads)],
            y=[f"L{layer}" for layer in range(n_layers)],
            colorscale="RdBu_r",
            zmid=0.0,
            hovertemplate="L%{y} %{x}: %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title, xaxis_title="head", yaxis_title="layer", height=max(320, 18 * n_layers + 120)
    )
    return fig


def knockout_figure(summary: pd.DataFrame, chance: float | None = None) -> go.Figure:
    """Accuracy after each knockout, per method; random draws as mean with their range."""
    fig = go.Figure()
    for group in summary["group"].unique():
        rows = summary[summary["group"] == group]
        err = None
        if group == "random":
            err = dict(
                type="data",
                symmetric=False,
                array=(rows["high"] - rows["ablated"]).tolist(),
                arrayminus=(rows["ablated"] - rows["low"]).tolist(),
            )
        label = f"{group} ({rows['heads'].iloc[0]})"
        fig.add_bar(x=rows["method"].tolist(), y=rows["ablated"].tolist(), name=label, error_y=err)
    clean = summary["clean"].iloc[0] if len(summary) else None
    if clean is not None:
        fig.add_hline(y=float(clean), line_dash="dash", annotation_text=f"clean {clean:.3f}")
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dot", annotation_text=f"chance {chance:.3f}")
    fig.update_layout(
        barmode="group", yaxis_title="accuracy", xaxis_title="knockout method", yaxis_range=[0, 1]
    )
    return fig


def top_table(measures: dict, k: int = 5) -> pd.DataFrame:
    rows = []
    for metric, values in measures.items():
        if metric == "act_patch_head":
            continue
        best = top_heads(values, k, min_layer_of(metric, values.shape[0]))
        for rank, (layer, head) in enumerate(best, start=1):
            rows.append(
                dict(metric=metric, rank=rank, head=f"L{layer}H{head}", value=float(values[layer, head]))
            )
    return pd.DataFrame(rows, columns=["metric", "rank", "head", "value"])


def build_real_report(
    folder: str | Path, out: str | Path | None = None, chance: float | None = None, knockout: bool = True
) -> Path:
    """Write ``report.html`` from ``folder/heads.parquet`` (and ``knockout.parquet`` when present
    and ``knockout``)."""
    folder = Path(folder)
    heads = pd.read_parquet(folder / "heads.parquet")
    model, prompt_set = str(heads["model"].iloc[0]), str(heads["prompt_set"].iloc[0])
    scalar = heads[heads["layer"].isna()].set_index("metric")["value"]
    measures = measures_from_table(heads)
    n = int(scalar.get("n_prompts", 0))
    summary = (
        f"- model: `{model}`\n- prompt set: `{prompt_set}`, n = {n} prompts\n"
        f"- accuracy over the candidate labels' first tokens: {scalar.get('accuracy', float('nan')):.3f}"
        + (f" (chance {chance:.3f})" if chance else "")
        + "\n- measures: SCIENCE.md section 5 definitions, per query head, averaged over prompts"
    )
    sections: list = [("Summary", summary), (f"Top heads (n = {n} prompts)", top_table(measures))]
    for metric, values in measures.items():
        sections.append((TITLES.get(metric, metric), heatmap(values, f"{metric}: {model}")))
    knock = folder / "knockout.parquet"
    if knockout and knock.is_file():
        table = pd.read_parquet(knock)
        acc = accuracy_summary(table)
        n_draws = int(acc.loc[acc["group"] == "random", "n"].max()) if (acc["group"] == "random").any() else 0
        sections.append(
            (
                f"Knockouts vs {n_draws} random head sets (n = {n} prompts)",
                [
                    knockout_figure(acc, chance),
                    "Bars: accuracy with the heads knocked out; random: mean of the draws, whiskers "
                    "their 2.5-97.5 percentile range.",
                    acc,
                ],
            )
        )
    path = Path(out) if out is not None else folder / "report.html"
    return write_report(path, sections, title=f"Heads of {model}", subtitle=prompt_set)


def build_knockout_report(
    table: pd.DataFrame, out: str | Path, *, chance: float | None = None, heads_file: str | Path | None = None
) -> Path:
    """The page of one ``mmicl knockout``: its knockout bars against the random control and the
    table, plus the head heatmaps of ``heads_file`` (a ``heads.parquet`` of the same prompts)
    when given. Written to ``out``; ``mmicl heads``'s ``report.html`` is not touched."""
    acc = accuracy_summary(table)
    model = str(table["model"].iloc[0]) if "model" in table and len(table) else "?"
    prompt_set = str(table["prompt_set"].iloc[0]) if "prompt_set" in table and len(table) else "?"
    n_draws = int(acc.loc[acc["group"] == "random", "n"].max()) if (acc["group"] == "random").any() else 0
    summary = f"- model: `{model}`\n- prompt set: `{prompt_set}`" + (
        f"\n- chance: {chance:.3f}" if chance else ""
    )
    sections: list = [
        ("Summary", summary),
        (
            f"Knockouts vs {n_draws} random head sets",
            [
                knockout_figure(acc, chance),
                "Bars: accuracy with the heads knocked out; random: mean of the draws, whiskers "
                "their 2.5-97.5 percentile range.",
                acc,
            ],
        ),
    ]
    if heads_file is not None and Path(heads_file).is_file():
        heads = pd.read_parquet(heads_file)
        for metric, values in measures_from_table(heads).items():
            sections.append((TITLES.get(metric, metric), heatmap(values, f"{metric}: {model}")))
    return write_report(Path(out), sections, title=f"Knockouts of {model}", subtitle=prompt_set)


__all__ = ["build_knockout_report", "build_real_report", "heatmap", "knockout_figure", "top_table"]
