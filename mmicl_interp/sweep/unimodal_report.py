"""The reports of the single-modality claim scripts (claims 1, 2, 3 and ``paper_arch``): their
Markdown prose and tables, figures and the :class:`~mmicl_interp.sweep.claim_script.Outcome`
they hand to :meth:`~mmicl_interp.sweep.claim_script.ClaimScript.main`.

What the tables read:

- final accuracy per swept point: mean [min, max] over seeds (a range, not an interval);
- icl relative to the context-label plateau: ``(icl - B/N) / (1 - B/N)``, 0 when a model only
  copies a random context label, 1 when perfect (:func:`~mmicl_interp.analyses.stats.icl_relative`);
- the threshold K three ways (:func:`~mmicl_interp.sweep.measures.threshold_rows`): the smallest K
  whose mean final icl reaches 0.5; the crossing of the mean curve, log-interpolated; and each
  seed's own crossing (geometric mean with the 95% t interval of log K, and the grid cell
  ``(lo, hi]`` the seeds' crossings lie in: an interpolated crossing is only known to lie in its
  cell);
- onsets (claim 2): first crossing of half each run's own final rise, interpolated between
  checkpoints, and the first step above the starting plateau + 0.05, means over the seeds whose
  final icl reaches 0.5 (:func:`~mmicl_interp.sweep.measures.over_learners`);
- the plateau check: a run whose icl changed by >= 0.01 over the last 20% of training is still
  moving (:func:`~mmicl_interp.sweep.claims.still_moving`).

Claim 2's one-line verdict per RoPE variant (:func:`rope_verdict`) compares cell means; the
verdicts with intervals are :mod:`mmicl_interp.sweep.unimodal_claims`'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import figures as F
from mmicl_interp.sweep import measures as M
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep.claim_script import Outcome, moving_line, sweep_evidence
from mmicl_interp.sweep.published_compare import boundary_figure
from mmicl_interp.sweep.summary import GridsResult
from mmicl_interp.sweep.unimodal_claims import POS, K, arm_crossings


# --------------------------------------------------------------------------- outcomes
def with_wall(subclaims: Callable, runs: pd.DataFrame, evidence: Mapping[str, dict]) -> Callable:
    """``subclaims(runs, evidence)`` as a function of the compute time: each sweep's evidence
    fields (``evidence[grid]``) plus ``wall_time_s``."""
    return lambda wall: subclaims(
        runs, {name: {**fields, "wall_time_s": wall} for name, fields in evidence.items()}
    )


def position_sweep(done: GridsResult) -> tuple[pd.DataFrame, list[str], list]:
    """A one-sweep positions x K script's final icl / iwl summary
    (:func:`~mmicl_interp.sweep.summary.final_values`), its runs still moving at the end and its
    position types in the grid's order."""
    table = done.results[0].table
    summary = S.final_values(table, [POS, K], suites=("icl", "iwl"))
    return summary, C.still_moving(table), list(dict.fromkeys(table[POS]))


def moving_outcome(
    done: GridsResult,
    command: str,
    lines: list[str],
    fig: go.Figure,
    title: str,
    subclaims: Callable,
    runs: pd.DataFrame,
    moving: list[str],
    csv: str,
    width: int,
) -> Outcome:
    """The outcome of a one-sweep script judged by ``subclaims(runs, common, moving)``
    (``common``: the sweep's evidence, :func:`~mmicl_interp.sweep.claim_script.sweep_evidence`,
    plus ``wall_time_s``): its per-run table goes to ``csv`` with ``still_moving``."""
    common = sweep_evidence(done, command)
    return Outcome(
        lines,
        fig,
        title,
        lambda wall: subclaims(runs, {**common, "wall_time_s": wall}, moving),
        csv={csv: runs.assign(still_moving=runs["run"].isin(moving))},
        width=width,
    )


# --------------------------------------------------------------------------- claim 1
def complexity_intro(done: GridsResult) -> list[str]:
    """Claim 1's heading and the reading of its tables."""
    return [
        "# Claim 1: data complexity (K, B, eps, Zipf alpha)",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point; "
        "chance 1/L = 0.031. 'icl rel. to plateau': (icl - B/N) / (1 - B/N), 0 when the model only "
        "copies a random context label, 1 when perfect. Command: "
        f"`.venv/bin/python analyses/claim1_data_complexity.py`; wall time {done.timing()}.",
    ]


def complexity_section(
    grid,
    table: pd.DataFrame,
    runs: pd.DataFrame,
    keys: list[str],
    suites: Sequence[str],
    fig: go.Figure,
    col: int,
) -> list[str]:
    """One claim-1 sweep (swept ``keys``; ``table`` its sweep table, ``runs`` its per-run rows):
    its heading (with the grid's fixed task values), the final accuracies with icl relative to the
    plateau, the K threshold where K alone is swept, and its panel ``col`` of ``fig``."""
    summary = S.final_values(table, keys, suites=suites)
    fixed = M.fixed_text(grid)
    lines = ["", f"## {', '.join(S.short(k) for k in keys)}" + (f" (at {fixed})" if fixed else ""), ""]
    lines += M.final_table(
        summary, keys, suites, {"icl rel. to plateau": M.spread_texts(runs, keys, "icl_rel")}
    )
    if keys == [K]:
        ((k, k_log, crossings),) = M.threshold_rows(summary, runs, K)
        lines += [
            "",
            f"Smallest K with mean icl >= 0.5: {k} (log-interpolated crossing: K = {k_log}; each "
            f"seed's own crossing: {crossings}).",
        ]
    F.add_suites_by_group(fig, summary, keys[0], keys[1:], col, legend=col == 1, log_x=keys[0] == K)
    return lines


# --------------------------------------------------------------------------- claim 2
def rope_verdict(
    thresholds: dict, onsets: pd.Series, largest: float, resolution: float | pd.Series = 0.0
) -> list[str]:
    """One sentence per RoPE variant: does it raise the threshold and delay icl (``onsets``: icl
    onset step per (positions, K)) compared with one-hot APE? A delay counts only where it is
    larger than ``resolution``, the checkpoint spacing around the onsets: one number, or one per
    (positions, K), the larger of the two compared cells then applying at that K."""

    def spacing(pos: str, k) -> float:
        if not isinstance(resolution, pd.Series):
            return float(resolution)
        return float(max(resolution.get((pos, k), 0.0), resolution.get(("onehot", k), 0.0)))

    lines = []
    base_t = thresholds.get("onehot", math.nan)
    for pos, label in (("rope", "correct RoPE"), ("rope_paper", "the published RoPE")):
        if pos not in thresholds or "onehot" not in thresholds:
            continue
        t = thresholds[pos]
        raised = (math.isnan(t) and not math.isnan(base_t)) or (t > base_t)
        common = [k for (p, k) in onsets.index if p == pos and ("onehot", k) in onsets.index]
        delays = [onsets[(pos, k)] - onsets[("onehot", k)] for k in common]
        delayed = bool(delays) and all(d > spacing(pos, k) for k, d in zip(common, delays, strict=True))
        delay_text = (
            ", ".join(f"K={k}: {d:+.0f} steps" for k, d in zip(common, delays, strict=True))
            if delays
            else "no K where both learned"
        )
        any_spacing = any(spacing(pos, k) > 0 for k in common) if common else False
        within = " or within the checkpoint resolution" if any_spacing else ""
        lines.append(
            f"- Under {label}: threshold K {S.format_threshold(t, largest)} vs one-hot "
            f"{S.format_threshold(base_t, largest)} ({'raised' if raised else 'not raised'}); "
            f"icl onset vs one-hot: {delay_text} "
            f"({'delayed' if delayed else f'not delayed at every K{within}'}). "
            f"Claim 2 {'holds' if raised and delayed else 'holds in part' if raised or delayed else 'fails'}."
        )
    return lines


def positions_lines(
    done: GridsResult,
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    moving: list[str],
    n_seqs: int,
    onsets: Mapping[str, str],
    finals: Mapping[str, str],
) -> list[str]:
    """Claim 2's Markdown: the budget and reading, the threshold K per position type, the plateau
    check, final accuracy with the ``onsets`` and ``finals`` columns of the per-run ``runs``
    (column -> header) per (positions, K), and :func:`rope_verdict`."""
    table = done.results[0].table
    positions = list(dict.fromkeys(table[POS]))
    min_step = done.grids[0].points()[0].config.train.stop_min_step
    budget = C.budget_text(done.steps(), min_step, runs["last_step"])
    lines = [
        "# Claim 2: position encoding vs the data-complexity threshold and the ICL circuit's onset",
        "",
        f"{budget}; final accuracy is mean [min, max] over seeds. "
        "'Steps to icl 0.5': first step where icl accuracy reaches 0.5 (the same level for every position "
        "type, so it compares runs that rise to different heights). Onsets: first crossing of half each "
        "run's own final rise (interpolated between checkpoints, every 25 steps up to step 2000); "
        "both are means over the seeds whose final icl >= 0.5; the induction (ih) and previous-token "
        "(PH-label) curves are "
        f"each run's best head (highest final value), scored on {n_seqs} icl sequences per checkpoint. "
        f"Command: `.venv/bin/python analyses/claim2_positions.py`; wall time {done.timing()}.",
        "",
        "## Threshold K (smallest K with mean final icl >= 0.5)",
        "",
        *M.threshold_table(summary, runs, POS, K, value="final_icl", order=positions),
        "",
        moving_line(moving, table["run"].nunique()),
    ]
    onset = {c: M.over_learners(runs, [POS, K], c) for c in onsets}
    columns = {h: M.number_texts(onset[c]) for c, h in onsets.items()}
    columns |= {h: M.number_texts(runs.groupby([POS, K])[c].mean(), 3) for c, h in finals.items()}
    lines += ["", "## Final accuracy, onsets and end-of-training head scores", ""]
    lines += M.final_table(summary, [POS, K], extra=columns, order=positions)
    resolution = M.over_learners(runs, [POS, K], "icl_resolution", "max")  # spacing around each cell's onsets
    found = S.threshold(summary, K, by=[POS])
    verdict = rope_verdict(found, onset["icl_onset"], summary[K].max(), resolution)
    return lines + [
        "",
        "## Verdict",
        "",
        *verdict,
        "",
        "Verdicts with intervals: section 2 of `claims.json`.",
    ]


def positions_figure(summary: pd.DataFrame, scores: pd.DataFrame, positions: Sequence[str]) -> go.Figure:
    """Claim 2's figure: final icl vs K per position type, and at the largest K every run's icl
    accuracy and best induction head over training (checkpoint scores ``scores``)."""
    k_max = int(summary[K].max())
    titles = [
        "final icl vs K",
        f"icl accuracy over training (K={k_max})",
        f"best-head induction strength (K={k_max})",
    ]
    fig = F.panels(titles)
    F.add_values_by_suite(
        fig,
        summary,
        K,
        POS,
        ("icl",),
        values=positions,
        colours=F.POSITION_COLOURS,
        name=str,
        legendgroup=True,
    )
    for col, metric in ((2, "accuracy"), (3, "ih")):
        F.add_curves_by(fig, scores[scores[K] == k_max], POS, metric, col, positions, F.POSITION_COLOURS)
    fig.update_xaxes(type="log", title_text="K", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    return fig


def positions_outcome(
    done: GridsResult,
    command: str,
    scores: pd.DataFrame,
    runs: pd.DataFrame,
    subclaims: Callable,
    csv: str,
    n_seqs: int,
    onsets: Mapping[str, str],
    finals: Mapping[str, str],
) -> Outcome:
    """Claim 2's outcome from its checkpoint ``scores`` and per-run ``runs``
    (:func:`~mmicl_interp.sweep.measures.circuit_runs`): :func:`positions_lines`,
    :func:`positions_figure` and the sub-claims (:func:`moving_outcome`)."""
    summary, moving, positions = position_sweep(done)
    lines = positions_lines(done, summary, runs, moving, n_seqs, onsets, finals)
    fig = positions_figure(summary, scores, positions)
    title = "Claim 2: one-hot / learned APE vs correct / published RoPE (one line per seed)"
    return moving_outcome(done, command, lines, fig, title, subclaims, runs, moving, csv, 1500)


# --------------------------------------------------------------------------- claim 3
def scaling_report(done: GridsResult, command: str) -> tuple[list[str], go.Figure, pd.DataFrame, dict]:
    """Claim 3's Markdown, figure, per-run table (every sweep's runs,
    :func:`~mmicl_interp.sweep.measures.moving_runs_table`) and evidence per K sweep. Per K sweep
    (a size key x K): the threshold K per size, the plateau check, the final accuracies and two
    panels (icl, iwl); per fixed-K follow-up (no K axis): the final accuracies and the step icl
    reaches 0.5 (:func:`~mmicl_interp.sweep.summary.follow_up`)."""
    lines = [
        "# Claim 3: model scaling vs the data-complexity threshold",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point. "
        "Threshold K = smallest K whose mean final icl reaches 0.5 ('> K' when none of the swept K "
        "did); crossing K = where mean icl crosses 0.5 between that K and the one before, "
        "interpolated on log K; per seed: each seed's own crossing, geometric mean over seeds with "
        "the 95% t interval of log K, and the grid cell (lo, hi] the seeds' crossings lie in (an "
        "interpolated crossing is only known to lie in its cell). Command: "
        f"`{command}`; wall time {done.timing()}.",
    ]
    pairs = list(zip(done.grids, done.results, strict=True))
    k_grids = [(g, r) for g, r in pairs if K in S.swept_keys(r.table, C.SEED_KEYS)]
    fig = F.panels([f"{g.name}: {suite}" for g, _ in k_grids for suite in ("icl", "iwl")])
    every, evidence = [], {}
    for grid, result in pairs:
        runs = M.moving_runs_table(grid.name, result.table)
        every.append(runs)
        size = next(k for k in S.swept_keys(result.table, C.SEED_KEYS) if k != K)
        moving = moving_line(runs[runs["still_moving"]]["run"].tolist(), len(runs))
        if (grid, result) not in k_grids:  # a fixed-K follow-up
            steps, fixed = grid.points()[0].config.train.steps, M.fixed_text(grid)
            where = f" at {fixed}" if fixed else ""
            lines += ["", f"## {S.short(size)}, {steps} steps{where} ({grid.name})", ""]
            lines += [*S.follow_up(result.table, size, steps), "", moving]
            continue
        summary = S.final_values(result.table, [size, K])
        lines += ["", f"## {S.short(size)} ({grid.name})", "", *M.threshold_table(summary, runs, size, K)]
        lines += ["", moving, "", *M.final_table(summary, [size, K])]
        evidence[grid.name] = M.grid_evidence(grid, result, command)
        F.add_values_by_suite(fig, summary, K, size, col=2 * k_grids.index((grid, result)) + 1)
    fig.update_xaxes(type="log", title_text="K")
    F.accuracy_axes(fig)
    return lines, fig, pd.concat(every, ignore_index=True), evidence


# --------------------------------------------------------------------------- paper_arch
def crossing_rows(runs: pd.DataFrame, positions: Sequence[str], value: str = "icl") -> list[list]:
    """Per position type (in ``positions``' order): each seed's crossing of 0.5 by ``value`` along
    K (:func:`~mmicl_interp.sweep.claims.crossing_text`) and how many seeds reach it."""
    per_seed = arm_crossings(runs, POS, value)
    return [
        [p, C.crossing_text(s), f"{int(s['crossing'].notna().sum())} of {len(s)}"]
        for p, s in ((p, per_seed[p]) for p in positions)
    ]


def paper_arch_lines(
    done: GridsResult,
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    moving: list[str],
    n_seqs: int,
    compared: Sequence[str],
) -> list[str]:
    """``paper_arch``'s Markdown: the model, budget and reading; each position type's crossing K
    (:func:`crossing_rows`) beside the ``compared`` results (one line each); the final icl, iwl,
    icl relative to the plateau and best induction head per (positions, K); the plateau check."""
    grid, table = done.grids[0], done.results[0].table
    wide = S.wide(summary, [POS, K]).set_index([POS, K])
    rel, ih = (M.spread_texts(runs, [POS, K], column) for column in ("icl_rel", "best_ih"))
    positions = list(dict.fromkeys(table[POS]))
    budget = C.budget_text(done.steps(), grid.points()[0].config.train.stop_min_step, runs["step"])
    return [
        "# Claims 1 and 2 on the paper's architecture",
        "",
        f"Gated MLP, no W_O, RMSNorm, 2 layers x 1 head ({grid.name}); {budget}; final accuracy "
        f"mean [min, max] over {C.n_seeds(table)} seeds (task, model and data seeds together). 'icl rel.': "
        "icl relative to the context-label plateau, (icl - B/N) / (1 - B/N). 'best ih': the strongest "
        f"induction head's ih on {n_seqs} icl sequences at the last checkpoint. Command: "
        f"`.venv/bin/python analyses/paper_arch.py`; wall time {done.timing()}.",
        "",
        "## Crossing K (each seed's icl reaches 0.5, log-interpolated between the grid points)",
        "",
        "Geometric mean over seeds with the 95% t interval of log K (seeds only), and the grid cell "
        "(lo, hi] the seeds' crossings lie in: an interpolated crossing is only known to lie in its cell.",
        "",
        *S.markdown_table(
            ["positions", "crossing K [95% t], grid cell", "seeds reaching 0.5"],
            crossing_rows(runs, positions),
        ),
        "",
        "Compared with:",
        "",
        *(f"- {text}." for text in compared),
        "",
        "## Final accuracy per K",
        "",
        *S.markdown_table(
            ["positions", "K", "icl", "iwl", "icl rel.", "best ih"],
            [
                [p, k, wide.loc[(p, k), "icl"], wide.loc[(p, k), "iwl"], rel[(p, k)], ih[(p, k)]]
                for p in positions
                for k in sorted(summary[K].unique())
            ],
        ),
        "",
        "Runs whose icl still moves at the end (least-squares trend over the last 20% of training "
        f">= 0.01): {', '.join(moving) if moving else 'none'}.",
    ]


def paper_arch_outcome(
    done: GridsResult,
    command: str,
    runs: pd.DataFrame,
    subclaims: Callable,
    csv: str,
    n_seqs: int,
    compared: Sequence[str],
    bracket: tuple[float, float],
) -> Outcome:
    """``paper_arch``'s outcome from its per-run ``runs`` (with ``best_ih``,
    :func:`~mmicl_interp.sweep.published_compare.runs_with_best_ih`): :func:`paper_arch_lines`,
    the figure with the published code's ``bracket``
    (:func:`~mmicl_interp.sweep.published_compare.boundary_figure`) and the sub-claims."""
    summary, moving, positions = position_sweep(done)
    lines = paper_arch_lines(done, summary, runs, moving, n_seqs, compared)
    title = "Paper's architecture: icl / iwl vs K (dotted: the published code's boundary)"
    fig = boundary_figure(summary, runs, positions, bracket)
    return moving_outcome(done, command, lines, fig, title, subclaims, runs, moving, csv, 1300)


__all__ = [
    "complexity_intro",
    "complexity_section",
    "crossing_rows",
    "moving_outcome",
    "paper_arch_lines",
    "paper_arch_outcome",
    "position_sweep",
    "positions_outcome",
    "positions_figure",
    "positions_lines",
    "rope_verdict",
    "scaling_report",
    "with_wall",
]
