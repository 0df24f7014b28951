"""Our runs beside the published code's, for the fidelity scripts (``analyses/published_ablation.py``,
``analyses/paper_arch.py``): icl / iwl trajectories per run, each run's *side* at its last step,
mean (min-max) cells over seeds, the published reference table (``published_reference.csv``,
:mod:`~mmicl_interp.sweep.reference_table`) beside our runs, two arms paired by seed, per-run
tables with the best induction head, and the icl / iwl vs K figure with the published boundary.

The seeds of the two codes draw different random streams, so our runs and the published code's
are compared as distributions (mean and range over seeds), never seed by seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.analyses.stats import paired_t_interval
from mmicl_interp.sweep.figures import OTHER, POSITION_COLOURS, add_level, panels
from mmicl_interp.sweep.grid import Grid
from mmicl_interp.sweep.measures import best_ih, final_accuracies, run_dirs, with_plateau
from mmicl_interp.sweep.runner import SweepResult
from mmicl_interp.sweep.summary import markdown_table, spread_trace

PLATEAU = 0.25
"""The context-label plateau B/N at the published point (N 8, B 2): a model that copies a random
context label scores this on the icl suite."""
ICL_SIDE, IWL_SIDE = 0.8, 0.6
"""A run is on the ICL side from icl >= 0.8, on the IWL side from iwl >= 0.6 (icl below the plateau)."""


def side(icl: float, iwl: float, plateau: float = PLATEAU) -> str:
    """``ICL`` when icl >= 0.8, ``IWL`` when iwl >= 0.6 and icl is below the context-label
    ``plateau`` (memorising, not copying a context label), else ``neither``: which side of the
    ICL/IWL boundary a run ends on, as the published code's runs are read."""
    if icl >= ICL_SIDE:
        return "ICL"
    if iwl >= IWL_SIDE and icl < plateau:
        return "IWL"
    return "neither"


def trajectories(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, step) of a sweep table with icl and iwl accuracy side by side, plus the
    swept ``model.*`` / ``task.*`` keys and ``seed``: the shape every comparison here reads."""
    acc = table[(table["metric"] == "accuracy") & table["suite"].isin(["icl", "iwl"])]
    keys = [c for c in acc.columns if c.startswith(("model.", "task.")) or c == "seed"]
    wide = acc.pivot_table(index=["run", "step", *keys], columns="suite", values="value").reset_index()
    wide.columns.name = None
    return wide


def last_steps(traj: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`trajectories` at each run's last step (its final icl / iwl)."""
    return traj[traj["step"] == traj.groupby("run")["step"].transform("max")]


def step_rows(
    traj: pd.DataFrame, keys: Sequence[str], steps: Sequence[int], plateau: float = PLATEAU
) -> pd.DataFrame:
    """One row per run of :func:`trajectories`: its ``keys``, name, last step, :func:`side` at the
    last step and ``icl_<s>`` / ``iwl_<s>`` at each of ``steps`` it reached; sorted by ``keys``.
    The per-run table to set beside the published code's trajectories at the same steps."""
    rows = []
    for run, part in traj.groupby("run"):
        part = part.set_index("step")
        last = part.index.max()
        row = {k: part[k].iloc[0] for k in keys}
        row.update(
            run=run, last_step=int(last), side=side(part.loc[last, "icl"], part.loc[last, "iwl"], plateau)
        )
        for s in steps:
            if s in part.index:
                row[f"icl_{s}"], row[f"iwl_{s}"] = part.loc[s, "icl"], part.loc[s, "iwl"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(list(keys))


def mean_min_max(values: pd.Series) -> str:
    """``mean (min-max)`` over seeds: a range, not an interval (few seeds, two codes' streams)."""
    return f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})"


def icl_iwl(rows: pd.DataFrame, step: int) -> str:
    """``icl / iwl`` at ``step`` of :func:`step_rows` rows, each :func:`mean_min_max` over seeds."""
    return f"{mean_min_max(rows[f'icl_{step}'])} / {mean_min_max(rows[f'iwl_{step}'])}"


def step_table(
    runs: pd.DataFrame,
    keys: Sequence[str],
    names: Mapping[tuple, str],
    steps: Sequence[int],
    K: str = "task.K",
) -> list[str]:
    """Markdown: one row per variant (values of ``keys``, named by ``names``) and K of
    :func:`step_rows` rows: :func:`icl_iwl` at each of ``steps`` and each seed's side at its last
    step, in the rows' order."""
    header = ["variant", "K", *[f"step {s} icl / iwl" for s in steps], f"side at {steps[-1]} (per seed)"]
    table = []
    for (*values, k), part in runs.groupby([*keys, K]):
        table.append(
            [names[tuple(values)], int(k), *(icl_iwl(part, s) for s in steps), ", ".join(part["side"])]
        )
    return markdown_table(header, table)


def reference_accuracy(path: str | Path) -> pd.DataFrame:
    """The published reference table (``published_reference.csv``) as icl / iwl accuracy columns
    indexed by (K, seed, step)."""
    ref = pd.read_csv(path)
    return ref[ref["suite"].isin(["icl", "iwl"])].pivot_table(
        index=["K", "seed", "step"], columns="suite", values="accuracy"
    )


def reference_lines(ours: pd.DataFrame, steps: Sequence[int], reference: Path) -> list[str]:
    """Markdown: the published code's icl / iwl (``reference``) beside ``ours`` (rows of
    :func:`step_rows` for one config) per K and step, mean (min-max) over seeds; a line saying
    the table is missing when ``reference`` does not exist."""
    if not reference.exists():
        return [f"No published reference table ({reference.name}): run analyses/published_reference.py."]
    ref = reference_accuracy(reference)
    have = {(k, st) for k, _, st in ref.index}
    header = ["K", "step", "published code icl / iwl", "`published` icl / iwl", "seeds (ref / ours)"]
    table = []
    for K in sorted(ours["task.K"].unique()):
        mine = ours[ours["task.K"] == K]
        for s in steps:
            if (K, s) not in have or f"icl_{s}" not in mine:
                continue
            r = ref.xs((K, s), level=("K", "step"))
            table.append(
                [
                    int(K),
                    s,
                    f"{mean_min_max(r['icl'])} / {mean_min_max(r['iwl'])}",
                    icl_iwl(mine, s),
                    f"{len(r)} / {len(mine)}",
                ]
            )
    return [
        "### Against the published code",
        "",
        "Mean over seeds with the range (min-max) in brackets; the seeds of the two codes draw",
        "different random streams, so runs are compared as distributions, not seed by seed.",
        "",
        *markdown_table(header, table),
    ]


def arm_lines(
    table: pd.DataFrame, key: str, base: str, other: str, label: str
) -> tuple[list[str], pd.DataFrame]:
    """Markdown: final icl / iwl per value of ``key`` (column ``label``; mean (min-max) over
    seeds) and icl ``other`` minus ``base``, paired by seed with a t interval; and each run's
    last row of :func:`trajectories` (the per-run table). Two arms that differ in one setting
    share each seed's task, init and data, so they are compared seed by seed."""
    last = last_steps(trajectories(table))
    rows = []
    for value, part in last.groupby(key):
        rows.append(
            [value, len(part), int(part["step"].max()), mean_min_max(part["icl"]), mean_min_max(part["iwl"])]
        )
    piv = last.pivot_table(index="seed", columns=key, values="icl")
    iv = paired_t_interval(piv[base], piv[other])
    lines = [
        *markdown_table([label, "seeds", "step", "icl", "iwl"], rows),
        "",
        f"icl, {other} minus {base}, paired by seed: {iv.estimate:+.3f} [{iv.lo:.3f}, {iv.hi:.3f}] "
        f"({iv.kind}).",
    ]
    return lines, last


def runs_with_best_ih(grid: Grid, result: SweepResult, n_seqs: int) -> pd.DataFrame:
    """Each run's final icl / iwl, icl relative to its plateau (``icl_rel``) and ``best_ih``, the
    strongest head's induction strength on ``n_seqs`` icl sequences at its last checkpoint."""
    runs = with_plateau(final_accuracies(result.table), grid, plateau=False)
    dirs = run_dirs(grid, result)
    runs["best_ih"] = [best_ih(dirs[name], n_seqs) for name in runs["run"]]
    return runs


def moving_text(moving: list[str] | None, n_runs: int, listed_in: str) -> str:
    """The plateau check in words, to append to a sub-claim's notes: ``moving`` are the runs
    still moving at the end (None: not known); more than six are referred to ``listed_in``."""
    if moving is None:
        return "; whether the runs are at a plateau is not known here"
    if not moving:
        return "; every run's icl trend over the last 20% of training is < 0.01 (at a plateau)"
    names = ", ".join(moving) if len(moving) <= 6 else f"see {listed_in}"
    return (
        f"; icl still moving (trend >= 0.01 over the last 20% of training) in {len(moving)} of {n_runs} "
        f"runs: {names}"
    )


def boundary_figure(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    positions: Sequence[str],
    boundary: Sequence[float],
    pos: str = "model.positions",
    K: str = "task.K",
) -> go.Figure:
    """Two panels per position type against K (log): final icl (solid) / iwl (dashed) mean with
    the seeds' range (``summary``: :func:`~mmicl_interp.sweep.summary.final_values` rows), and
    the best head's ih (``runs``: :func:`runs_with_best_ih`); the icl = 0.5 level and the
    published code's ``boundary`` Ks as dotted lines."""
    fig = panels(["final icl / iwl vs K", "best induction head (ih) vs K"])
    for p in positions:
        colour = POSITION_COLOURS.get(p, OTHER)
        for suite, dash in (("icl", "solid"), ("iwl", "dash")):
            rows = summary[(summary[pos] == p) & (summary["suite"] == suite)]
            fig.add_trace(
                spread_trace(rows, K, f"{p} {suite}", line=dict(color=colour, dash=dash)), row=1, col=1
            )
        part = runs[runs[pos] == p].groupby(K)["best_ih"].agg(["mean", "min", "max"]).reset_index()
        fig.add_trace(
            spread_trace(part, K, f"{p} ih", line=dict(color=colour), showlegend=False), row=1, col=2
        )
    add_level(fig, row=1, col=1)
    for i, k in enumerate(boundary):  # a scatter, not a shape: shapes on log axes need log10 coordinates
        fig.add_scatter(
            x=[k, k],
            y=[0, 1],
            mode="lines",
            line=dict(color="grey", dash="dot"),
            name="published code's boundary",
            legendgroup="published",
            showlegend=i == 0,
            row=1,
            col=1,
        )
    fig.update_xaxes(type="log", title_text="K")
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)
    return fig


__all__ = [
    "ICL_SIDE",
    "IWL_SIDE",
    "PLATEAU",
    "arm_lines",
    "boundary_figure",
    "icl_iwl",
    "last_steps",
    "mean_min_max",
    "moving_text",
    "reference_accuracy",
    "reference_lines",
    "runs_with_best_ih",
    "side",
    "step_rows",
    "step_table",
    "trajectories",
]
