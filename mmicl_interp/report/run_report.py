"""The one-page report of a run (``mmicl report RUN``).

Sections: summary of the run; circuit formation (accuracies and the best heads' measures
vs step, with onsets); onsets and lead/lag; correlation of each head's induction strength
with icl accuracy (bootstrap 95% intervals); per-head heatmaps; IH vs icl scatter;
ablation of each head at the last checkpoint; activation patching of head outputs and
the residual stream; path patching into keys/queries/values; composition scores; and the
circuitsvis attention patterns of one icl sequence. One self-contained HTML file: no
network is needed to open it.
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
    tc, mc = run.config.task, run.config.model
    text = (
        f"Run **{run.name}** at `{run.path}`: K={tc.K}, L={tc.L}, D={tc.D}, N={tc.N}, B={tc.B}, "
        f"p_B={tc.p_B}, p_C={tc.p_C}, eps={tc.eps}, alpha={tc.alpha}; {mc.n_layers} layers x "
        f"{mc.n_heads} heads, positions={mc.positions}, norm={mc.norm}, mlp={mc.mlp}; "
        f"{len(run.steps)} checkpoints up to step {last}. Chance is 1/L = {1 / tc.L:.3f}."
    )
    sections: list[tuple[str, Any]] = [("Summary", text), ("Final accuracy", summary)]
    sections.append(("Circuit formation", circuit_formation(scores)))
    sections.append(("Onsets and lead/lag", C.phases(scores)))
    sections.append(
        ("Induction strength vs icl accuracy (per head, 95% bootstrap CI)", C.ih_icl_correlation(scores))
    )
    sections.append(("IH vs icl accuracy", ih_vs_icl(scores)))
    for metric in ("prev_token_label", "ih", "tila"):
        sections.append((f"Per-head {metric} over checkpoints", head_heatmaps(scores, metric)))
    steps.update()
    ablation = ablation_report(run, last, method="mean", n_seqs=n_seqs)
    sections += [(f"Ablation at step {last} (mean): {name}", fig) for name, fig in ablation.figures]
    sections.append((f"Ablation table, step {last}", ablation.table))
    steps.update()
    for kind, corruption in (("heads", "label"), ("resid", "label"), ("path", "item")):
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
