"""Claim 4's report (``analyses/multimodal_asymmetry.py``): the Markdown tables and the figure
of the per-run table (:mod:`mmicl_interp.sweep.multimodal`): multimodal icl per arm vs K2, the
decoder-size sweep and the M2-encoder sweep, each as mean [min, max] over seeds."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from mmicl_interp.sweep.claim_script import mean_range
from mmicl_interp.sweep.figures import add_level, panels, range_trace
from mmicl_interp.sweep.multimodal import ARMS, arm_summary, crossing, split_tables

COLOURS = dict(zip(ARMS, ("#1f77b4", "#d62728", "#7f7f7f", "#17becf", "#ff7f0e", "#9467bd"), strict=True))
"""One colour per K2 arm."""


def figure(k2: pd.DataFrame, sizes: pd.DataFrame, enc: pd.DataFrame, low_k2: int) -> go.Figure:
    fig = panels(
        (
            "multimodal icl vs K2 (dotted: icl_m2_only)",
            f"stage 2 vs decoder size (K2 = {low_k2})",
            f"stage 2 vs M2 encoder accuracy (K2 = {low_k2})",
        )
    )
    means = (
        k2.groupby(["arm", "K2"], sort=False)[["icl", "icl_m2_only"]].mean().reset_index() if len(k2) else k2
    )
    for key, label in ARMS.items() if len(k2) else ():
        part = means[means["arm"] == label].sort_values("K2")
        for suite, dash in (("icl", "solid"), ("icl_m2_only", "dot")) if len(part) else ():
            line = dict(dash=dash, color=COLOURS[key])
            fig.add_trace(
                go.Scatter(
                    x=part["K2"],
                    y=part[suite],
                    name=label,
                    legendgroup=key,
                    showlegend=suite == "icl",
                    line=line,
                    mode="lines+markers",
                ),
                row=1,
                col=1,
            )
    # one line per decoder family: the shipped width (size lL_hH) and a learned embedding (dE_...)
    families = [(3, enc, "encoder_acc", "encoder", "encoder_steps", "solid")]
    if len(sizes):
        learned = sizes["size"].str.startswith("d")
        families[:0] = [
            (2, sizes[~learned], "n_params", "size", "size", "solid"),
            (2, sizes[learned], "n_params", "size, learned embedding", "size", "dash"),
        ]
    for panel, table, x, name, key, dash in families:
        if table.empty:
            continue
        per = (
            table.groupby(key)[[x, "icl", "icl_m2_only"]].agg(["mean", "min", "max"]).sort_values((x, "mean"))
        )
        for suite, colour in (("icl", "#1f77b4"), ("icl_m2_only", "#2ca02c")):
            trace = range_trace(per, x, suite, name=f"{name}: {suite}", line=dict(color=colour, dash=dash))
            fig.add_trace(trace, row=1, col=panel)
    add_level(fig)
    fig.update_xaxes(title_text="K2", type="log", row=1, col=1)
    fig.update_xaxes(title_text="decoder parameters", type="log", row=1, col=2)
    fig.update_xaxes(title_text="encoder test accuracy (K2-way)", row=1, col=3)
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)
    fig.update_layout(
        title="Multimodal asymmetry: arms, decoder size, encoder strength", template="plotly_white"
    )
    fig.update_layout(width=1500, height=480)
    return fig


def markdown(table: pd.DataFrame, k2s: list[int], head: str, low_k2: int) -> list[str]:
    """The Markdown report of the per-run table: ``head`` (the command and timing), then a table
    per part (K2 arms, decoder size, encoder strength)."""
    k2_table, size_table, enc_table = split_tables(table)
    k2s = sorted(k2s)
    present = set(k2_table.get("arm", []))
    lines = [
        "# Multimodal asymmetry: stage 2, early fusion and their controls",
        "",
        head,
        "",
        "Arms: " + "; ".join(f"**{label}**" for label in ARMS.values() if label in present),
        "",
    ]
    if not k2_table.empty:
        summary = arm_summary(k2_table.sort_values(["K2"], kind="stable"), ["K2", "arm"])
        k2_means = k2_table.groupby(["arm", "K2"])["icl"].mean()
        crossings = ", ".join(
            f"{label} {crossing(k2s, [k2_means.get((label, k), 0.0) for k in k2s])}"
            for label in ARMS.values()
            if label in set(k2_table["arm"])
        )
        lines += [
            "## Multimodal icl vs K2, per arm",
            "",
            summary.to_markdown(index=False, floatfmt=".3f"),
            "",
            f"Smallest K2 where the mean multimodal icl reaches 0.5: {crossings}. `icl_m2_only` (M1 items "
            "carry no class information) shows whether the M2 route itself works; `icl_m1_only` the reverse.",
            "",
        ]
    if not size_table.empty:
        summ = (
            arm_summary(size_table, ["size"])
            .merge(size_table.groupby("size")["n_params"].first().reset_index(), on="size")
            .merge(size_table.groupby("size")["stage1_icl"].agg(mean_range).reset_index(), on="size")
        )
        lines += [
            f"## Decoder size (stage 1 -> stage 2 at K2 = {low_k2})",
            "",
            "Size `lL_hH`: the shipped input width (no embedding; d_model = D + 33 one-hot = 65), L "
            "layers, H heads; `dE_lL_hH`: a learned input embedding of width E (d_model E + 33). "
            "`n_params`: the decoder's parameters (stage 1); `stage1_icl`: that stage-1 run's final "
            "unimodal icl (a decoder that did not learn ICL in stage 1 is left out of 4b and 4h; 4b "
            "compares the `lL_hH` sizes, 4h the `dE_lL_hH` ones).",
            "",
            summ.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    if not enc_table.empty:
        summ = arm_summary(enc_table, ["encoder_steps"]).merge(
            enc_table.groupby("encoder_steps")["encoder_acc"].agg(mean_range).reset_index(),
            on="encoder_steps",
        )
        lines += [
            f"## M2 encoder strength (stage 2 at K2 = {low_k2}, encoder frozen)",
            "",
            f"`encoder_acc`: the pretrained encoder's K2-way test accuracy (chance 1/{low_k2}).",
            "",
            summ.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    return [
        *lines,
        "Per run (`wall_s`: the run's own training wall time): `multimodal_asymmetry_runs.csv`.",
        "",
    ]


__all__ = ["COLOURS", "figure", "markdown"]
