"""Summaries of sweep tables, shared by the ``analyses/`` claim scripts.

A sweep table (:func:`~mmicl_interp.sweep.runner.sweep_table`) has one row per run x eval
step x suite x metric, with one column per swept key. The claims read the *final* values:

- :func:`final_values`: the last eval step of each run, then mean / min / max / count over
  the runs that share the other swept values (the seeds), per suite;
- :func:`threshold`: the smallest value of a key (e.g. ``task.K``) whose mean reaches a
  level (e.g. icl accuracy >= 0.5), per value of the other keys;
- :func:`threshold_bootstrap`: that threshold (log-interpolated crossing by default) with a
  seed-bootstrap percentile interval: within each value of the key, the runs (seeds) are
  resampled with replacement, ``n_boot`` times, and the crossing recomputed from the
  resampled means; a resample whose means never reach the level counts as beyond the
  largest value (``+inf``), so an upper bound can read ``> largest``
  (:func:`format_threshold_interval`);
- :func:`seed_crossings`: the crossing of each *seed's own* curve (the runs of one seed across
  the values of the key), with the grid cell ``(k_lo, k_hi]`` it lies in: the unit the
  claims' paired intervals are built on (:mod:`mmicl_interp.sweep.claims`), from a sweep table
  or from a committed per-run CSV alike;
- :func:`markdown_table` / :func:`spread`: the Markdown the scripts commit;
- :func:`run_grids` and :func:`claim_parser`: the command-line shape every script shares
  (``--grid``, ``--out``, ``--runs``, ``--workers``, ``--no-png``);
- :func:`save_figure`: HTML always, PNG when kaleido and a Chromium can run;
  :func:`write_results` saves a script's figure, Markdown and CSV tables together.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mmicl_interp import checkpoints as ck
from mmicl_interp.analyses.tidy import COLUMNS
from mmicl_interp.io import CorruptFileError, atomic_write_text
from mmicl_interp.sweep.claims import Section, SubClaim, command_line, final_rows, rejudge_section
from mmicl_interp.sweep.executors import make_executor
from mmicl_interp.sweep.grid import SEED_KEYS, Grid, load_grid
from mmicl_interp.sweep.runner import SweepResult, run_sweep


def swept_keys(table: pd.DataFrame, exclude: Sequence[str] = SEED_KEYS) -> list[str]:
    """The swept-value columns of a sweep table (every column but run/step/suite/metric/value)."""
    return [c for c in table.columns if c not in COLUMNS and c not in exclude]


def final_values(
    table: pd.DataFrame,
    keys: Sequence[str] | None = None,
    *,
    metric: str = "accuracy",
    suites: Sequence[str] = ("icl", "iwl", "icl_flip"),
) -> pd.DataFrame:
    """Final ``metric`` per (keys..., suite): mean, min, max and count over the repeats (seeds).

    ``keys`` defaults to every swept column except the seeds (:data:`SEED_KEYS`). Rows are sorted by keys.
    """
    keys = swept_keys(table) if keys is None else list(keys)
    missing = [k for k in keys if k not in table.columns]
    if missing:
        raise ValueError(f"keys {missing} are not columns of the sweep table; swept: {swept_keys(table)}")
    last = final_rows(table, metric)
    last = last[last["suite"].isin(list(suites))]
    out = last.groupby([*keys, "suite"], sort=True)["value"].agg(["mean", "min", "max", "count"])
    return out.reset_index()


def threshold(
    summary: pd.DataFrame,
    key: str = "task.K",
    *,
    by: Sequence[str] = (),
    suite: str = "icl",
    level: float = 0.5,
    interpolate: bool = False,
) -> dict[Any, float]:
    """Smallest ``key`` whose mean ``suite`` value reaches ``level``, per value of ``by``.

    Returns ``{by-value (or None when by is empty): threshold}``, NaN where no swept value
    reaches the level. With ``interpolate``, the crossing is placed between that value
    ``k1`` and the swept value before it ``k0`` (mean ``v0 < level <= v1``) on a log scale:
    ``k0 * (k1 / k0) ** ((level - v0) / (v1 - v0))``; the smallest swept value when it
    already reaches the level. ``summary`` is a :func:`final_values` table.
    """
    rows = summary[summary["suite"] == suite]
    parts = rows.groupby(list(by) if len(by) > 1 else by[0], sort=True) if by else [(None, rows)]
    out: dict[Any, float] = {}
    for value, part in parts:
        curve = part.groupby(key)["mean"].mean().sort_index()
        ks = curve.index.to_numpy(float)
        out[value] = float(_crossings(ks, curve.to_numpy(float)[None], level, interpolate, key)[0])
    return out


def _crossings(ks: np.ndarray, means: np.ndarray, level: float, interpolate: bool, key: str) -> np.ndarray:
    """The :func:`threshold` rule on each row of ``means`` [rows, len(ks)] (ks sorted); NaN if never."""
    hit = means >= level
    reached = hit.any(axis=1)
    i = np.argmax(hit, axis=1)
    rows = np.arange(len(means))
    out = np.where(reached, ks[i], np.nan)
    inner = reached & (i > 0)
    if interpolate and inner.any():
        k0 = ks[i[inner] - 1]
        if (k0 <= 0).any():
            raise ValueError(f"interpolate=True works on a log scale: {key} must be > 0, got {k0.min():g}")
        k1 = ks[i[inner]]
        v0, v1 = means[rows[inner], i[inner] - 1], means[rows[inner], i[inner]]
        out[inner] = k0 * (k1 / k0) ** ((level - v0) / (v1 - v0))
    return out


def whole_numbers(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` with each of ``keys`` that holds only whole numbers back as integers (a concat of
    sweeps with different axes turns them to floats: ``K = 128.0``)."""
    out = frame.copy()
    for key in keys:
        if key in out and pd.api.types.is_float_dtype(out[key]) and out[key].notna().all():
            if (out[key] == out[key].round()).all():
                out[key] = out[key].astype(int)
    return out


def seed_key(frame: pd.DataFrame) -> str:
    """The seed column of a sweep table or per-run frame (the first of :data:`SEED_KEYS` present)."""
    for key in SEED_KEYS:
        if key in frame.columns:
            return key
    raise ValueError(f"no seed column ({', '.join(SEED_KEYS)}) in {list(frame.columns)}")


def _cells(ks: np.ndarray, means: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The grid cell ``(lo, hi]`` of each row's crossing (``ks`` sorted): ``(k_{i-1}, k_i]`` for the
    first ``k_i`` reaching ``level``; ``(0, k_0]`` when the first value already reaches it (no
    lower grid point); ``(k_max, inf)`` when none does."""
    hit = means >= level
    reached = hit.any(axis=1)
    i = np.argmax(hit, axis=1)
    hi = np.where(reached, ks[i], np.inf)
    lo = np.where(reached, np.where(i > 0, ks[np.maximum(i - 1, 0)], 0.0), ks[-1])
    return lo, hi


def seed_crossings(
    frame: pd.DataFrame,
    key: str = "task.K",
    *,
    by: Sequence[str] = (),
    value: str | None = None,
    seed: str | None = None,
    level: float = 0.5,
    interpolate: bool = True,
    suite: str = "icl",
    metric: str = "accuracy",
) -> pd.DataFrame:
    """The crossing of ``level`` by each seed's own curve, per value of ``by``.

    ``frame``: a sweep table (its final ``metric`` on ``suite`` is used, as
    :func:`final_rows`) or a per-run frame with a ``value`` column (one row per run, e.g. a
    committed ``*_runs.csv``). Per (``by``..., seed): the runs of that seed across the values of
    ``key`` form one curve, and its crossing is :func:`threshold`'s rule on it (log-interpolated
    by default; NaN when the curve never reaches ``level``). Columns: the ``by`` keys, ``seed``,
    ``crossing``, ``cell_lo``, ``cell_hi`` (the grid cell ``(cell_lo, cell_hi]`` the crossing
    lies in, :func:`_cells`; an interpolated crossing is known only to lie there), ``n_points``.
    """
    seed = seed_key(frame) if seed is None else seed
    if value is None:
        last = final_rows(frame, metric)
        frame, value = last[last["suite"] == suite], "value"
    missing = [k for k in (key, seed, value, *by) if k not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the frame: {list(frame.columns)}")
    rows = []
    for group, part in frame.groupby([*by, seed], sort=True):
        curve = part.groupby(key)[value].mean().sort_index()
        ks, means = curve.index.to_numpy(float), curve.to_numpy(float)[None]
        point = float(_crossings(ks, means, level, interpolate, key)[0])
        lo, hi = _cells(ks, means, level)
        values = group if isinstance(group, tuple) else (group,)
        rows.append(
            dict(zip([*by, "seed"], values, strict=True))
            | dict(crossing=point, cell_lo=float(lo[0]), cell_hi=float(hi[0]), n_points=len(ks))
        )
    return pd.DataFrame(rows, columns=[*by, "seed", "crossing", "cell_lo", "cell_hi", "n_points"])


def threshold_bootstrap(
    table: pd.DataFrame,
    key: str = "task.K",
    *,
    by: Sequence[str] = (),
    suite: str = "icl",
    level: float = 0.5,
    metric: str = "accuracy",
    interpolate: bool = True,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`threshold` with a seed-bootstrap percentile interval, from a sweep table.

    Per value of ``by``: each run's final ``metric`` on ``suite``; the runs that share a
    value of ``key`` are its repeats (seeds; every other swept key that is not in ``by`` is
    pooled with them). Each resample draws, within every value of ``key``, as many runs as
    it has, with replacement (numpy ``default_rng(seed)``), averages them and recomputes the
    crossing (log-interpolated by default, as :func:`threshold`). Columns: the ``by`` keys,
    ``threshold`` (from all runs; NaN when never reached), ``lo``, ``hi`` (the ``(1 -
    ci)/2`` and ``(1 + ci)/2`` quantiles; resamples that never reach the level count as
    ``+inf``), ``reached`` (fraction of resamples that reach it), ``min_seeds`` (fewest runs
    behind one value of ``key``). Equal seeds give ``lo = hi = threshold``.
    """
    from mmicl_interp.analyses.stats import percentile_interval

    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    missing = [k for k in (key, *by) if k not in table.columns]
    if missing:
        raise ValueError(f"keys {missing} are not columns of the sweep table; swept: {swept_keys(table)}")
    last = final_rows(table, metric)
    last = last[last["suite"] == suite]
    if last.empty:
        raise ValueError(f"the sweep table has no final {metric!r} rows on suite {suite!r}")
    rng = np.random.default_rng(seed)
    parts = last.groupby(list(by), sort=True) if by else [((), last)]
    rows = []
    for value, part in parts:
        groups = [g["value"].to_numpy(float) for _, g in part.groupby(key, sort=True)]
        ks = np.array(sorted(part[key].unique()), dtype=float)
        point = _crossings(ks, np.array([[g.mean() for g in groups]]), level, interpolate, key)[0]
        means = np.stack([g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(axis=1) for g in groups], 1)
        boot = _crossings(ks, means, level, interpolate, key)
        lo, hi = percentile_interval(np.where(np.isnan(boot), np.inf, boot), ci)
        values = value if isinstance(value, tuple) else (value,)
        rows.append(
            dict(zip(by, values, strict=True))
            | dict(
                threshold=float(point),
                lo=lo,
                hi=hi,
                reached=float(np.isfinite(boot).mean()),
                min_seeds=min(len(g) for g in groups),
            )
        )
    return pd.DataFrame(rows, columns=[*by, "threshold", "lo", "hi", "reached", "min_seeds"])


def format_threshold_interval(row: pd.Series | dict, largest: float) -> str:
    """``threshold [lo, hi]`` of a :func:`threshold_bootstrap` row, each as :func:`format_threshold`
    (``> largest`` when not reached, e.g. ``"> 2048 [1024, > 2048]"``)."""

    def cell(v: float) -> str:
        return format_threshold(math.nan if math.isinf(v) else v, largest)

    return f"{cell(row['threshold'])} [{cell(row['lo'])}, {cell(row['hi'])}]"


def format_threshold(value: float, largest: float) -> str:
    """A threshold for a table: the value (whole above 100, else 3 significant digits), or
    ``> largest`` when none was reached."""
    if math.isnan(value):
        return f"> {largest:g}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def spread(row: pd.Series | dict, digits: int = 3) -> str:
    """``mean [min, max]`` of a :func:`final_values` row (just the mean for one repeat)."""
    mean, lo, hi = row["mean"], row["min"], row["max"]
    if row.get("count", 2) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def wide(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per swept combination, one ``spread`` text column per suite."""
    cells = summary.assign(text=summary.apply(spread, axis=1))
    return cells.pivot_table(index=list(keys), columns="suite", values="text", aggfunc="first").reset_index()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub Markdown table as lines."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def short(key: str) -> str:
    """The field name of a dotted key (``task.K`` -> ``K``)."""
    return key.rsplit(".", 1)[-1]


@dataclass
class GridsResult:
    """Sweeps run by :func:`run_grids`, in the order given, with their total wall time."""

    grids: list[Grid]
    results: list[SweepResult]
    wall_s: float

    @property
    def n_runs(self) -> int:
        return sum(len(r.results) for r in self.results)

    @property
    def n_trained(self) -> int:
        return sum(r.n_trained for r in self.results)

    def timing(self) -> str:
        """``"40 runs (38 trained now, 2 reused), 25.0 min of training as the runs recorded it;
        12.3 min in this invocation"``."""
        reused = self.n_runs - self.n_trained
        return (
            f"{self.n_runs} runs ({self.n_trained} trained now, {reused} reused), "
            f"{self.train_s / 60:.1f} min of training as the runs recorded it; "
            f"{self.wall_s / 60:.1f} min in this invocation"
        )

    @property
    def train_s(self) -> float:
        """Training wall time of every run, as each run recorded it (``manifest.wall_time_s``,
        summed over resumes), whether it trained in this invocation or was reused."""
        total = 0.0
        for result in self.results:
            for point in result.results:
                try:
                    total += float(ck.read_manifest(point.run_dir).get("wall_time_s") or 0.0)
                except (OSError, ValueError, CorruptFileError):
                    continue
        return total

    def compute_s(self, invocation_s: float) -> float:
        """A claim's compute time: every run's recorded training time plus this invocation's
        time outside training (``invocation_s`` minus the sweeps' wall time): the same figure
        whether the runs were trained now or reused."""
        return self.train_s + max(0.0, invocation_s - self.wall_s)

    def steps(self) -> int:
        """Training steps of the first grid's first point (the budget the claim used)."""
        return self.grids[0].points()[0].config.train.steps


def run_grids(
    grids: Sequence[str | Path],
    runs: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    stack: str = "off",
) -> GridsResult:
    """Run each grid with the local executor into ``runs/<grid name>`` (default: checkpoints/).

    ``stack`` defaults to off: a stacked point equals its separate run only to float rounding
    (about 1e-7 per step, :mod:`~mmicl_interp.train.stacked`), which long training can grow, so
    the claims train each point alone and a rerun from a fresh clone reproduces the committed
    runs exactly."""
    loaded = [load_grid(g) for g in grids]
    t0 = time.perf_counter()
    results = []
    for grid in loaded:
        out = None if runs is None else Path(runs) / grid.name
        executor = make_executor("local", workers)
        results.append(run_sweep(grid, out, executor=executor, progress=progress, stack=stack))
    return GridsResult(loaded, results, time.perf_counter() - t0)


def follow_up(table: pd.DataFrame, size: str, steps: int) -> list[str]:
    """A fixed-K grid (no K axis): final icl / iwl and the step icl first reaches 0.5, per size."""
    from mmicl_interp.analyses.correlation import crossing_step as _crossing_step

    summary = wide(final_values(table, [size], suites=("icl", "iwl")), [size]).set_index(size)
    icl = table[(table["suite"] == "icl") & (table["metric"] == "accuracy")]
    reach = {}
    for value, part in icl.groupby(size):
        hits = [_crossing_step(run["step"], run["value"], 0.5) for _, run in part.groupby("run")]
        reach[value] = ", ".join("never" if math.isnan(h) else f"{h:.0f}" for h in hits)
    rows = [[v, summary.loc[v, "icl"], summary.loc[v, "iwl"], reach[v]] for v in summary.index]
    header = [short(size), f"icl after {steps} steps", "iwl", "step icl reaches 0.5 (per seed)"]
    return markdown_table(header, rows)


def claim_parser(
    doc: str, grids: Sequence[str | Path], out: str | Path, from_results: str | None = None
) -> argparse.ArgumentParser:
    """The argument parser the claim scripts share; ``doc``'s first paragraph is its help.

    ``from_results``: the name of the script's per-run CSV in ``--out``; adds ``--from-results
    [CSV]``, which re-judges the script's claims.json section from that CSV alone (no training,
    no run folders)."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0])
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[str(g) for g in grids],
        help="grid TOML files (default: %(default)s)",
    )
    parser.add_argument("--out", default=str(out), help="results folder (default: %(default)s)")
    parser.add_argument("--runs", default=None, help="folder of the sweeps (default: checkpoints/)")
    parser.add_argument("--workers", type=int, default=None, help="parallel runs (default: all cores)")
    parser.add_argument("--no-png", action="store_true", help="skip the PNG copies of the figures")
    if from_results:
        add_from_results(parser, from_results)
    return parser


def add_from_results(
    parser: argparse.ArgumentParser, name: str, section: str = "this claim's section"
) -> None:
    """Add ``--from-results [CSV]`` (default ``--out/name``): re-judge ``section`` of claims.json
    from a committed per-run CSV alone."""
    parser.add_argument(
        "--from-results",
        nargs="?",
        const="",
        default=None,
        metavar="CSV",
        help=f"re-judge {section} of claims.json from the per-run CSV alone (default: --out/{name}); "
        "no training, no run folders, the Markdown and figure are kept",
    )


def rejudge_from_results(
    args: argparse.Namespace,
    name: str,
    key: str,
    title: str,
    script: str,
    judge: Callable[[pd.DataFrame, Path], list[SubClaim]],
    read: Callable[[Path], pd.DataFrame] = pd.read_csv,
) -> Path:
    """A claim script's ``--from-results``: read the per-run CSV (``--from-results`` or
    ``--out/name``), judge it (``judge(runs, csv_path)`` gives the sub-claims) and write section
    ``key`` of ``--out/claims.json`` with the fields the CSV cannot give carried over
    (:func:`~mmicl_interp.sweep.claims.rejudge_section`). Returns the CSV's path."""
    csv = from_results_path(args, name)
    section = Section(key, title, judge(read(csv), csv), command_line(script))
    path = Path(args.out) / "claims.json"
    rejudge_section(path, section, csv.name)
    print(f"re-judged section {key} of {path} from {csv}")
    return csv


def from_results_path(args: argparse.Namespace, name: str) -> Path:
    """The per-run CSV ``--from-results`` names (``--out/name`` when given without a path);
    SystemExit naming it when missing."""
    path = Path(args.from_results) if args.from_results else Path(args.out) / name
    if not path.is_file():
        raise SystemExit(f"--from-results: no per-run table at {path}")
    return path


def spread_trace(rows: pd.DataFrame, x: str, name: str, **scatter: Any) -> go.Scatter:
    """A lines+markers trace of a :func:`final_values` slice: the mean, min/max as error bars."""
    return go.Scatter(
        x=rows[x],
        y=rows["mean"],
        name=name,
        mode="lines+markers",
        error_y=dict(
            type="data",
            symmetric=False,
            array=rows["max"] - rows["mean"],
            arrayminus=rows["mean"] - rows["min"],
        ),
        **scatter,
    )


def save_figure(fig: go.Figure, out: str | Path, stem: str, png: bool = True) -> list[Path]:
    """Write ``out/stem.html`` (plotly.js inlined, works offline) and ``out/stem.png`` when possible.

    The PNG needs kaleido (the ``png`` extra) and a Chromium; when either is missing the
    reason is printed and only the HTML is written.
    """
    from mmicl_interp.plots.figures import export_png, png_export_available

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.html"]
    atomic_write_text(written[0], fig.to_html(include_plotlyjs=True))
    if png:
        if not png_export_available():
            print(f"no PNG for {stem}: kaleido is not installed (pip install '.[png]')")
        else:
            try:
                written.append(export_png(fig, out / f"{stem}.png"))
            except Exception as err:  # kaleido raises several types when no Chromium starts
                print(f"no PNG for {stem}: {type(err).__name__}: {err}")
    return written


def write_results(
    out: str | Path,
    stem: str,
    lines: Sequence[str],
    fig: go.Figure,
    *,
    title: str,
    width: int = 1400,
    height: int = 450,
    png: bool = True,
    csv: dict[str, pd.DataFrame] | None = None,
) -> None:
    """Finish a claim script: lay out and save its figure, write ``out/stem.md`` (and any
    ``csv`` tables, name -> frame), and print the Markdown."""
    out = Path(out)
    fig.update_layout(title=title, template="plotly_white", width=width, height=height)
    save_figure(fig, out, stem, png=png)
    write_tables(out, stem, lines, csv)


def write_tables(
    out: str | Path, stem: str, lines: Sequence[str], csv: dict[str, pd.DataFrame] | None = None
) -> None:
    """Write the ``csv`` tables (name -> frame, 4 decimals) and ``out/stem.md`` atomically, then
    print the Markdown: a killed script leaves each file whole, old or new."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (csv or {}).items():
        atomic_write_text(out / name, frame.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


__all__ = [
    "SEED_KEYS",
    "GridsResult",
    "claim_parser",
    "final_rows",
    "final_values",
    "follow_up",
    "format_threshold",
    "format_threshold_interval",
    "from_results_path",
    "markdown_table",
    "run_grids",
    "save_figure",
    "seed_crossings",
    "seed_key",
    "short",
    "spread",
    "spread_trace",
    "swept_keys",
    "threshold",
    "threshold_bootstrap",
    "whole_numbers",
    "wide",
    "write_results",
    "write_tables",
]
