"""Executors: where a sweep's points run.

An :class:`Executor` has one method, :meth:`Executor.map_unordered`, which calls a picklable
top-level function on each item and yields ``(index, result)`` pairs as they finish, so a
Ray (or Slurm) executor only has to implement that. :class:`LocalExecutor` runs the items
in separate processes on this machine (``concurrent.futures`` with the ``spawn`` context)
and gives each worker ``cores // workers`` torch threads before it starts, so the
processes never oversubscribe the cores (which makes torch about ten times slower).
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

EXECUTORS: tuple[str, ...] = ("local", "ray")


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


def _ray_call(fn: Callable[[T], R], item: T, threads: int) -> R:
    """Runs inside a Ray worker: set torch threads, then call ``fn``."""
    _init_worker(threads)
    return fn(item)


class RayExecutor(Executor):
    """Points as Ray tasks, on a cluster (``address="auto"``) or a local Ray started here.

    Each task asks Ray for ``cpus_per_task`` CPUs and uses that many torch threads, so Ray's
    scheduler keeps a node from being oversubscribed. Needs the optional extra:
    ``pip install '.[ray]'``.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_task: int = 1):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor", "ray is not installed; pip install '.[ray]'") from None
        if isinstance(cpus_per_task, bool) or not isinstance(cpus_per_task, int) or cpus_per_task < 1:
            raise ConfigError("--workers", f"must be an integer >= 1, got {cpus_per_task!r}")
        self.address, self.num_cpus, self.cpus_per_task = address, num_cpus, cpus_per_task

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, cpus_per_task={self.cpus_per_task})"

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        import ray

        items = list(items)
        if not items:
            return
        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        task = ray.remote(num_cpus=self.cpus_per_task)(_ray_call)
        pending = {task.remote(fn, item, self.cpus_per_task): i for i, item in enumerate(items)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                yield index, ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref)


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None) -> Executor:
    """The executor called ``kind``: ``local`` processes, or ``ray`` (``address="auto"`` joins a
    running cluster; none starts a local Ray with ``workers`` CPUs). An ``address`` with the
    local executor is refused rather than ignored."""
    if kind == "local":
        if address is not None:
            raise ConfigError(
                "--address", f"applies only to --executor ray (a Ray cluster); got {address!r} with local"
            )
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=workers)
    raise ConfigError("--executor", f"must be one of {', '.join(EXECUTORS)}; got {kind!r}")


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "available_cores",
    "make_executor",
    "threads_per_worker",
]
