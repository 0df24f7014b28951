"""mmicl-interp: mechanistic study of (multimodal) in-context learning in small transformers.

Packages by concern: ``data`` (tasks, layouts), ``model`` (the hooked decoder), ``train``
(training, eval, schedules), ``checkpoints`` (the run directory), ``runs`` (loading runs).
"""

__version__ = "0.1.0"

from mmicl_interp.config import ConfigError, RunConfig, load_config  # noqa: E402
from mmicl_interp.runs import Run, load_run  # noqa: E402

__all__ = ["ConfigError", "Run", "RunConfig", "__version__", "load_config", "load_run"]
