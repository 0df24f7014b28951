"""Executors: where a sweep's points run.

The interface (:class:`~mmicl_interp.parallel.Executor`, one method ``map_unordered``) and
the local process pool (:class:`~mmicl_interp.parallel.LocalExecutor`) live in
:mod:`mmicl_interp.parallel`, below the analyses that also use them; here are the Ray
executor (a Ray or Slurm executor only has to implement ``map_unordered``) and
:func:`make_executor`, the sweep's choice by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from mmicl_interp.config import ConfigError
from mmicl_interp.parallel import (
    Executor,
    LocalExecutor,
    _init_worker,
    available_cores,
    threads_per_worker,
)

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS: tuple[str, ...] = ("local", "ray")


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
