"""Local parallel work: :class:`Executor` (the interface) and :class:`LocalExecutor` (separate
processes on this machine).

An :class:`Executor` has one method, :meth:`Executor.map_unordered`, which calls a picklable
top-level function on each item and yields ``(index, result)`` pairs as they finish.
:class:`LocalExecutor` runs the items in separate processes (``concurrent.futures`` with the
``spawn`` context) and gives each worker ``cores // workers`` torch threads before it starts,
so the processes never oversubscribe the cores (which makes torch about ten times slower).

It sits low in the package, beside ``io`` and ``device``, because both the analyses
(:func:`~mmicl_interp.analyses.tables.circuit_scores_runs`) and the sweeps use it; the Ray
executor and the sweep's choice of executor live in :mod:`mmicl_interp.sweep.executors`.
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

from mmicl_interp.config import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads each of ``workers`` processes gets: ``max(1, cores // workers)``."""
    return max(1, (cores or available_cores()) // max(1, workers))


class Executor(ABC):
    """Runs a function over items somewhere; results come back as they finish."""

    @abstractmethod
    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        """Yield ``(index of the item, fn(item))`` in completion order.

        ``fn`` must be a picklable top-level function. An exception raised by ``fn`` is
        re-raised here; items not yet started are then cancelled.
        """


def _init_worker(threads: int) -> None:
    """Runs first in each worker process, before any training."""
    import torch

    torch.set_num_threads(threads)


class LocalExecutor(Executor):
    """Separate processes on this machine, ``workers`` at a time (default: one per core)."""

    def __init__(self, workers: int | None = None):
        if workers is None:
            workers = available_cores()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError("--workers", f"must be an integer >= 1, got {workers!r}")
        self.workers = workers

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.workers})"

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        items = list(items)
        if not items:
            return
        n = min(self.workers, len(items))
        pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads_per_worker(n),),
        )
        try:
            pending: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    yield index, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["Executor", "LocalExecutor", "available_cores", "threads_per_worker"]
