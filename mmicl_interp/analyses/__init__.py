"""Analyses over checkpoints: attention measures, accuracies, ablations, patching, correlation.

One module per family; each is a plain function over ``(model, prompts)`` (an
:class:`~mmicl_interp.prompts.ICLPrompts`; the older ``(model, batch, layout)`` forms still
work), and :mod:`~mmicl_interp.analyses.tables` maps them over a run's checkpoints. Every
table comes in one long format (:mod:`~mmicl_interp.analyses.tidy`: run, step, suite,
metric, layer, head, src_layer, src_head, position, value, plus an analysis's own columns).
Every public analysis is reachable from here; the names are imported on first use (module ``__getattr__``), so
importing the package does not load torch.
"""

from __future__ import annotations

from mmicl_interp._lazy import lazy_names

_FAMILIES: dict[str, tuple[str, ...]] = {
    "mmicl_interp.prompts": ("ICLPrompts", "TokenReadout", "as_prompts", "as_prompt_suites"),
    "mmicl_interp.analyses.attention": ("attention_measures", "context_label_accuracy", "pattern_measures"),
    "mmicl_interp.analyses.ablation": (
        "ablate_each_head",
        "ablate_heads",
        "ablated_logits",
        "ablation_over_checkpoints",
        "heads_above",
        "parse_heads",
    ),
    "mmicl_interp.analyses.patching": (
        "attribution_patch",
        "corrupt_batch",
        "patch_head_outputs",
        "patch_head_outputs_by_pos",
        "patch_resid_pre",
        "path_patch",
        "patching_setup",
        "patching_table",
        "prepare_patching",
    ),
    "mmicl_interp.analyses.weights": (
        "all_composition_scores",
        "composition_over_checkpoints",
        "composition_scores",
        "ov_circuit",
        "qk_circuit",
    ),
    "mmicl_interp.analyses.correlation": (
        "best_head",
        "format_correlation",
        "ih_icl_correlation",
        "lead_lag",
        "onset",
        "onset_step",
        "phases",
    ),
    "mmicl_interp.analyses.stats": ("config_hash", "dedupe_runs", "dedupe_table", "icl_relative"),
    "mmicl_interp.analyses.stages": ("stage_comparison", "stage_wide"),
    "mmicl_interp.analyses.tidy": ("tidy_table", "head_rows"),
    "mmicl_interp.analyses.tables": (
        "analyze_run",
        "circuit_scores",
        "circuit_scores_runs",
        "read_table",
        "write_table",
    ),
}
__getattr__, __dir__, __all__ = lazy_names(__name__, _FAMILIES, globals())
