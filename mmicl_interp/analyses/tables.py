"""Measures across a run's checkpoints, as one tidy table.

``circuit_scores(run)`` loads every checkpoint, scores each head's attention measures on
the icl suite (:mod:`mmicl_interp.analyses.attention`) and each suite's accuracy, loss
and CLA, and returns a pandas DataFrame with one value per row:

    run, step, suite, metric, layer, head, value

``layer`` and ``head`` are nullable integers, NA for model-level metrics (accuracy, loss,
cla). Tables of several runs concatenate; plots and correlations read this format.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from mmicl_interp.analyses.attention import attention_measures, context_label_accuracy
from mmicl_interp.data.task import Batch
from mmicl_interp.runs import Run, load_run
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

COLUMNS = ["run", "step", "suite", "metric", "layer", "head", "value"]


def empty_table() -> pd.DataFrame:
    """A tidy table with no rows and the right column types."""
    return _typed(pd.DataFrame(columns=COLUMNS))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(
        {
            "run": "string",
            "step": "int64",
            "suite": "string",
            "metric": "string",
            "layer": "Int64",
            "head": "Int64",
            "value": "float64",
        }
    )


def checkpoint_rows(
    model: torch.nn.Module,
    suites: dict[str, Batch],
    layout,
    *,
    run: str,
    step: int,
    measure_suites: Sequence[str] = ("icl",),
) -> list[dict]:
    """Tidy rows for one checkpoint: per-suite accuracy / loss / cla, per-head measures."""
    rows: list[dict] = []
    for suite, batch in suites.items():
        logits = suite_logits(model, batch)
        acc, loss = accuracy_and_loss(logits, batch.targets)
        cla = context_label_accuracy(logits, batch)
        for metric, value in (("accuracy", acc), ("loss", loss), ("cla", cla)):
            rows.append(
                dict(run=run, step=step, suite=suite, metric=metric, layer=None, head=None, value=value)
            )
    for suite in measure_suites:
        measures = attention_measures(model, suites[suite], layout)
        for metric, values in measures.items():
            for layer in range(values.shape[0]):
                for head in range(values.shape[1]):
                    rows.append(
                        dict(
                            run=run,
                            step=step,
                            suite=suite,
                            metric=metric,
                            layer=layer,
                            head=head,
                            value=float(values[layer, head]),
                        )
                    )
    return rows


def circuit_scores(
    run: Run | str | Path,
    steps: Iterable[int] | None = None,
    *,
    suites: Sequence[str] | None = None,
    measure_suites: Sequence[str] = ("icl",),
    n_seqs: int | None = None,
    skip_steps: Iterable[int] = (),
    progress: bool = True,
) -> pd.DataFrame:
    """The tidy table of measures and accuracies over a run's checkpoints.

    ``steps`` defaults to every checkpoint; ``suites`` to every eval suite of the run
    (multimodal runs add icl_m1_only and icl_m2_only); ``skip_steps`` are left out (already
    analysed); ``n_seqs`` caps the sequences per suite (default: the run's eval size).
    """
    if not isinstance(run, Run):
        run = load_run(run)
    available = run.steps
    steps = available if steps is None else list(steps)
    missing = sorted(set(steps) - set(available))
    if missing:
        raise ValueError(f"steps {missing} have no checkpoint in {run.path}; available: {available}")
    all_suites = run.suites(n_seqs)
    suites = list(all_suites) if suites is None else list(suites)
    unknown = [s for s in [*suites, *measure_suites] if s not in all_suites]
    if unknown:
        raise ValueError(f"suites {unknown} unknown; allowed: {', '.join(all_suites)}")
    chosen = {name: all_suites[name] for name in dict.fromkeys([*suites, *measure_suites])}
    todo = [s for s in steps if s not in set(skip_steps)]
    rows: list[dict] = []
    for step in tqdm(todo, desc=f"analyse {run.name}", disable=not progress, unit="ckpt"):
        model = run.model(step)
        rows.extend(
            checkpoint_rows(model, chosen, run.layout, run=run.name, step=step, measure_suites=measure_suites)
        )
    for name in set(chosen) - set(suites):  # measured only: keep measures, drop its accuracies
        rows = [r for r in rows if not (r["suite"] == name and r["layer"] is None)]
    if not rows:
        return empty_table()
    return _typed(pd.DataFrame(rows, columns=COLUMNS))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a tidy table written by :func:`write_table` (parquet or CSV by suffix)."""
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return _typed(df[COLUMNS])


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a tidy table atomically as parquet (``.parquet``) or CSV (anything else)."""
    from mmicl_interp.io import atomic_write

    path = Path(path)
    if path.suffix == ".parquet":
        atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
