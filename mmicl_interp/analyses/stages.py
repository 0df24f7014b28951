"""Stage 1 vs stage 2 of a multimodal pipeline, head by head (SCIENCE.md sections 4 and 5).

A stage-2 run starts from a stage-1 run (its manifest names it in ``init_from``). For every
head and every attention measure of :func:`~mmicl_interp.analyses.attention.attention_measures`,
:func:`stage_comparison` puts the value at the end of stage 1 (the stage-1 run's last
checkpoint, scored on the stage-1 run's own icl suite, unimodal) next to the value at the
end of stage 2 (this run's last checkpoint, on its own multimodal icl suite).

The measures are defined by the layouts, so the same name can mean different tokens:
``prev_token_label`` is offset 1 (label -> its item) in both, which is the M1 item in stage
1 but the M2 item in the triplet layout of stage 2; ``prev_token_label2`` (label -> M1 item,
offset 2) exists only in stage 2. Stage 1's ``tiia`` (attention to the matching items, all
M1) is reported as ``tiia_m1`` when stage 2 is multimodal, next to stage 2's ``tiia_m1``.
A measure one stage lacks is absent from that stage's rows (NaN in :func:`stage_wide`).

:func:`stage_comparison` returns the shared long table (:mod:`~mmicl_interp.analyses.tidy`):
each stage's rows carry its own run id and last step, suite ``icl`` and the extra column
``stage`` (``stage1`` / ``stage2``); :func:`stage_wide` puts them side by side with
``change = stage2 - stage1`` for reading.
"""

from __future__ import annotations

import pandas as pd
import torch

from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.tidy import head_rows, tidy_table
from mmicl_interp.prompts import ICLPrompts
from mmicl_interp.runs import Run, load_run

STAGES: tuple[str, ...] = ("stage1", "stage2")


def stage1_run(run: Run) -> Run:
    """The stage-1 run a stage-2 run was initialised from (``manifest["init_from"]``).

    Raises ValueError if ``run`` is no stage-2 run and FileNotFoundError if the stage-1 run
    directory is gone.
    """
    source = run.manifest.get("init_from")
    if not source:
        raise ValueError(f"{run.path} is no stage-2 run: its manifest has no init_from")
    try:
        return load_run(source)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the stage-1 run {source} of {run.name} no longer exists ({err})") from None


def _measures(run: Run, n_seqs: int, device: torch.device | str | None) -> dict[str, torch.Tensor]:
    step = run.steps[-1] if run.steps else None
    if step is None:
        raise FileNotFoundError(f"no checkpoints in {run.path}")
    prompts = ICLPrompts.from_batch(run.suites(n_seqs)["icl"], run.layout)
    model = run.model(step)
    if device is not None:
        model = model.to(device)
    return {k: v.cpu() for k, v in attention_measures(model, prompts).items()}


def stage_comparison(run: Run, n_seqs: int = 300, device: torch.device | str | None = None) -> pd.DataFrame:
    """Every head's attention measures at the end of stage 1 and at the end of stage 2.

    ``run`` is the stage-2 run. Returns the long table (see the module docstring): one row
    per (stage, measure, layer, head), measures in stage 2's order then stage-1-only ones.
    ``attrs`` holds both runs' names and steps and stage 2's ``init_step``. Both runs are
    scored on ``n_seqs`` sequences of their own icl suite (as
    :class:`~mmicl_interp.prompts.ICLPrompts`), on ``device`` (default: where the models load).
    """
    first = stage1_run(run)
    s1, s2 = _measures(first, n_seqs, device), _measures(run, n_seqs, device)
    if "tiia" in s1 and "tiia" not in s2 and "tiia_m1" in s2:
        s1["tiia_m1"] = s1.pop("tiia")  # stage 1's items are M1 items
    order = [*s2, *(m for m in s1 if m not in s2)]
    rows: list[dict] = []
    for stage, source, values in (("stage1", first, s1), ("stage2", run, s2)):
        keys = dict(run=source.run_id, step=source.steps[-1], suite="icl", stage=stage)
        for metric in order:
            if metric in values:
                rows.extend(head_rows(values[metric], metric, **keys))
    table = tidy_table(rows, {"stage": "string"})
    table.attrs.update(
        stage1_run=first.name,
        stage1_path=str(first.path),
        stage1_step=first.steps[-1],
        stage2_run=run.name,
        stage2_step=run.steps[-1],
        init_step=run.manifest.get("init_step"),
    )
    return table


def stage_wide(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`stage_comparison` table side by side: metric, layer, head, stage1, stage2,
    change (= stage2 - stage1; NaN where a stage lacks the measure), in the table's order."""
    wide = table.pivot_table(
        index=["metric", "layer", "head"], columns="stage", values="value", aggfunc="first", sort=False
    )
    wide = wide.reindex(columns=list(STAGES)).reset_index()
    wide.columns.name = None
    wide["change"] = wide["stage2"] - wide["stage1"]
    return wide


__all__ = ["STAGES", "stage1_run", "stage_comparison", "stage_wide"]
