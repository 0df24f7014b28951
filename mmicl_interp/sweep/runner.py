"""Run a sweep: train every grid point into ``OUT/<point>`` and collect one tidy table.

Each point is an ordinary run directory trained with :func:`mmicl_interp.train.train`
(``resume="auto"``): a complete run is skipped (checked here, without starting a worker), an
unfinished one continues from its last checkpoint, a new one starts. The points that need
training go to an :class:`~mmicl_interp.sweep.executors.Executor`. Afterwards the metrics
of every run become one tidy DataFrame, written to ``OUT/sweep.parquet``::

    run, step, suite, metric, layer, ..., value, <one column per swept key, e.g. task.K>

(the shared columns of :mod:`~mmicl_interp.analyses.tidy`, layer/head/... NA) with
``metric`` in ``accuracy, loss``; rows in grid order, then step, suite, metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmicl_interp import checkpoints as ck
from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.config import ConfigError, RunConfig
from mmicl_interp.io import CorruptFileError, FolderBusy, Interrupted, atomic_write, folder_lock, read_json
from mmicl_interp.progress import progress_bar
from mmicl_interp.sweep.executors import Executor, LocalExecutor
from mmicl_interp.sweep.grid import Grid, Point, load_grid

TABLE = "sweep.parquet"
METRICS: tuple[str, ...] = ("accuracy", "loss")


@dataclass
class PointResult:
    """What training one point did."""

    name: str
    run_dir: Path
    already_complete: bool
    steps_trained: int
    wall_time_s: float


@dataclass
class SweepResult:
    """A finished sweep: its folder, its tidy table and each point's result (grid order)."""

    out: Path
    table: pd.DataFrame
    results: list[PointResult]

    @property
    def n_trained(self) -> int:
        return sum(not r.already_complete for r in self.results)


@dataclass
class _Job:
    name: str
    config: RunConfig
    run_dir: Path


@dataclass
class _Failure:
    """A ConfigError / CorruptFileError from a worker (they do not pickle as exceptions)."""

    kind: str
    field: str
    message: str

    def reraise(self) -> None:
        if self.kind == "corrupt":
            err = CorruptFileError(self.field)
            err.args = (self.message,)
            raise err
        raise ConfigError(self.field, self.message)


def _train_point(job: _Job) -> PointResult | _Failure:
    """Train one point (runs in a worker process; top level so it pickles)."""
    from mmicl_interp.train.trainer import train

    try:
        result = train(job.config, job.run_dir, resume="auto", progress=False)
    except ConfigError as err:
        return _Failure("config", err.field, err.message)
    except CorruptFileError as err:
        return _Failure("corrupt", str(err.path), str(err))
    return PointResult(
        job.name, job.run_dir, result.already_complete, result.steps_trained, result.wall_time_s
    )


def _is_complete(run_dir: Path) -> bool:
    manifest = run_dir / ck.MANIFEST
    if not manifest.is_file():
        return False
    try:
        return read_json(manifest).get("status") == "complete"
    except (CorruptFileError, ValueError, OSError):
        return False


def run_sweep(
    grid: Grid | str | Path,
    out: str | Path | None = None,
    *,
    executor: Executor | None = None,
    progress: bool = True,
) -> SweepResult:
    """Train every point of ``grid`` into ``out/<point>``; write and return the sweep table.

    ``out`` defaults to ``checkpoints/<grid name>``; ``executor`` to a
    :class:`LocalExecutor` with one worker per core. Every point's config is validated
    before anything trains. Ctrl-C raises :class:`~mmicl_interp.io.Interrupted` saying how
    many runs are complete (they are kept; rerunning the same sweep resumes the rest).
    """
    if not isinstance(grid, Grid):
        grid = load_grid(grid)
    out = Path(out) if out is not None else Path("checkpoints") / grid.name
    points = grid.points()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, wait=False):  # two sweeps into one folder would train one run twice
            results = train_runs(
                [(p.name, p.config, out / p.name) for p in points],
                executor=executor,
                progress=progress,
                label=grid.name,
                where=out,
            )
            table = sweep_table(points, out)
            atomic_write(out / TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    except FolderBusy:
        raise ConfigError(
            "--out",
            f"another sweep is training into {out}; wait for it to finish (or stop it), then rerun "
            "this command to resume",
        ) from None
    return SweepResult(out, table, results)


def train_runs(
    runs: Sequence[tuple[str, RunConfig, str | Path]],
    *,
    executor: Executor | None = None,
    progress: bool = True,
    label: str = "runs",
    where: str | Path | None = None,
) -> list[PointResult]:
    """Train each ``(name, config, run_dir)`` (``resume="auto"``) on ``executor``; results in order.

    The runs must not depend on each other (train a stage-1 run before the stage-2 runs that
    load it: two calls). A complete run is skipped here, without starting a worker. Ctrl-C
    raises :class:`~mmicl_interp.io.Interrupted` saying how many are complete (kept; the same
    call resumes the rest); a worker's ConfigError is re-raised here.
    """
    jobs = [_Job(name, config, Path(run_dir)) for name, config, run_dir in runs]
    results: list[PointResult | None] = [None] * len(jobs)
    todo: list[int] = []
    for i, job in enumerate(jobs):
        if _is_complete(job.run_dir):  # cheap in this process: the trainer checks the config and skips
            done = _train_point(job)
            if isinstance(done, _Failure):
                done.reraise()
            results[i] = done
        else:
            todo.append(i)
    if where is not None:
        Path(where).mkdir(parents=True, exist_ok=True)
    bar = progress_bar(len(jobs), label, progress, initial=len(jobs) - len(todo), unit="run")
    try:
        if todo:
            executor = executor or LocalExecutor()
            finished = executor.map_unordered(_train_point, [jobs[i] for i in todo])
            with closing(finished):  # a failure stops the pool now, cancelling what has not started
                for k, result in finished:
                    if isinstance(result, _Failure):
                        result.reraise()
                    results[todo[k]] = result
                    bar.set_postfix_str(result.name)
                    bar.update(1)
    except KeyboardInterrupt:
        kept = sum(_is_complete(job.run_dir) for job in jobs)
        place = f" in {where}" if where is not None else ""
        raise Interrupted(
            f"{'sweep ' if where is not None else ''}{label}: {kept} of {len(jobs)} runs are complete and "
            f"kept{place}; rerun the same command to resume (unfinished runs continue from their last "
            "checkpoint)"
        ) from None
    finally:
        bar.close()
    return [r for r in results if r is not None]


def sweep_table(points: list[Point], out: str | Path) -> pd.DataFrame:
    """The tidy table of the runs in ``out/<point>`` (whatever metrics they hold so far)."""
    out = Path(out)
    keys = list(points[0].values) if points else []
    records: list[dict] = []
    for order, point in enumerate(points):
        for row in ck.read_metrics(out / point.name):
            for metric in METRICS:
                if metric in row and row[metric] is not None:
                    records.append(
                        {
                            "_order": order,
                            "run": point.name,
                            "step": row["step"],
                            "suite": row["suite"],
                            "metric": metric,
                            "value": row[metric],
                        }
                    )
    df = tidy_table(records, {"_order": "int64"})
    df = df.sort_values(["_order", "step", "suite", "metric"], kind="stable", ignore_index=True)
    by_name = {p.name: p for p in points}
    for key in keys:
        values = [p.values[key] for p in points]
        dtype = _column_dtype(values)
        convert = str if dtype == "string" else (lambda v: v)
        mapping = {name: convert(p.values[key]) for name, p in by_name.items()}
        df[key] = pd.Series([mapping[r] for r in df["run"]], dtype=dtype, index=df.index)
    return df.drop(columns="_order")


def _column_dtype(values: list) -> str:
    """One dtype for a swept key's column: bool, int64, float64, else string."""
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if any(isinstance(v, bool) for v in values):
        return "string"
    if all(isinstance(v, int) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) for v in values):
        return "float64"
    return "string"
