"""Analyses over checkpoints: attention measures, accuracies, ablations, patching, correlation.

One module per family; each is a plain function over (model, batch, layout), and
:mod:`~mmicl_interp.analyses.tables` maps them over a run's checkpoints into the tidy
table (run, step, suite, metric, layer, head, value). The names below are imported on
first use (module ``__getattr__``), so importing the package does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "attention_measures": "attention",
    "context_label_accuracy": "attention",
    "pattern_measures": "attention",
    "ih_icl_correlation": "correlation",
    "onset_step": "correlation",
    "phases": "correlation",
    "stage_comparison": "stages",
    "circuit_scores": "tables",
    "read_table": "tables",
    "write_table": "tables",
}

if TYPE_CHECKING:
    from mmicl_interp.analyses.attention import attention_measures, context_label_accuracy, pattern_measures
    from mmicl_interp.analyses.correlation import ih_icl_correlation, onset_step, phases
    from mmicl_interp.analyses.stages import stage_comparison
    from mmicl_interp.analyses.tables import circuit_scores, read_table, write_table


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "attention_measures",
    "circuit_scores",
    "context_label_accuracy",
    "ih_icl_correlation",
    "onset_step",
    "phases",
    "pattern_measures",
    "read_table",
    "stage_comparison",
    "write_table",
]
