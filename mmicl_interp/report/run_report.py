"""The one-page report of a run (``mmicl report RUN``), titled by the run's id.

RUN is a synthetic run (``manifest.json``): :func:`build_run_report`. A checkpoint series of
a real LM written by ``mmicl series`` (``series.json``, ``series.parquet``) gets the same page
from :func:`mmicl_interp.real.report.build_series_report` (``real/`` sits above this layer),
built by the functions here that both share: :func:`circuit_sections` (circuit formation,
onsets and lead/lag, the best induction head's correlation with the ICL measures, moving-block
bootstrap intervals), :func:`slider_section` (the top heads' attention patterns at every
checkpoint with a slider over training, :func:`~mmicl_interp.plots.attention_view.slider_html`)
and the per-head heatmaps. A :class:`CircuitSpec` says which curves of the table they read: for
a run the icl suite's ``prev_token_label`` / ``ih`` and icl accuracy (:data:`SYNTHETIC`); for a
series the ``repeated_random`` suite's ``rep_prev_token`` / ``rep_induction`` (induction heads
ranked among layers >= 1) and the ICL measures: the in-context loss score ``icl_score``
(text; negative when later tokens are predicted better), few-shot ``accuracy`` where the prompt
set was scored, and ``rep_icl_gain = rep_loss_first - rep_loss_second`` (the loss drop on the
second copy of a repeated random sequence; derived in the report, not stored). The slider shows
one icl eval sequence per checkpoint for a run, one repeated-token prompt per checkpoint for a
series (each checkpoint loaded from its folder:
:func:`~mmicl_interp.real.series.series_attention_frames`).

Sections of a synthetic run: summary of the run; final accuracy; circuit formation
(accuracies and the best heads' measures vs step, with onsets); onsets and lead/lag;
correlation of each head's induction strength with icl accuracy (bootstrap 95% intervals);
IH vs icl scatter; per-head heatmaps (one shared colour scale); for a stage-2 run (manifest
``init_from``), each head's measures at the end of stage 1 vs the end of stage 2
(:func:`~mmicl_interp.analyses.stages.stage_comparison`); ablation of each head at the last
checkpoint; activation patching of head outputs and the residual stream (label
corruption); path patching into keys/queries/values (``item`` corruption, ``item_m2`` on
multimodal runs: the M2 item is what the previous-token head reads at offset 1), all k / q
/ v panels on one symmetric colour scale; composition scores; the attention slider over
checkpoints; and the circuitsvis attention patterns of every head on one icl sequence. One
self-contained HTML file: no network is needed to open it.

Every number states its n: each section's title says how many sequences (and checkpoints)
it rests on, e.g. "n = 1000 sequences per suite" for the accuracies and measures of the
analysis table and "n = 200 sequences per suite" for ablation and patching (``n_seqs``).
Onsets are marked only where the curve rises by at least
:data:`~mmicl_interp.plots.figures.MIN_ONSET_RISE` (0.1); otherwise the report says "no
onset (rise ... < 0.1)".

The analysis table is ``RUN/analysis.parquet`` when it covers every checkpoint; otherwise
the report computes the missing checkpoints with
:func:`~mmicl_interp.analyses.tables.analyze_run` and saves them there (atomically), so
the next ``mmicl analyze`` or ``mmicl report`` reuses them, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.analyses.tables import (
    analyze_run,
    circuit_scores,
    read_table,
    table_run_id,
    table_runs,
)
from mmicl_interp.config import ConfigError
from mmicl_interp.io import CorruptFileError, MmiclWarning, check_writable
from mmicl_interp.progress import progress_bar
from mmicl_interp.runs import Run

if TYPE_CHECKING:
    from mmicl_interp.plots.attention_view import AttentionFrames

ANALYSIS_FILE = "analysis.parquet"
Log = Callable[[str], None]
SLIDER_MAX_FRAMES = 60
"""At most this many checkpoints (evenly spaced, first and last kept) in a run's attention slider."""
SLIDER_TOP_K = 2
"""The slider shows the top-k induction heads and the best previous-token head at the last step."""


@dataclass
class CircuitSpec:
    """Which curves of a tidy table the report's shared sections read.

    ``measure_suite``: the suite of the per-head measures; ``prev_token`` / ``induction``:
    their names; ``measures``: the per-head curves of the formation plot; ``icl``: the
    model-level ``(suite, metric)`` ICL measures correlated with the best induction head;
    ``onset_icl``: the one whose onset is marked; ``curves``: the formation plot's top panel
    (None: accuracy per suite).
    """

    measure_suite: str = "icl"
    prev_token: str = "prev_token_label"
    induction: str = "ih"
    measures: tuple[str, ...] = ("prev_token_label", "ih", "tila")
    icl: list[tuple[str, str]] = field(default_factory=lambda: [("icl", "accuracy")])
    onset_icl: tuple[str, str] = ("icl", "accuracy")
    curves: list[tuple[str, str]] | None = None


SYNTHETIC = CircuitSpec()
"""The curves of a synthetic run's analysis table."""


def analysis_n(run: Run) -> tuple[int, bool]:
    """Sequences per suite behind the run's analysis table, and whether the file records it.

    A table that does not record it was written by ``mmicl analyze`` or this report with
    their default: the run's eval size.
    """
    path = run.path / ANALYSIS_FILE
    try:
        record = table_runs(path).get(table_run_id(run, path), {}) if path.is_file() else {}
    except (CorruptFileError, OSError):
        record = {}
    n = record.get("n_seqs") if isinstance(record, dict) else None
    if n:
        return int(n), True
    return int(run.config.task.eval_size), False


def run_scores(
    run: Run, progress: bool = True, *, save: bool = True, log: Log | None = print
) -> pd.DataFrame:
    """The run's tidy table: ``RUN/analysis.parquet`` when it covers every checkpoint.

    Otherwise the missing checkpoints are scored (at the run's eval size, as ``mmicl
    analyze``) and, with ``save``, written to ``RUN/analysis.parquet`` so the next analyze or
    report reuses them; ``log`` is told which happened. When the run folder cannot be
    written, the table is computed in memory and ``log`` says it was not kept.
    """
    say = log or (lambda _text: None)
    path = run.path / ANALYSIS_FILE
    rid = table_run_id(run, path)
    steps = set(run.steps)
    table = None
    if path.is_file():
        table = read_table(path)
        table = table[table["run"] == rid]
        if len(table) and set(table["step"]) == steps:
            say(f"report: using {path} ({table['step'].nunique()} checkpoints of run {rid})")
            return table
    if save:
        try:
            check_writable(path, "RUN/analysis.parquet")
        except ConfigError as err:
            say(f"report: {err.args[-1] if err.args else err}; the analysis is computed but not kept")
        else:  # scores what is missing, drops rows of deleted checkpoints (with a warning)
            result = analyze_run(run, path, progress=progress)
            for line in result.summary():
                say(f"report: {line}")
            say(f"report: saved the analysis to {path}; the next `mmicl analyze` or `mmicl report` reuses it")
            table = read_table(path)
            return table[table["run"] == result.run_id]
    if table is not None and len(table) and set(table["step"]) >= steps:
        import warnings

        gone = sorted(set(table["step"]) - steps)
        warnings.warn(
            f"{path} holds rows of {len(gone)} checkpoint(s) no longer in {run.path} (step "
            f"{', '.join(str(s) for s in gone[:8])}); left out of the report",
            MmiclWarning,
            stacklevel=2,
        )
        return table[table["step"].isin(steps)]
    return circuit_scores(run, progress=progress, run_id=rid)


def _summary_text(run: Run, last: int) -> str:
    tc, mc = run.config.task, run.config.model
    if hasattr(tc, "D1"):  # multimodal (SCIENCE.md section 4)
        task = (
            f"multimodal: M1 K1={tc.K1}, L1={tc.L1}, D1={tc.D1}, eps1={tc.eps1}, alpha1={tc.alpha1}; "
            f"M2 K2={tc.K2}, L2={tc.L2}, D2={tc.D2}, eps2={tc.eps2}, alpha2={tc.alpha2}; "
            f"N={tc.N}, B={tc.B}, p_B={tc.p_B}, p_C={tc.p_C}"
        )
        source = run.manifest.get("init_from")
        if source:
            frozen = ", ".join(run.config.pipeline.freeze) or "nothing"
            task += f"; stage 2 from `{source}` (step {run.manifest.get('init_step')}), frozen: {frozen}"
        elif getattr(run.config.pipeline, "early_fusion", False):
            task += "; early fusion (trained from scratch)"
    else:
        task = (
            f"K={tc.K}, L={tc.L}, D={tc.D}, N={tc.N}, B={tc.B}, p_B={tc.p_B}, p_C={tc.p_C}, "
            f"eps={tc.eps}, alpha={tc.alpha}"
        )
    config = f" (config `{run.config.name}`)" if run.config.name != run.name else ""
    return (
        f"Run **{run.name}**{config} at `{run.path}`: {task}; {mc.n_layers} layers x {mc.n_heads} heads, "
        f"positions={mc.positions}, norm={mc.norm}, mlp={mc.mlp}; {len(run.steps)} checkpoints up to "
        f"step {last}. Chance is 1/L = {1 / tc.L:.3f}."
    )


def _n_text(n: int, n_seqs: int, recorded: bool, n_ckpt: int) -> str:
    """The Summary's statement of the n behind each kind of number."""
    source = (
        "as recorded in analysis.parquet"
        if recorded
        else "the run's eval size, the `mmicl analyze` default; analysis.parquet does not record n"
    )
    return (
        f"**Sample sizes.** Accuracies and head measures over checkpoints: n = {n} sequences per suite "
        f"at each of {n_ckpt} checkpoints ({source}). Ablation and patching at the last checkpoint: "
        f"n = {n_seqs} sequences per suite (`--n-seqs`). Correlations and onsets: n = {n_ckpt} "
        "checkpoints. Each section's title states its n."
    )


def stage_section(run: Run, n_seqs: int = 200) -> Any:
    """The "Stage 1 vs stage 2 heads" section of a stage-2 run: a note and the table, or a
    note saying why there is no table (the stage-1 run is gone)."""
    from mmicl_interp.analyses.stages import stage_comparison, stage_wide

    try:
        table = stage_comparison(run, n_seqs=n_seqs)
    except FileNotFoundError as err:
        return f"No comparison: {err}."
    a = table.attrs
    note = (
        f"Each head's attention measures at the end of stage 1 (run **{a['stage1_run']}** at "
        f"`{a['stage1_path']}`, step {a['stage1_step']}, on its own unimodal icl suite) and at the end "
        f"of stage 2 (this run, step {a['stage2_step']}, on its multimodal icl suite), n = {n_seqs} "
        "sequences each; change = stage2 - stage1. Offset-1 `prev_token_label` is label -> M1 item "
        "in stage 1 but label -> M2 item in stage 2; `prev_token_label2` (label -> M1 item) exists "
        "only in stage 2; stage 1's `tiia` is shown as `tiia_m1`."
    )
    if a["init_step"] is not None and a["init_step"] != a["stage1_step"]:
        note += (
            f" Caution: stage 2 was initialised from step {a['init_step']} of stage 1, not from its "
            f"last checkpoint {a['stage1_step']}."
        )
    return [note, stage_wide(table)]


def onset_section(scores: pd.DataFrame, min_rise: float, spec: CircuitSpec = SYNTHETIC) -> list[Any]:
    """The onsets (shown only where the curve rises by >= ``min_rise``) and their leads."""
    from mmicl_interp.analyses import correlation as C
    from mmicl_interp.plots.figures import onset_marks

    names = dict(
        suite=spec.measure_suite,
        accuracy_suite=spec.onset_icl[0],
        icl_metric=spec.onset_icl[1],
        prev_token_measure=spec.prev_token,
        induction_measure=spec.induction,
    )
    marks = onset_marks(scores, min_rise=min_rise, **names)
    table = pd.DataFrame(
        {
            "onset": marks["label"],
            "curve (best head)": marks["curve"],
            "rise": marks["rise"],
            "step": marks["step"],
            "note": [
                "" if shown else text.split(": ", 1)[-1]
                for shown, text in zip(marks["shown"], marks["text"], strict=True)
            ],
        }
    )
    phases = C.phases(scores, min_rise=min_rise, **names)
    leads = phases[[c for c in phases.columns if c == "run" or c.startswith("lead_")]]
    caption = (
        f"Onsets are shown where the measure rises by >= {min_rise:g} (last minus first checkpoint, "
        'in the measure\'s units); otherwise "no onset". Lead of A over B = onset B - onset A '
        "(steps; > 0: A forms first)."
    )
    return [caption, table, leads]


def _heatmap_frame(fig: go.Figure) -> tuple[pd.DataFrame, str | None, str | None]:
    """The first heatmap of a figure as a DataFrame (rows y, columns x) with its axis titles."""
    trace = next(t for t in fig.data if isinstance(t, go.Heatmap))
    z = np.asarray(trace.z, dtype=float)
    frame = pd.DataFrame(z, index=[str(v) for v in trace.y], columns=[str(v) for v in trace.x])
    return frame, fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def patching_figure(report: Any, title: str) -> Any:
    """One figure of a patching report's heatmaps, all on one symmetric colour scale."""
    from mmicl_interp.plots.figures import patching_panels

    if len(report.figures) == 1:
        return report.figures[0][1]
    frames = {name: _heatmap_frame(fig) for name, fig in report.figures}
    same = len({frame.shape for frame, _, _ in frames.values()}) == 1
    return patching_panels(
        {name: frame for name, (frame, _, _) in frames.items()},
        title=title,
        arrange="columns" if same else "rows",
        x_title=[x for _, x, _ in frames.values()],
        y_title=[y for _, _, y in frames.values()],
        value_name="normalised logit diff",
    )


def correlation_section(scores: pd.DataFrame, spec: CircuitSpec = SYNTHETIC, n_boot: int = 2000) -> list[Any]:
    """The best induction head's correlation with each ICL measure of ``spec`` (one line each:
    Pearson and Spearman with moving-block bootstrap 95% intervals), then every head's."""
    from mmicl_interp.analyses import correlation as C

    lines, tables = [], []
    for suite, metric in spec.icl:
        table = C.ih_icl_correlation(
            scores,
            measure=spec.induction,
            suite=spec.measure_suite,
            accuracy_suite=suite,
            icl_metric=metric,
            n_boot=n_boot,
        )
        best = table[table["best"]].iloc[0]
        head = f"L{int(best['layer'])}H{int(best['head'])}"
        lines.append(
            f"- best {spec.induction} head **{head}** vs `{metric}` ({suite}) over {int(best['n'])} "
            f"checkpoints: {C.format_correlation(best)}; {C.format_correlation(best, 'spearman')}"
        )
        if len(spec.icl) > 1:
            table.insert(1, "icl measure", f"{metric} ({suite})")
        tables.append(table)
    note = (
        "Correlation over checkpoints of each head's "
        f"`{spec.induction}` ({spec.measure_suite} suite) with the ICL measure; 95% intervals from "
        "the moving-block bootstrap over checkpoints (block length in the `block` column)."
    )
    return ["\n".join(lines), note, pd.concat(tables, ignore_index=True)]


def circuit_sections(
    scores: pd.DataFrame,
    spec: CircuitSpec,
    *,
    title: str,
    per_ckpt: str,
    n_ckpt: int,
    min_rise: float,
    correlation_title: str,
    note: str = "",
) -> list[tuple[str, Any]]:
    """The sections a run and a series share: circuit formation, onsets and lead/lag, and the
    best induction head's correlation with the ICL measures. ``title``: the formation plot's;
    ``per_ckpt`` states the n behind each checkpoint's numbers; ``note`` is added under the
    formation plot's caption."""
    from mmicl_interp.plots.figures import circuit_formation

    formation = circuit_formation(
        scores,
        measures=spec.measures,
        measure_suite=spec.measure_suite,
        curves=spec.curves,
        prev_token_measure=spec.prev_token,
        induction_measure=spec.induction,
        icl_suite=spec.onset_icl[0],
        icl_metric=spec.onset_icl[1],
        min_rise=min_rise,
        title=title,
    )
    caption = (
        f"Dashed lines: onsets, shown where the curve rises by >= {min_rise:g}; "
        "the legend names each onset's step or why there is none." + (f" {note}" if note else "")
    )
    out = [
        (f"Circuit formation ({per_ckpt})", [caption, formation]),
        (f"Onsets and lead/lag (n = {n_ckpt} checkpoints)", onset_section(scores, min_rise, spec)),
    ]
    if spec.icl:
        out.append((correlation_title, correlation_section(scores, spec)))
    return out


def slider_heads(scores: pd.DataFrame, spec: CircuitSpec = SYNTHETIC, k: int = SLIDER_TOP_K) -> list[str]:
    """The slider's heads: the top-``k`` ``spec.induction`` heads and the best
    ``spec.prev_token`` head at the last checkpoint (highest value), as ``L{l}H{h}``."""
    from mmicl_interp.analyses.correlation import head_table

    heads: list[str] = []
    for measure, take in ((spec.induction, k), (spec.prev_token, 1)):
        try:
            table = head_table(scores, measure, suite=spec.measure_suite).ffill()
        except ValueError:  # the measure was not scored: no heads of it
            continue
        final = table.iloc[-1].dropna().sort_values(ascending=False, kind="stable")
        heads += [f"L{layer}H{head}" for layer, head in final.index[:take]]
    return list(dict.fromkeys(heads))


def slider_section(frames: AttentionFrames, what: str) -> tuple[str, list[Any]]:
    """The attention slider's section: title (with n) and content."""
    n = len(frames.steps)
    title = (
        f"Attention patterns over training: {', '.join(frames.heads)} "
        f"({what}: n = 1 per checkpoint, {n} checkpoints)"
    )
    note = (
        "Drag the slider to move through the checkpoints; heads are the top induction heads and the "
        f"best previous-token head at the last checkpoint. Sequence: {frames.caption}."
    )
    return title, [note, frames] if n else [note + " No checkpoint could be loaded."]


def build_run_report(
    run: Run,
    out: str | Path | None = None,
    *,
    n_seqs: int = 200,
    progress: bool = True,
    min_rise: float | None = None,
    log: Log | None = print,
) -> Path:
    """Write the run's report page; returns its path (default ``RUN/report.html``).

    ``n_seqs``: sequences per suite for ablation, patching and the stage comparison (the
    analysis table keeps its own n, stated beside each number).
    ``min_rise``: onsets are marked only where the curve rises by at least this much (default
    :data:`~mmicl_interp.plots.figures.MIN_ONSET_RISE`). ``log`` receives one line about the
    analysis table (reused, or computed and saved).
    """
    from mmicl_interp.analyses.weights import composition_rows
    from mmicl_interp.plots.attention_view import pick_frames, run_attention_frames, run_attention_view
    from mmicl_interp.plots.figures import MIN_ONSET_RISE, head_heatmaps, ih_vs_icl
    from mmicl_interp.report.causal import ablation_report, patching_report
    from mmicl_interp.report.html import write_report

    min_rise = MIN_ONSET_RISE if min_rise is None else min_rise
    out = check_writable(Path(out) if out else run.path / "report.html", "--out")
    bar = progress_bar(6, "report", progress, unit="part")
    scores = run_scores(run, progress=progress, log=log)
    n, recorded = analysis_n(run)
    n_ckpt = int(scores["step"].nunique())
    bar.update()
    last = run.steps[-1]
    final = scores[(scores["step"] == last) & (scores["metric"] == "accuracy") & scores["head"].isna()]
    summary = pd.DataFrame(
        {"suite": final["suite"].to_numpy(), f"accuracy at step {last}": final["value"].to_numpy(), "n": n}
    )
    multimodal = len(run.layout.modalities) > 1
    per_ckpt = f"n = {n} sequences per suite at each of {n_ckpt} checkpoints"
    sections: list[tuple[str, Any]] = [
        ("Summary", [_summary_text(run, last), _n_text(n, n_seqs, recorded, n_ckpt)]),
        (f"Final accuracy at step {last} (n = {n} sequences per suite)", summary),
        *circuit_sections(
            scores,
            SYNTHETIC,
            title=f"Circuit formation: {run.name} (n = {n} sequences per suite per checkpoint)",
            per_ckpt=per_ckpt,
            n_ckpt=n_ckpt,
            min_rise=min_rise,
            correlation_title=(
                f"Induction strength vs icl accuracy (per head, 95% bootstrap CI; n = {n_ckpt} checkpoints "
                f"of {n} icl sequences)"
            ),
        ),
        (f"IH vs icl accuracy (n = {n_ckpt} checkpoints of {n} icl sequences)", ih_vs_icl(scores)),
    ]
    wanted = ("prev_token_label", "prev_token_label2", "ih", "tila") if multimodal else None
    have = set(scores.loc[scores["head"].notna(), "metric"].astype(str))
    measures = [m for m in wanted or ("prev_token_label", "ih", "tila") if m in have]
    if measures:
        sections.append(
            (
                f"Per-head {', '.join(measures)} over checkpoints (one colour scale; n = {n} icl "
                "sequences per checkpoint)",
                head_heatmaps(scores, measures),
            )
        )
    if run.manifest.get("init_from"):
        sections.append(
            (f"Stage 1 vs stage 2 heads (n = {n_seqs} sequences per stage)", stage_section(run, n_seqs))
        )
    bar.update()
    ablation = ablation_report(run, last, method="mean", n_seqs=n_seqs)
    n_abl = ablation.meta.get("sequences per suite", n_seqs)
    where = f"step {last} (mean, n = {n_abl} sequences per suite)"
    sections += [(f"Ablation at {where}: {name}", fig) for name, fig in ablation.figures]
    sections.append((f"Ablation table, {where}", ablation.shown))
    bar.update()
    # path patching corrupts the items the layer-1 previous-token head reads at offset 1:
    # the item itself (unimodal), the M2 item of the triplet (multimodal)
    path_corruption = "item_m2" if multimodal else "item"
    for kind, corruption in (("heads", "label"), ("resid", "label"), ("path", path_corruption)):
        report = patching_report(run, last, kind=kind, corruption=corruption, n_seqs=n_seqs)
        n_icl = report.meta.get("icl sequences", n_seqs)
        names = " / ".join(name for name, _ in report.figures)
        head = f"Patching ({kind}, {corruption} corruption), step {last}, n = {n_icl} icl sequences"
        shared = " One colour scale for all panels." if len(report.figures) > 1 else ""
        sections.append(
            (f"{head}: {names}", [report.notes + shared, patching_figure(report, f"{head}: {names}")])
        )
    bar.update()
    model = run.model(last)
    composition = pd.DataFrame(composition_rows(model, run=run.name, step=last))
    sections.append(
        (
            f"Composition scores at step {last} (receiver layer/head, sender src_*; from the weights, "
            "no sequences)",
            composition,
        )
    )
    bar.update()
    steps = pick_frames(run.steps, SLIDER_MAX_FRAMES)
    frames = run_attention_frames(run, slider_heads(scores, SYNTHETIC), steps)
    title, content = slider_section(frames, "icl sequence 0")
    if len(steps) < len(run.steps):
        content.insert(0, f"{len(steps)} of the run's {len(run.steps)} checkpoints, evenly spaced.")
    sections.append((title, content))
    sections.append(
        (
            f"Attention patterns at step {last}, every head (icl sequence 0: n = 1)",
            run_attention_view(run, last),
        )
    )
    path = write_report(out, sections, title=f"mmicl-interp report: {run.name}", subtitle=str(run.path))
    bar.update()
    bar.close()
    return Path(path)
