"""Figures (plotly, returned not shown) and attention views (circuitsvis, offline-ready)."""

from mmicl_interp.plots.attention_view import (
    attention_view,
    circuitsvis_bundle,
    circuitsvis_fragment,
    head_patterns,
    run_attention_view,
    standalone_html,
    token_labels,
    write_standalone_html,
)
from mmicl_interp.plots.figures import (
    ablation_bars,
    circuit_formation,
    export_png,
    head_heatmaps,
    head_name,
    ih_vs_icl,
    patching_heatmap,
    png_export_available,
)

__all__ = [
    "ablation_bars",
    "attention_view",
    "circuit_formation",
    "circuitsvis_bundle",
    "circuitsvis_fragment",
    "export_png",
    "head_heatmaps",
    "head_name",
    "head_patterns",
    "ih_vs_icl",
    "patching_heatmap",
    "png_export_available",
    "run_attention_view",
    "standalone_html",
    "token_labels",
    "write_standalone_html",
]
