"""One ``main`` for the claim scripts in ``analyses/``: arguments, ``--from-results``, the sweeps,
the outputs and the claims.json section.

A claim script declares a :class:`ClaimScript` (its grids, its section, a ``report`` step that
turns the finished sweeps into an :class:`Outcome`, and a ``judge`` that re-judges the per-run
CSV) and calls :meth:`ClaimScript.main`. The steps every script shares live here once:

1. parse ``--grid --out --runs --workers --no-png --from-results`` (plus the script's own options);
2. ``--from-results [CSV]``: re-judge the section from the committed per-run CSV, no training;
3. else run the grids (complete runs reused), build the report, write ``<stem>.md``, the figure
   and the CSVs, then the section with its compute time (every run's recorded training time
   plus this invocation's time outside training, :meth:`GridsResult.compute_s`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.sweep.claims import (
    Section,
    SubClaim,
    command_line,
    judge_difference,
    n_seeds,
    n_unique_configs,
    write_section,
)
from mmicl_interp.sweep.summary import (
    GridsResult,
    claim_parser,
    rejudge_from_results,
    run_grids,
    write_results,
    write_tables,
)

RESULTS = Path(__file__).resolve().parents[2] / "analyses" / "results"
"""The committed results folder (``--out``'s default)."""


@dataclass
class Outcome:
    """What a claim script's report step gives :meth:`ClaimScript.main` to write.

    ``subclaims(wall)`` judges the section once the compute time ``wall`` is known; ``csv`` maps
    file names in ``--out`` to per-run tables; ``wall_s`` (when set) replaces the compute time;
    ``section`` may rewrite the section before it is written (e.g. keep other grids' sub-claims)."""

    lines: list[str]
    fig: go.Figure | None
    title: str
    subclaims: Callable[[float], list[SubClaim]]
    csv: dict[str, pd.DataFrame] = field(default_factory=dict)
    width: int = 1400
    height: int = 450
    stem: str | None = None
    wall_s: float | None = None
    section: Callable[[Section], Section] | None = None


@dataclass
class ClaimScript:
    """A claim script, declared: see the module docstring.

    ``report(done, args, command)`` builds the :class:`Outcome` from the finished sweeps;
    ``judge(runs, csv)`` gives the sub-claims of the per-run table read from ``csv`` (for
    ``--from-results``; ``rejudge(args)`` replaces that whole path where a script reads more than
    one CSV); ``options``: the script's own options, ``(flag, add_argument keywords)``;
    ``one_grid`` (what the grid crosses) makes more than one ``--grid`` an error; ``key`` None:
    no claims.json section."""

    name: str
    key: str | None
    title: str
    doc: str
    grids: Sequence[str | Path]
    report: Callable[[GridsResult, argparse.Namespace, str], Outcome]
    judge: Callable[[pd.DataFrame, Path], list[SubClaim]] | None = None
    rejudge: Callable[[argparse.Namespace], None] | None = None
    options: Sequence[tuple[str, dict]] = ()
    read: Callable[[Path], pd.DataFrame] = pd.read_csv
    one_grid: str | None = None
    out: Path = RESULTS

    @property
    def runs_csv(self) -> str:
        """The per-run CSV's name in ``--out``: ``<name>_runs.csv``."""
        return f"{self.name}_runs.csv"

    def parser(self) -> argparse.ArgumentParser:
        """The shared options (:func:`~mmicl_interp.sweep.summary.claim_parser`) plus the script's."""
        can_rejudge = self.judge is not None or self.rejudge is not None
        parser = claim_parser(
            self.doc, self.grids, self.out, from_results=self.runs_csv if can_rejudge else None
        )
        for flag, keywords in self.options:
            parser.add_argument(flag, **keywords)
        return parser

    def from_results(self, args: argparse.Namespace) -> None:
        """``--from-results``: the section re-judged from the per-run CSV alone."""
        if self.rejudge is not None:
            self.rejudge(args)
            return
        rejudge_from_results(args, self.runs_csv, self.key, self.title, self.name, self.judge, read=self.read)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Run the script (see the module docstring)."""
        t0 = time.perf_counter()
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = self.parser()
        args = parser.parse_args(argv)
        if getattr(args, "from_results", None) is not None:
            self.from_results(args)
            return
        if self.one_grid and len(args.grid) != 1:
            parser.error(f"--grid: this script reads one grid ({self.one_grid}), got {len(args.grid)}")
        done = run_grids(args.grid, args.runs, args.workers)
        command = command_line(self.name, argv)
        outcome = self.report(done, args, command)
        write_outcome(args.out, outcome.stem or self.name, outcome, png=not args.no_png)
        wall = done.compute_s(time.perf_counter() - t0) if outcome.wall_s is None else outcome.wall_s
        if self.key is None:  # not a claim: no section
            return
        section = Section(self.key, self.title, outcome.subclaims(wall), command, wall)
        if outcome.section is not None:
            section = outcome.section(section)
        write_section(Path(args.out) / "claims.json", section)


def write_outcome(out: str | Path, stem: str, outcome: Outcome, png: bool = True) -> None:
    """Write an outcome's Markdown, figure (if any) and CSVs into ``out``."""
    if outcome.fig is None:
        write_tables(out, stem, outcome.lines, outcome.csv)
        return
    write_results(
        out,
        stem,
        outcome.lines,
        outcome.fig,
        title=outcome.title,
        width=outcome.width,
        height=outcome.height,
        png=png,
        csv=outcome.csv,
    )


def sweep_evidence(done: GridsResult, command: str, index: int = 0) -> dict:
    """The evidence fields of a section judged on one sweep (``done``'s sweep ``index``): its runs,
    unique configs, seeds, the steps of the first grid and the command."""
    result = done.results[index]
    return dict(
        n_runs=len(result.results),
        n_unique_configs=n_unique_configs([r.run_dir for r in result.results]),
        n_seeds=n_seeds(result.table),
        steps=done.steps(),
        command=command,
    )


def by_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """``column`` of ``rows`` indexed by seed (one run per seed), to pair arms seed by seed."""
    return rows.set_index("seed")[column] if len(rows) else pd.Series(dtype=float)


def paired_subclaim(
    sid: str,
    text: str,
    base: pd.Series,
    other: pd.Series,
    label: str,
    min_effect: float,
    common: dict,
    notes: str = "",
) -> SubClaim:
    """``other - base``, one value per seed (Series indexed by seed), judged by the paired t
    interval of the per-seed differences (:func:`~mmicl_interp.sweep.claims.judge_difference`):
    the arms of one seed share its task and data, so they are compared seed by seed."""
    judged = judge_difference(base, other, min_effect=min_effect)
    n = len(base) + len(other)
    seeds = len(set(base.index) & set(other.index))
    return judged.subclaim(sid, text, label, notes, n_runs=n, n_unique_configs=n, n_seeds=seeds, **common)


def not_run(sid: str, text: str, command: str, what: str) -> SubClaim:
    """A "not tested" sub-claim whose arm or sweep ``what`` this command did not run."""
    return SubClaim(sid, text, "not tested", command=command, notes=f"{what} not run by this command")


def moving_line(moving: Sequence[str], n_runs: int, shown: int = 10) -> str:
    """The plateau check in one line: how many of ``n_runs`` are still moving, the first ``shown``."""
    names = f" ({', '.join(moving[:shown])}{', ...' if len(moving) > shown else ''})." if moving else "."
    return (
        "Runs still moving at the end (icl changed by >= 0.01 over the last 20% of training): "
        f"{len(moving)} of {n_runs}{names}"
    )


def plateau_note(compared: Sequence[str] | None, others: int = 0) -> str:
    """The plateau check of a comparison in words: ``compared`` are its runs still moving at the
    end (None: not known), ``others`` the runs still moving outside it. A moving compared run caps
    the verdict at weak."""
    if compared is None:
        return "whether the runs are at a plateau is not known here: verdict capped at weak"
    elsewhere = f"; {others} run(s) of other position types still moving" if others else ""
    if compared:
        return (
            f"{len(compared)} of the compared runs still moving at the end (icl changed >= 0.01 over the "
            f"last 20%): verdict capped at weak{elsewhere}"
        )
    return f"every compared run at a plateau (icl changed < 0.01 over the last 20%){elsewhere}"


def mean_range(values: pd.Series, digits: int = 3) -> str:
    """``mean [min, max]`` of ``values`` (a range, not an interval); ``-`` when empty."""
    if len(values) == 0:
        return "-"
    return f"{values.mean():.{digits}f} [{values.min():.{digits}f}, {values.max():.{digits}f}]"


__all__ = [
    "RESULTS",
    "ClaimScript",
    "Outcome",
    "by_seed",
    "mean_range",
    "moving_line",
    "not_run",
    "paired_subclaim",
    "plateau_note",
    "sweep_evidence",
    "write_outcome",
]
