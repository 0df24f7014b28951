"""Run a sweep: train every grid point into ``OUT/<point>`` and collect one tidy table.

Each point is an ordinary run directory trained with :func:`mmicl_interp.train.train`
(``resume="auto"``): a complete run is skipped (checked here, without starting a worker), an
unfinished one continues from its last checkpoint, a new one starts. The points that need
training go to an :class:`~mmicl_interp.sweep.executors.Executor`.

Stacking (``stack``, ``mmicl sweep --stack auto|on|off``): points whose models have the same
shapes and whose training differs only in seeds and sampling (task.K, B, p_B, eps, alpha, ...;
the rule is :func:`~mmicl_interp.train.stacked.stack_key`) train as one stacked model in one
worker (:func:`~mmicl_interp.train.stacked.train_group`), each still written as its own run
folder with the files a separate run writes, and resumed from its own checkpoints. Stacked
weights equal separate runs' up to float rounding (batched matmuls), not bit for bit. ``auto``
(the default) stacks with the local executor, ``on`` with any executor, ``off`` never.
Afterwards the metrics
of every run become one tidy DataFrame, written to ``OUT/sweep.parquet``::

    run, step, suite, metric, layer, ..., value, <one column per swept key, e.g. task.K>

(the shared columns of :mod:`~mmicl_interp.analyses.tidy`, layer/head/... NA) with
``metric`` in ``accuracy, loss``; rows in grid order, then step, suite, metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
STACK_MODES: tuple[str, ...] = ("auto", "on", "off")
"""Values of ``stack`` / ``--stack``: stack with the local executor only, always, never."""


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


@dataclass
class _GroupJob:
    """Points trained as one stack (:func:`~mmicl_interp.train.stacked.train_group`)."""

    jobs: list[_Job]


def _train_job(job: _Job | _GroupJob) -> list[PointResult] | _Failure:
    """Train one point or one stack of points (runs in a worker; top level so it pickles)."""
    if isinstance(job, _Job):
        done = _train_point(job)
        return done if isinstance(done, _Failure) else [done]
    from mmicl_interp.train.stacked import train_group

    try:
        results = train_group([j.config for j in job.jobs], [j.run_dir for j in job.jobs])
    except ConfigError as err:
        return _Failure("config", err.field, err.message)
    except CorruptFileError as err:
        return _Failure("corrupt", str(err.path), str(err))
    return [
        PointResult(j.name, j.run_dir, r.already_complete, r.steps_trained, r.wall_time_s)
        for j, r in zip(job.jobs, results, strict=True)
    ]


def check_stack_mode(stack: str) -> str:
    """``stack`` if it is one of :data:`STACK_MODES`, else a ConfigError naming ``--stack``."""
    if stack not in STACK_MODES:
        raise ConfigError("--stack", f"must be one of {', '.join(STACK_MODES)}; got {stack!r}")
    return stack


def stack_groups(configs: Sequence[RunConfig], parallel: int = 1) -> list[list[int]]:
    """Indices of ``configs`` grouped into stacks (equal
    :func:`~mmicl_interp.train.stacked.stack_key`), in order of each stack's first config; a
    config that never stacks is a stack of its own. While there are fewer stacks than
    ``parallel`` workers, the largest stack that trains on the CPU is split in two halves (in
    order), so every worker has one to train (CPU workers run side by side; a GPU stack stays
    whole: the workers share the GPU, and a bigger stack uses it better). Depends on the
    configs and the machine alone: a rerun of a sweep forms the same stacks."""
    from mmicl_interp.device import resolve_device
    from mmicl_interp.train.stacked import stack_key

    keyed: dict[object, list[int]] = {}
    for i, config in enumerate(configs):
        key = stack_key(config)
        keyed.setdefault(("alone", i) if key is None else key, []).append(i)
    groups = list(keyed.values())
    on_cpu = {g[0]: resolve_device(configs[g[0]].train.device, "train.device").type == "cpu" for g in groups}
    while len(groups) < parallel:
        sizes = [len(g) if on_cpu[g[0]] else 0 for g in groups]
        largest = sizes.index(max(sizes))  # the first of the largest
        group = groups[largest]
        if sizes[largest] < 2:
            break
        on_cpu[group[(len(group) + 1) // 2]] = True
        half = (len(group) + 1) // 2
        groups[largest : largest + 1] = [group[:half], group[half:]]
    return sorted(groups, key=lambda g: g[0])


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
    stack: str = "auto",
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train every point of ``grid`` into ``out/<point>``; write and return the sweep table.

    ``out`` defaults to ``checkpoints/<grid name>``; ``executor`` to a
    :class:`LocalExecutor` with one worker per core. ``stack`` (auto, on, off) says whether
    points of one model shape train as one stacked model (module docstring); ``log`` gets one
    line per stack. Every point's config is validated before anything trains. Ctrl-C raises
    :class:`~mmicl_interp.io.Interrupted` saying how many runs are complete (they are kept;
    rerunning the same sweep resumes the rest).
    """
    check_stack_mode(stack)
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
                stack=stack,
                log=log,
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
    stack: str = "auto",
    log: Callable[[str], None] | None = None,
) -> list[PointResult]:
    """Train each ``(name, config, run_dir)`` (``resume="auto"``) on ``executor``; results in order.

    The runs must not depend on each other (train a stage-1 run before the stage-2 runs that
    load it: two calls). A complete run is skipped here, without starting a worker. The others
    that stack (``stack``: see :func:`run_sweep`) go to a worker as one stack each, and ``log``
    gets one line per stack. Ctrl-C raises :class:`~mmicl_interp.io.Interrupted` saying how many
    are complete (kept; the same call resumes the rest); a worker's ConfigError is re-raised here.
    """
    check_stack_mode(stack)
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
            items, groups = _items(jobs, todo, stack, executor, log)
            finished = executor.map_unordered(_train_job, items)
            with closing(finished):  # a failure stops the pool now, cancelling what has not started
                for k, done in finished:
                    if isinstance(done, _Failure):
                        done.reraise()
                    for index, result in zip(groups[k], done, strict=True):
                        results[index] = result
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


def _items(
    jobs: list[_Job], todo: list[int], stack: str, executor: Executor, log: Callable[[str], None] | None
) -> tuple[list[_Job | _GroupJob], list[list[int]]]:
    """What goes to the executor: each job of ``todo`` alone, or in its stack (the stacks are
    formed over every job, complete or not, so a resumed stack has the points it had); with the
    indices into ``jobs`` of each item's points."""
    local = isinstance(executor, LocalExecutor)
    if not (stack == "on" or (stack == "auto" and local)):
        return [jobs[i] for i in todo], [[i] for i in todo]
    parallel = executor.workers if local else 1
    left = set(todo)
    items: list[_Job | _GroupJob] = []
    groups: list[list[int]] = []
    for group in stack_groups([job.config for job in jobs], parallel):
        members = [i for i in group if i in left]
        if not members:
            continue
        groups.append(members)
        if len(group) == 1:
            items.append(jobs[members[0]])
            continue
        items.append(_GroupJob([jobs[i] for i in members]))
        if log is not None:
            names = ", ".join(jobs[i].name for i in members)
            points = "1 point" if len(members) == 1 else f"{len(members)} points"
            log(f"stacking {points} as one model: {names}")
    return items, groups


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
