"""The one-page report of a run (``mmicl report RUN``).

Sections: summary of the run; circuit formation (accuracies and the best heads' measures
vs step, with onsets); onsets and lead/lag; correlation of each head's induction strength
with icl accuracy (bootstrap 95% intervals); per-head heatmaps; IH vs icl scatter; for a
stage-2 run (manifest ``init_from``), each head's measures at the end of stage 1 vs the end
of stage 2 (:func:`~mmicl_interp.analyses.stages.stage_comparison`); ablation of each head
at the last checkpoint; activation patching of head outputs and the residual stream (label
corruption); path patching into keys/queries/values (``item`` corruption, ``item_m2`` on
multimodal runs: the M2 item is what the previous-token head reads at offset 1);
composition scores; and the circuitsvis attention patterns of one icl sequence. One
self-contained HTML file: no network is needed to open it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from mmicl_interp.analyses.tables import circuit_scores, read_table
from mmicl_interp.runs import Run


def run_scores(run: Run, progress: bool = True) -> pd.DataFrame:
    """The run's tidy table: ``RUN/analysis.parquet`` when it covers every checkpoint, else computed."""
    cached = run.path / "analysis.parquet"
    if cached.is_file():
        table = read_table(cached)
        table = table[table["run"] == run.name]
        if set(table["step"]) >= set(run.steps):
            return table
    return circuit_scores(run, progress=progress)


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
    return (
        f"Run **{run.name}** at `{run.path}`: {task}; {mc.n_layers} layers x {mc.n_heads} heads, "
        f"positions={mc.positions}, norm={mc.norm}, mlp={mc.mlp}; {len(run.steps)} checkpoints up to "
        f"step {last}. Chance is 1/L = {1 / tc.L:.3f}."
    )


def stage_section(run: Run, n_seqs: int = 200) -> Any:
    """The "Stage 1 vs stage 2 heads" section of a stage-2 run: a note and the table, or a
    note saying why there is no table (the stage-1 run is gone)."""
    from mmicl_interp.analyses.stages import stage_comparison

    try:
        table = stage_comparison(run, n_seqs=n_seqs)
    except FileNotFoundError as err:
        return f"No comparison: {err}."
    a = table.attrs
    note = (
        f"Each head's attention measures at the end of stage 1 (run **{a['stage1_run']}** at "
        f"`{a['stage1_path']}`, step {a['stage1_step']}, on its own unimodal icl suite) and at the end "
        f"of stage 2 (this run, step {a['stage2_step']}, on its multimodal icl suite), {n_seqs} "
        "sequences each; change = stage2 - stage1. Offset-1 `prev_token_label` is label -> M1 item "
        "in stage 1 but label -> M2 item in stage 2; `prev_token_label2` (label -> M1 item) exists "
        "only in stage 2; stage 1's `tiia` is shown as `tiia_m1`."
    )
    if a["init_step"] is not None and a["init_step"] != a["stage1_step"]:
        note += (
            f" Caution: stage 2 was initialised from step {a['init_step']} of stage 1, not from its "
            f"last checkpoint {a['stage1_step']}."
        )
    return [note, table]


def build_run_report(
    run: Run, out: str | Path | None = None, *, n_seqs: int = 200, progress: bool = True
) -> Path:
    """Write the run's report page; returns its path (default ``RUN/report.html``)."""
    from mmicl_interp.analyses import correlation as C
    from mmicl_interp.analyses.weights import composition_rows
    from mmicl_interp.plots.attention_view import run_attention_view
    from mmicl_interp.plots.figures import circuit_formation, head_heatmaps, ih_vs_icl
    from mmicl_interp.report.causal import ablation_report, patching_report
    from mmicl_interp.report.html import write_report

    out = Path(out) if out else run.path / "report.html"
    steps = tqdm(total=6, desc="report", disable=not progress)
    scores = run_scores(run, progress=progress)
    steps.update()
    last = run.steps[-1]
    final = scores[(scores["step"] == last) & (scores["metric"] == "accuracy")]
    summary = final[["suite", "value"]].rename(columns={"value": f"accuracy at step {last}"})
    text = _summary_text(run, last)
    multimodal = len(run.layout.modalities) > 1
    sections: list[tuple[str, Any]] = [("Summary", text), ("Final accuracy", summary)]
    sections.append(("Circuit formation", circuit_formation(scores)))
    sections.append(("Onsets and lead/lag", C.phases(scores)))
    sections.append(
        ("Induction strength vs icl accuracy (per head, 95% bootstrap CI)", C.ih_icl_correlation(scores))
    )
    sections.append(("IH vs icl accuracy", ih_vs_icl(scores)))
    measures = ("prev_token_label", "prev_token_label2", "ih", "tila") if multimodal else None
    for metric in measures or ("prev_token_label", "ih", "tila"):
        sections.append((f"Per-head {metric} over checkpoints", head_heatmaps(scores, metric)))
    if run.manifest.get("init_from"):
        sections.append(("Stage 1 vs stage 2 heads", stage_section(run, n_seqs)))
    steps.update()
    ablation = ablation_report(run, last, method="mean", n_seqs=n_seqs)
    sections += [(f"Ablation at step {last} (mean): {name}", fig) for name, fig in ablation.figures]
    sections.append((f"Ablation table, step {last}", ablation.table))
    steps.update()
    # path patching corrupts the items the layer-1 previous-token head reads at offset 1:
    # the item itself (unimodal), the M2 item of the triplet (multimodal)
    path_corruption = "item_m2" if multimodal else "item"
    for kind, corruption in (("heads", "label"), ("resid", "label"), ("path", path_corruption)):
        report = patching_report(run, last, kind=kind, corruption=corruption, n_seqs=n_seqs)
        sections += [
            (f"Patching ({kind}, {corruption} corruption), step {last}: {name}", fig)
            for name, fig in report.figures
        ]
    steps.update()
    model = run.model(last)
    composition = pd.DataFrame(composition_rows(model, run=run.name, step=last))
    sections.append((f"Composition scores at step {last} (receiver layer/head, sender src_*)", composition))
    steps.update()
    sections.append((f"Attention patterns at step {last} (icl sequence 0)", run_attention_view(run, last)))
    path = write_report(out, sections, title=f"mmicl-interp report: {run.name}", subtitle=str(run.path))
    steps.update()
    steps.close()
    return Path(path)
