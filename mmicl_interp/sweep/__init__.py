"""Sweeps: a TOML grid of config overrides, crossed, each point trained as its own run.

``run_sweep("grid.toml", "checkpoints/my-sweep")`` trains every point (skipping complete
runs, resuming unfinished ones) through an :class:`Executor` and returns the tidy table of
all their metrics, also written to ``OUT/sweep.parquet``. See :mod:`.grid` for the file
format, :mod:`.executors` for where points run and :mod:`.runner` for the table.
"""

from mmicl_interp.sweep.executors import EXECUTORS, Executor, LocalExecutor, make_executor
from mmicl_interp.sweep.grid import Grid, Point, load_grid
from mmicl_interp.sweep.runner import PointResult, SweepResult, run_sweep, sweep_table, train_runs

__all__ = [
    "EXECUTORS",
    "Executor",
    "Grid",
    "LocalExecutor",
    "Point",
    "PointResult",
    "SweepResult",
    "load_grid",
    "make_executor",
    "run_sweep",
    "sweep_table",
    "train_runs",
]
