"""mmicl-interp: mechanistic study of (multimodal) in-context learning in small transformers.

Packages by concern: ``data`` (tasks, layouts), ``model`` (the hooked decoder), ``train``
(training, eval, schedules), ``checkpoints`` (the run directory), ``runs`` (loading runs).

The names below are imported on first use (module ``__getattr__``), so ``import
mmicl_interp`` (and the ``mmicl`` command's start) does not pay for torch and pandas.
``__version__`` is read from the installed distribution's metadata, also on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

DIST_NAME = "mmicl-interp"
"""The distribution name ``pip`` knows the package by."""

_LAZY = {
    "ConfigError": "mmicl_interp.config",
    "RunConfig": "mmicl_interp.config",
    "load_config": "mmicl_interp.config",
    "Run": "mmicl_interp.runs",
    "load_run": "mmicl_interp.runs",
}

if TYPE_CHECKING:
    __version__: str
    from mmicl_interp.config import ConfigError, RunConfig, load_config
    from mmicl_interp.runs import Run, load_run


def _version() -> str:
    """The installed distribution's version (``importlib.metadata``), or ``0+unknown`` when the
    package runs from a source tree that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DIST_NAME)
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


__all__ = ["ConfigError", "Run", "RunConfig", "__version__", "load_config", "load_run"]
