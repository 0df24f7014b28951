"""mmicl-interp: mechanistic study of (multimodal) in-context learning in small transformers.

Packages by concern: ``data`` (tasks, layouts), ``model`` (the hooked decoder), ``train``
(training, eval, schedules), ``checkpoints`` (the run directory), ``runs`` (loading runs).

The names below are imported on first use (module ``__getattr__``), so ``import
mmicl_interp`` (and the ``mmicl`` command's start) does not pay for torch and pandas.
``__version__`` is read from the installed distribution's metadata, also on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmicl_interp._lazy import lazy_names

DIST_NAME = "mmicl-interp"
"""The distribution name ``pip`` knows the package by."""

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


__getattr__, __dir__, _ = lazy_names(
    __name__,
    {
        "mmicl_interp.config": ("ConfigError", "RunConfig", "load_config"),
        "mmicl_interp.runs": ("Run", "load_run"),
    },
    globals(),
    computed={"__version__": _version},
)


__all__ = ["ConfigError", "Run", "RunConfig", "__version__", "load_config", "load_run"]
