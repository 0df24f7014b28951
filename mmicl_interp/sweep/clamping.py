"""Per-run scoring for the head-clamping experiment (``analyses/head_clamping.py``): each
checkpoint of a run scored on the icl suite as it was trained (with the clamp on where the clamp
covered that step, :mod:`mmicl_interp.train.clamp`), the run's onsets and final values, the
delay judgements (:func:`judge_delays`) and the formatting of its report (values over seeds,
per-seed differences between two arms, one row per verdict).

The judgement: per measure (an onset column of the per-run table), the clamped run and the control
of the same seed are paired, ``d_s = control_s - clamped_s`` (> 0: clamping speeds formation up),
and judged by the delay rule (:func:`~mmicl_interp.sweep.claims.judge_delay`): "supported" only
when the paired t interval's lower bound exceeds the checkpoint spacing around the onsets (the
largest spacing over the runs), the finest resolution an onset has."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmicl_interp.analyses.correlation import crossing_step, model_curve, phases
from mmicl_interp.analyses.tables import checkpoint_rows
from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.runs import load_run
from mmicl_interp.sweep.claim_script import mean_range
from mmicl_interp.sweep.claims import Judgement, judge_delay
from mmicl_interp.sweep.grid import Grid
from mmicl_interp.sweep.runner import SweepResult
from mmicl_interp.train.clamp import Clamp, clamped


def run_scores(run_dir: Path, name: str, n_seqs: int) -> pd.DataFrame:
    """The tidy icl-suite table of one run's checkpoints, each scored with the clamp on where the
    clamp covered that step in training (prev_token: the same pattern for every sequence)."""
    run = load_run(run_dir)
    clamp = Clamp.from_config(run.config.train)
    if clamp is not None and clamp.needs_batch:
        raise SystemExit(f"{run_dir}: this script scores prev_token clamps only, got {clamp.pattern}")
    icl = {"icl": run.suites(n_seqs)["icl"]}
    rows: list[dict] = []
    for step in run.steps:
        model = run.model(step)
        on = clamp if clamp is not None and clamp.active(step) else None
        with clamped(model, on, run.layout):
            rows += checkpoint_rows(model, icl, run.layout, run=name, step=step, measure_suites=("icl",))
    return tidy_table(rows)


def run_row(scores: pd.DataFrame, clamp_layer: int) -> dict:
    """Onsets and final values of one run (``scores``: :func:`run_scores`): the half-rise onsets
    (:func:`~mmicl_interp.analyses.correlation.phases`) of the best induction head after the
    clamped layer (highest final ``ih`` in a layer > ``clamp_layer``), of icl accuracy and of the
    best previous-token head; the first step where icl reaches 0.5; first and final icl; the
    final ``ih`` after the clamped layer; the clamped layer's best ``prev_token_label`` at step 0
    and at the last step."""
    later = scores[(scores["metric"] != "ih") | (scores["layer"] > clamp_layer)]
    phase = phases(later).iloc[0].to_dict()
    icl = model_curve(scores)
    last = int(scores["step"].max())
    final = scores[scores["step"] == last]

    def head_value(metric: str, layer: int, step: int) -> float:
        part = scores[(scores["metric"] == metric) & (scores["layer"] == layer) & (scores["step"] == step)]
        return float(part["value"].max())

    return {
        "induction_layer": phase["induction_layer"],
        "induction_onset": phase["induction_onset"],
        "induction_resolution": phase["induction_resolution"],
        "icl_onset": phase["icl_onset"],
        "icl_resolution": phase["icl_resolution"],
        "prev_token_onset": phase["prev_token_onset"],
        "steps_to_icl_half": crossing_step(icl.index.to_numpy(), icl.to_numpy(), 0.5),
        "first_icl": float(icl.iloc[0]),
        "final_icl": float(icl.iloc[-1]),
        "final_ih": float(final[(final["metric"] == "ih") & (final["layer"] > clamp_layer)]["value"].max()),
        "prev_token_label_l0_first": head_value("prev_token_label", clamp_layer, 0),
        "prev_token_label_l0_final": head_value("prev_token_label", clamp_layer, last),
        "last_step": last,
    }


def score_runs(grid: Grid, result: SweepResult, n_seqs: int) -> pd.DataFrame:
    """One row per run of the finished sweep ``result`` of ``grid``: its name, its grid values
    and its :func:`run_row` (``n_seqs`` icl sequences per checkpoint); prints each run's onsets."""
    rows = []
    for point, pr in zip(grid.points(), result.results, strict=True):
        scores = run_scores(pr.run_dir, point.name, n_seqs)
        row = {"run": point.name, **point.values, **run_row(scores, point.config.train.clamp_layer)}
        rows.append(row)
        print(f"{point.name}: ih onset {row['induction_onset']:.0f}, icl onset {row['icl_onset']:.0f}")
    return pd.DataFrame(rows)


def fmt_range(values: pd.Series, digits: int = 0) -> str:
    """``mean [min, max]`` of the non-missing ``values`` (a range over seeds, not an interval;
    :func:`~mmicl_interp.sweep.claim_script.mean_range`); ``n/a`` when none is left."""
    present = values.dropna().astype(float)
    return mean_range(present, digits) if len(present) else "n/a"


def arm_rows(runs: pd.DataFrame, arm: str, columns: Mapping[str, int]) -> list[list[str]]:
    """One table row per value of column ``arm`` (in order of appearance): the value, its number
    of runs, and :func:`fmt_range` of each of ``columns`` (column -> digits)."""
    return [
        [value, str(len(part)), *(fmt_range(part[c], digits) for c, digits in columns.items())]
        for value, part in runs.groupby(arm, sort=False)
    ]


def seed_differences(
    runs: pd.DataFrame, arm: str, base: str, other: str, columns: Sequence[str]
) -> list[list[str]]:
    """One table row per seed: the seed and, per column, ``base``'s value minus ``other``'s (the
    runs of arms ``base`` and ``other`` of column ``arm`` with that seed), in whole steps with a
    sign; ``n/a`` where either is missing."""
    wide = runs.pivot(index="seed", columns=arm)
    rows = []
    for seed in wide.index:
        cells = [str(seed)]
        for column in columns:
            d = wide.loc[seed, (column, base)] - wide.loc[seed, (column, other)]
            cells.append("n/a" if math.isnan(d) else f"{d:+.0f}")
        rows.append(cells)
    return rows


def judge_delays(
    runs: pd.DataFrame, arm: str, faster: str, slower: str, resolutions: Mapping[str, str]
) -> dict[str, tuple[Judgement, float]]:
    """Per measure of ``resolutions`` (onset column -> the column of its checkpoint spacing): the
    delay judgement of arm ``slower`` minus arm ``faster`` (values of column ``arm``), paired by
    seed (:func:`~mmicl_interp.sweep.claims.judge_delay`), and the spacing it used: the largest
    finite spacing over the runs (NaN when none is finite)."""
    out = {}
    for column, resolution in resolutions.items():
        arms = {value: part.set_index("seed")[column] for value, part in runs.groupby(arm)}
        spacings = runs[resolution].to_numpy(dtype=float)
        spacing = float(np.nanmax(spacings)) if np.isfinite(spacings).any() else math.nan
        out[column] = (judge_delay(arms[faster], arms[slower], spacing), spacing)
    return out


def verdict_rows(
    verdicts: Mapping[str, tuple[Judgement, float]], texts: Mapping[str, str]
) -> list[list[str]]:
    """One table row per measure of :func:`judge_delays`: its hypothesis (``texts``), the speed-up
    and its interval in whole steps with a sign, the spacing, the verdict and the rule's note."""
    rows = []
    for column, (j, spacing) in verdicts.items():
        interval = "n/a" if j.interval is None else f"[{j.interval[0]:+.0f}, {j.interval[1]:+.0f}]"
        effect = "n/a" if j.effect is None or math.isnan(j.effect) else f"{j.effect:+.0f}"
        rows.append([texts[column], effect, interval, f"{spacing:.0f}", j.verdict, j.note])
    return rows


__all__ = [
    "arm_rows",
    "fmt_range",
    "judge_delays",
    "run_row",
    "run_scores",
    "score_runs",
    "seed_differences",
    "verdict_rows",
]
