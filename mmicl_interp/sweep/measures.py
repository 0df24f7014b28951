"""Per-run tables of a finished sweep, for the claim scripts: one row per run with its swept
values and the measures a verdict needs (final accuracies, icl relative to its context-label
plateau, the best induction head, onsets and across-checkpoint correlations), and the Markdown
tables the scripts build from them (final accuracy per swept point, threshold K per group).

The plateau: a model that only copies a random context label scores B/N on the icl suite, so
``icl_rel = (icl - B/N) / (1 - B/N)`` (:func:`~mmicl_interp.analyses.stats.icl_relative`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mmicl_interp.analyses.stats import icl_relative
from mmicl_interp.sweep.claims import crossing_text, final_per_run, n_unique_configs, still_moving
from mmicl_interp.sweep.grid import Grid
from mmicl_interp.sweep.runner import SweepResult
from mmicl_interp.sweep.summary import (
    format_threshold,
    markdown_table,
    seed_crossings,
    short,
    spread,
    threshold,
    wide,
)


def final_accuracies(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a sweep table: its swept values, last step, final icl and iwl accuracy."""
    runs = final_per_run(table, "icl").rename(columns={"value": "icl"})
    runs["iwl"] = runs["run"].map(final_per_run(table, "iwl").set_index("run")["value"])
    return runs


def run_dirs(grid: Grid, result: SweepResult) -> dict[str, Path]:
    """Point name -> run folder."""
    return {p.name: r.run_dir for p, r in zip(grid.points(), result.results, strict=True)}


def with_plateau(runs: pd.DataFrame, grid: Grid, plateau: bool = True) -> pd.DataFrame:
    """``runs`` plus ``icl_rel`` (icl relative to each run's own plateau B/N) and, with
    ``plateau``, the plateau B/N itself."""
    configs = {p.name: p.config.task for p in grid.points()}
    runs["icl_rel"] = [
        icl_relative(v, configs[r].N, configs[r].B) for r, v in zip(runs["run"], runs["icl"], strict=True)
    ]
    if plateau:
        runs["plateau"] = [configs[r].B / configs[r].N for r in runs["run"]]
    return runs


def moving_runs_table(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """:func:`final_accuracies` plus ``still_moving`` (icl not at a plateau at the end,
    :func:`~mmicl_interp.sweep.claims.still_moving`) and a first ``grid`` column naming the sweep."""
    runs = final_accuracies(table)
    runs["still_moving"] = runs["run"].isin(still_moving(table))
    runs.insert(0, "grid", name)
    return runs


def best_ih(run_dir: str | Path, n_seqs: int) -> float:
    """The strongest head's induction strength (ih) on ``n_seqs`` icl sequences, last checkpoint."""
    from mmicl_interp.analyses.attention import attention_measures
    from mmicl_interp.runs import load_run

    run = load_run(run_dir)
    return float(attention_measures(run.model(), run.suites(n_seqs)["icl"], run.layout)["ih"].max())


def common_suite_scores(run_dir: str | Path, B: int, n_seqs: int) -> dict[str, float]:
    """A run's last checkpoint on an icl suite of burstiness ``B`` (common to runs trained with
    other B or eps): its accuracy ``icl_b<B>`` and the best head's induction strength ``ih_b<B>``."""
    from mmicl_interp.analyses.attention import attention_measures
    from mmicl_interp.runs import load_run
    from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

    run = load_run(run_dir)
    icl = run.suites(n_seqs, B=B)["icl"]
    model = run.model()
    acc, _ = accuracy_and_loss(suite_logits(model, icl), icl.targets)
    ih = attention_measures(model, icl, run.layout)["ih"]
    return {f"icl_b{B}": float(acc), f"ih_b{B}": float(ih.max())}


def with_common_suite(
    grid: Grid, result: SweepResult, runs: pd.DataFrame, B: int, n_seqs: int
) -> pd.DataFrame:
    """``runs`` plus :func:`common_suite_scores` and ``icl_b<B>_rel``, relative to that suite's
    plateau ``B / N``."""
    dirs = run_dirs(grid, result)
    scores = pd.DataFrame(
        [common_suite_scores(dirs[name], B, n_seqs) for name in runs["run"]], index=runs.index
    )
    out = pd.concat([runs, scores], axis=1)
    out[f"icl_b{B}_rel"] = icl_relative(out[f"icl_b{B}"], grid.points()[0].config.task.N, B)
    return out


def circuit_runs(
    grid: Grid, result: SweepResult, n_seqs: int, workers: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's checkpoint scores on the icl suite (``workers`` runs at a time), and per run one
    row: onsets (half-rise and leaving-the-plateau rules), last step, final icl, steps to icl 0.5,
    the best head's final ih and PH-label, and the best head's across-checkpoint ih-icl Pearson r
    with its moving-block bootstrap interval (``ih_icl_r``, ``_lo``, ``_hi``, ``_block``)."""
    from mmicl_interp.analyses.correlation import crossing_step, ih_icl_correlation, model_curve, phases
    from mmicl_interp.analyses.tables import circuit_scores_runs

    tables, rows = [], []
    dirs = [pr.run_dir for pr in result.results]
    every = circuit_scores_runs(dirs, workers=workers, suites=["icl"], n_seqs=n_seqs)
    for point, scores in zip(grid.points(), every, strict=True):
        tables.append(scores.assign(**point.values))
        phase = phases(scores).iloc[0].to_dict()
        plateau = phases(scores, rule="plateau").iloc[0]
        for what in ("icl", "induction", "prev_token"):
            phase[f"{what}_onset_plateau"] = plateau[f"{what}_onset"]
        last = int(scores["step"].max())
        final = scores[scores["step"] == last]
        phase.update(point.values)
        phase["last_step"] = last  # below train.steps where train.stop_plateau stopped the run
        icl = model_curve(scores)
        phase["final_icl"] = float(icl.iloc[-1])
        phase["steps_to_icl_half"] = crossing_step(icl.index.to_numpy(), icl.to_numpy(), 0.5)
        for measure, column in (("ih", "final_ih"), ("prev_token_label", "final_prev_token_label")):
            phase[column] = float(final[final["metric"] == measure]["value"].max())
        best = ih_icl_correlation(scores).query("best").iloc[0]  # moving-block bootstrap, block from the acf
        phase.update(
            ih_icl_r=float(best["pearson"]),
            ih_icl_lo=float(best["pearson_lo"]),
            ih_icl_hi=float(best["pearson_hi"]),
            ih_icl_block=int(best["block"]),
        )
        rows.append(phase)
    return pd.concat(tables, ignore_index=True), pd.DataFrame(rows)


def best_head_curves(scores: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Per run of a checkpoint-score table: the icl accuracy curve (``metric`` "accuracy") or the
    curve of the head with the highest final ``metric``, indexed by step."""
    from mmicl_interp.analyses.correlation import head_table, model_curve

    curves = {}
    for name, run in scores.groupby("run"):
        if metric == "accuracy":
            curves[name] = model_curve(run)
        else:
            heads = head_table(run, metric)
            curves[name] = heads[heads.iloc[-1].idxmax()]
    return curves


def plateau_runs_table(
    grid: Grid, result: SweepResult, common_B: int | None = None, n_seqs: int = 500
) -> pd.DataFrame:
    """One row per run of a sweep: a first ``grid`` column naming it, the swept values, final icl
    and iwl, ``icl_rel`` and its ``plateau`` B/N (:func:`with_plateau`); with ``common_B`` also
    :func:`with_common_suite` on ``n_seqs`` sequences, so that runs trained with different B or
    eps are scored against one plateau too."""
    runs = with_plateau(final_accuracies(result.table), grid)
    runs.insert(0, "grid", grid.name)
    if common_B is not None:
        runs = with_common_suite(grid, result, runs, common_B, n_seqs)
    return runs


def grid_evidence(grid: Grid, result: SweepResult, command: str) -> dict[str, Any]:
    """The evidence fields of one sweep's sub-claims that its per-run table cannot give: the unique
    configs of its runs, its grid's steps and the command."""
    return dict(
        n_unique_configs=n_unique_configs([r.run_dir for r in result.results]),
        steps=grid.points()[0].config.train.steps,
        command=command,
    )


def fixed_text(grid: Grid, prefix: str = "task.") -> str:
    """The grid's fixed (``[set]``) values of the ``prefix`` keys as ``K = 128, B = 1``; empty when
    none: what a section heading says the sweep was run at."""
    return ", ".join(f"{short(k)} = {v}" for k, v in grid.fixed.items() if k.startswith(prefix))


def over_learners(
    runs: pd.DataFrame, keys: Sequence[str], column: str, stat: str = "mean", value: str = "final_icl"
) -> pd.Series:
    """``stat`` of ``column`` per combination of ``keys`` over the runs whose ``value`` reached 0.5
    (an onset, or the checkpoint spacing around it, means something only where icl was learned)."""
    learners = runs[runs[value] >= 0.5]
    return learners.groupby(list(keys))[column].agg(stat)


def spread_texts(runs: pd.DataFrame, keys: Sequence[str], column: str) -> dict:
    """``mean [min, max]`` (:func:`~mmicl_interp.sweep.summary.spread`) of a per-run ``column``
    per combination of ``keys`` (a tuple, or the value itself for one key): an extra column of
    :func:`final_table`."""
    per = runs.groupby(list(keys))[column].agg(["mean", "min", "max", "count"])
    return {i: spread(r) for i, r in per.iterrows()}


def number_texts(values: pd.Series, digits: int = 0) -> dict:
    """Each value of ``values`` with ``digits`` decimals, ``-`` for NaN, keyed by its index: an
    extra column of :func:`final_table`."""
    return {i: "-" if math.isnan(v) else f"{v:.{digits}f}" for i, v in values.items()}


def final_table(
    summary: pd.DataFrame,
    keys: Sequence[str],
    suites: Sequence[str] = ("icl", "iwl"),
    extra: Mapping[str, Mapping] | None = None,
    order: Sequence | None = None,
) -> list[str]:
    """A Markdown table of a :func:`~mmicl_interp.sweep.summary.final_values` summary: one row per
    combination of ``keys`` (sorted; the first key in ``order`` when given), its values, each
    suite's final ``mean [min, max]`` over seeds and the ``extra`` columns (header -> texts keyed
    like a ``groupby(keys)`` index: a tuple, or the value itself for one key; ``-`` where absent)."""
    keys, extra = list(keys), dict(extra or {})
    table = wide(summary, keys)
    if order is not None:
        ranks = {v: i for i, v in enumerate(order)}
        table = table.iloc[sorted(range(len(table)), key=lambda i: ranks[table[keys[0]].iloc[i]])]
    rows = []
    for _, r in table.iterrows():
        at = tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]
        rows.append(
            [r[k] for k in keys]
            + [r.get(s, "-") for s in suites]
            + [texts.get(at, "-") for texts in extra.values()]
        )
    return markdown_table([short(k) for k in keys] + list(suites) + list(extra), rows)


THRESHOLD_HEADER = ("threshold K", "crossing K (log-interpolated)", "crossing K per seed [95% t], grid cell")
"""The columns of :func:`threshold_rows` after the group's value."""


def threshold_rows(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    key: str = "task.K",
    by: str | None = None,
    value: str = "icl",
    order: Sequence | None = None,
) -> list[list]:
    """Per value of ``by`` (in ``order``, else sorted; one row without ``by``): the value, the
    smallest ``key`` whose mean final icl reaches 0.5, the log-interpolated crossing (both from
    the :func:`~mmicl_interp.sweep.summary.final_values` ``summary``, ``> largest`` when not
    reached) and each seed's own crossing of the per-run ``value`` column of ``runs``
    (:func:`~mmicl_interp.sweep.claims.crossing_text`): the three readings of one threshold."""
    groups = [by] if by else []
    found = threshold(summary, key, by=groups)
    crossing = threshold(summary, key, by=groups, interpolate=True)
    seeds = seed_crossings(runs, key, by=groups, value=value)
    per_seed = {v: part for v, part in seeds.groupby(by)} if by else {None: seeds}
    largest = summary[key].max()
    return [
        ([v] if by else [])
        + [
            format_threshold(found[v], largest),
            format_threshold(crossing[v], largest),
            crossing_text(per_seed[v]),
        ]
        for v in (found if order is None else order)
    ]


def threshold_table(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    by: str,
    key: str = "task.K",
    value: str = "icl",
    order: Sequence | None = None,
) -> list[str]:
    """:func:`threshold_rows` per value of ``by`` as a Markdown table (:data:`THRESHOLD_HEADER`)."""
    return markdown_table(
        [short(by), *THRESHOLD_HEADER], threshold_rows(summary, runs, key, by, value, order)
    )


__all__ = [
    "THRESHOLD_HEADER",
    "best_head_curves",
    "best_ih",
    "circuit_runs",
    "common_suite_scores",
    "final_accuracies",
    "final_table",
    "fixed_text",
    "grid_evidence",
    "moving_runs_table",
    "number_texts",
    "over_learners",
    "plateau_runs_table",
    "run_dirs",
    "spread_texts",
    "threshold_rows",
    "threshold_table",
    "with_common_suite",
    "with_plateau",
]
