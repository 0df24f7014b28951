"""The offline ``report.html`` of ``mmicl heads`` / ``mmicl knockout`` on a real model.

Sections: a summary (model, prompt set, prompts, accuracy); the top heads of each
measure; one layer x head heatmap per measure (and of head patching when computed); the
knockout bars: accuracy with the top-k induction / previous-token (or given) heads knocked
out, against the mean of the random k-head draws with their 2.5-97.5 percentile range.
One self-contained page (:func:`mmicl_interp.report.html.write_report`): plotly is inlined,
no network is needed to open it.

:func:`build_series_report` writes the report of a checkpoint series of ``mmicl series``
(``mmicl report SERIES``), with the section builders of a synthetic run's report
(:mod:`mmicl_interp.report.run_report`); :func:`report_kind` tells which report a folder
gets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.config import ConfigError
from mmicl_interp.real.heads import measures_from_table, min_layer_of, top_heads
from mmicl_interp.real.knockout import accuracy_summary
from mmicl_interp.report.html import write_report

if TYPE_CHECKING:
    from mmicl_interp.real.series import SeriesFolder
    from mmicl_interp.report.run_report import CircuitSpec

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


# --------------------------------------------------------------------------- series
def series_scores(series: SeriesFolder) -> pd.DataFrame:
    """A series' table with ``rep_icl_gain`` (``rep_loss_first - rep_loss_second`` per step,
    suite ``repeated_random``) added."""
    from mmicl_interp.analyses.tidy import tidy_table
    from mmicl_interp.real.series import REP_SUITE

    table = series.table
    scalar = table[table["layer"].isna() & (table["suite"].astype(str) == REP_SUITE)]
    wide = scalar.pivot_table(index="step", columns="metric", values="value", aggfunc="mean")
    if {"rep_loss_first", "rep_loss_second"} <= set(wide.columns):
        gain = (wide["rep_loss_first"] - wide["rep_loss_second"]).dropna()
        rows = [
            {"suite": REP_SUITE, "metric": "rep_icl_gain", "step": int(s), "value": float(v)}
            for s, v in gain.items()
        ]
        extra = tidy_table(rows, run=series.name, step=None)
        extra["step"] = pd.array([r["step"] for r in rows], dtype=table["step"].dtype)
        table = pd.concat([table, extra[table.columns]], ignore_index=True)
    return table


def series_spec(scores: pd.DataFrame) -> CircuitSpec:
    """The curves of a series' table: repeated-token heads, and the ICL measures it holds."""
    from mmicl_interp.real.series import REP_SUITE, TEXT_SUITE
    from mmicl_interp.report.run_report import CircuitSpec

    model = scores[scores["layer"].isna()]
    have = set(zip(model["suite"].astype(str), model["metric"].astype(str), strict=True))
    icl = [(TEXT_SUITE, "icl_score")] if (TEXT_SUITE, "icl_score") in have else []
    icl += sorted((s, m) for s, m in have if m == "accuracy")
    if (REP_SUITE, "rep_icl_gain") in have:
        icl.append((REP_SUITE, "rep_icl_gain"))
    onset_icl = (REP_SUITE, "rep_icl_gain") if (REP_SUITE, "rep_icl_gain") in have else (icl or [("", "")])[0]
    return CircuitSpec(
        measure_suite=REP_SUITE,
        prev_token="rep_prev_token",
        induction="rep_induction",
        measures=("rep_prev_token", "rep_induction"),
        icl=icl,
        onset_icl=onset_icl,
        curves=icl,
    )


def ranked_scores(scores: pd.DataFrame, n_layers: int | None) -> pd.DataFrame:
    """``scores`` without layer-0 rows of induction metrics (a layer-0 head sees no
    previous-token information, so it cannot be an induction head), when there are more layers."""
    from mmicl_interp.real.series import INDUCTION_METRICS

    if not n_layers or n_layers < 2:
        return scores
    drop = scores["metric"].astype(str).isin(INDUCTION_METRICS) & (scores["layer"] == 0)
    return scores[~drop.fillna(False).astype(bool)]


def _series_summary(series: SeriesFolder, scores: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """The Summary of a series and its sample sizes (rep, text, prompts per checkpoint)."""
    options = series.meta.get("options", {})
    model = series.meta.get("model", {})
    arch = model.get("arch", {})
    scalar = scores[scores["layer"].isna()]

    def first(metric: str) -> int | None:
        v = scalar.loc[scalar["metric"].astype(str) == metric, "value"]
        return int(v.iloc[0]) if len(v) else None

    n = {
        "rep": int(options.get("rep_seqs", 0)),
        "text": first("n_text_seqs") or int(options.get("text_seqs", 0)),
        "prompts": first("n_prompts") or 0,
        "ckpt": int(scores["step"].nunique()),
    }
    source = model.get("hub") or ", ".join(map(str, series.meta.get("sources", [])))
    sizes = ", ".join(f"{k}={v}" for k, v in arch.items() if k not in ("architectures",))
    steps = series.steps
    text = (
        f"Checkpoint series **{series.name}** at `{series.path}` ({source}): {n['ckpt']} checkpoints, steps "
        f"{steps[0]}..{steps[-1]}; {sizes}. Scored by `mmicl series` (options: "
        + ", ".join(f"{k}={v}" for k, v in options.items())
        + ")."
    )
    rep_len, context = first("rep_len"), first("text_context")
    sample = (
        f"**Sample sizes.** Head measures and copy losses: n = {n['rep']} repeated random sequences "
        f"(n = {rep_len} tokens repeated) per checkpoint. In-context loss score: n = {n['text']} text "
        f"sequences of {context} tokens per checkpoint. "
        + (
            f"Few-shot accuracy: n = {n['prompts']} prompts per checkpoint. "
            if n["prompts"]
            else f"Few-shot accuracy: not scored ({series.meta.get('prompts_skipped') or 'no prompt set'}). "
        )
        + f"Correlations and onsets: n = {n['ckpt']} checkpoints."
    )
    return [text, sample], n


def report_kind(path: str | Path) -> str:
    """What ``mmicl report PATH`` opens: ``"run"`` (``manifest.json``), ``"series"``
    (``series.json`` and ``series.parquet`` of ``mmicl series``) or ``"checkpoints"`` (a folder
    of ``step_*`` Hugging Face checkpoints, not yet scored). ConfigError naming RUN otherwise."""
    from mmicl_interp.real.series import holds_checkpoints, is_series_folder

    path = Path(path)
    if not path.is_dir():
        raise ConfigError("RUN", f"{path}: no such folder")
    if (path / "manifest.json").is_file():
        return "run"
    if is_series_folder(path):
        return "series"
    if holds_checkpoints(path):
        return "checkpoints"
    raise ConfigError(
        "RUN",
        f"{path} is neither a run (manifest.json) nor a checkpoint series (series.json and series.parquet "
        "of `mmicl series`, or a folder of step_* Hugging Face checkpoints)",
    )


def build_series_report(
    series: SeriesFolder,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    min_rise: float | None = None,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Write the report of a checkpoint series (default ``SERIES/report.html``); returns its path.

    The sections a synthetic run's report has where a series has the numbers, built by the same
    functions (:func:`~mmicl_interp.report.run_report.circuit_sections`,
    :func:`~mmicl_interp.report.run_report.slider_section`): summary, per-checkpoint best
    heads, circuit formation, onsets, correlations, per-head heatmaps, attention slider.
    """
    from mmicl_interp.io import check_writable
    from mmicl_interp.plots.figures import MIN_ONSET_RISE, head_heatmaps
    from mmicl_interp.progress import progress_bar
    from mmicl_interp.real.series import series_attention_frames, summary
    from mmicl_interp.report.run_report import circuit_sections, slider_heads, slider_section

    min_rise = MIN_ONSET_RISE if min_rise is None else min_rise
    out = check_writable(Path(out) if out else series.path / "report.html", "--out")
    bar = progress_bar(3, "report", progress, unit="part")
    say = log or (lambda _text: None)
    say(f"report: using {series.path / 'series.parquet'} ({len(series.steps)} checkpoints of {series.name})")
    scores = series_scores(series)
    spec = series_spec(scores)
    ranked = ranked_scores(scores, series.n_layers)
    summary_text, n = _series_summary(series, scores)
    per_ckpt = (
        f"head measures: n = {n['rep']} repeated sequences, in-context loss: n = {n['text']} text sequences "
        f"per checkpoint; {n['ckpt']} checkpoints"
    )
    sections: list[tuple[str, Any]] = [
        ("Summary", summary_text),
        (f"Per checkpoint: best heads and losses ({per_ckpt})", summary(series.table)),
        *circuit_sections(
            ranked,
            spec,
            title=f"Circuit formation: {series.name} ({per_ckpt})",
            per_ckpt=per_ckpt,
            n_ckpt=n["ckpt"],
            min_rise=min_rise,
            correlation_title=(
                f"Induction strength vs ICL measures (per head, 95% bootstrap CI; n = {n['ckpt']} "
                "checkpoints)"
            ),
            note=(
                f"The ICL onset is `{spec.onset_icl[1]}`; induction heads are ranked among layers >= 1. "
                "`icl_score` is negative when later tokens are predicted better; `rep_icl_gain` is in nats."
            ),
        ),
        (
            f"Per-head {', '.join(spec.measures)} over checkpoints (one colour scale; n = {n['rep']} "
            "repeated sequences per checkpoint)",
            head_heatmaps(scores, list(spec.measures), suite=spec.measure_suite),
        ),
    ]
    bar.update()
    frames = series_attention_frames(series, slider_heads(ranked, spec))
    sections.append(slider_section(frames, "one repeated-token prompt"))
    bar.update()
    path = write_report(out, sections, title=f"mmicl-interp report: {series.name}", subtitle=str(series.path))
    bar.update()
    bar.close()
    return Path(path)


__all__ = [
    "build_knockout_report",
    "build_real_report",
    "build_series_report",
    "heatmap",
    "knockout_figure",
    "ranked_scores",
    "report_kind",
    "series_scores",
    "series_spec",
    "top_table",
]
