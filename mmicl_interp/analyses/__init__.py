"""Analyses over checkpoints: attention measures, accuracies, ablations, patching, correlation.

One module per family; each is a plain function over (model, batch, layout), and
:mod:`~mmicl_interp.analyses.tables` maps them over a run's checkpoints into the tidy
table (run, step, suite, metric, layer, head, value).
"""

from mmicl_interp.analyses.attention import attention_measures, context_label_accuracy, pattern_measures
from mmicl_interp.analyses.correlation import ih_icl_correlation, onset_step, phases
from mmicl_interp.analyses.stages import stage_comparison
from mmicl_interp.analyses.tables import circuit_scores, read_table, write_table

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
