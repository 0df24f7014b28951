"""Claim 4's sub-claims (``analyses/multimodal_asymmetry.py``): the builders behind the
script's verdict rules, with their "not tested" guards, from the per-run table of
:mod:`mmicl_interp.sweep.multimodal` (split by :func:`~mmicl_interp.sweep.multimodal.split_tables`).

Every difference is paired by seed: a seed sets task, model and training seeds together, and its
arms share that task seed and its stage-1 run, so two arms are compared by the paired t interval
of the per-seed differences (:func:`~mmicl_interp.sweep.claim_script.paired_subclaim`).

- 4a and the controls 4d-4g (:func:`k2_subclaims`): multimodal icl at the smallest K2, one arm
  minus another (:class:`K2Claim`). Where the claim is that a low K2 *suffices* (4a, 4g), an arm
  that beats the other but itself stays below icl 0.5 there is "weak" at best, said why. The
  notes give each arm's crossing (smallest K2 whose mean icl reaches 0.5) and the same
  difference on ``icl_m2_only`` (M1 items carry no class information).
- 4b and 4h (:func:`size_subclaim`, :func:`size_families`): stage-2 icl at the sweep's K2, the
  largest decoder (by parameters) minus the smallest, at the shipped width (4b: more layers and
  heads) and at a growing width (4h: a learned input embedding). A decoder whose stage-1 run did
  not learn ICL (mean stage-1 icl < 0.5) has no circuit to hand on and is left out, named; a
  difference that is not monotone in size is "weak" at best.
- 4c (:func:`encoder_subclaim`): stage-2 ``icl_m2_only`` with the strongest pretrained M2 encoder
  minus the weakest (the frozen encoder changes only the M2 route); "not tested" when the
  encoders' accuracies span less than 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from mmicl_interp.sweep.claim_script import by_seed, not_run, paired_subclaim
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.multimodal import ARMS, crossing, varied_width

LEARNED = 0.5
"""The icl level an arm must reach for "a low K2 suffices", and a stage-1 run to have learned ICL."""


class K2Claim(NamedTuple):
    """One sub-claim at the smallest K2: arm ``other`` minus arm ``base`` (keys of
    :data:`~mmicl_interp.sweep.multimodal.ARMS`); ``label`` follows "multimodal icl at K2 = k, ";
    ``suffices``: the claim is that ``other`` itself reaches icl 0.5 there."""

    sid: str
    text: str
    base: str
    other: str
    label: str
    note: str = ""
    suffices: bool = False


def k2_subclaims(
    table: pd.DataFrame,
    k2s: list[int],
    common: dict,
    command: str,
    *,
    claims: Sequence[K2Claim],
    min_effect: float,
) -> list[SubClaim]:
    """The ``claims`` judged on the K2 arms' rows ``table`` at the smallest of ``k2s``, paired by
    seed; "not tested" naming the arm that was not run."""
    k2 = min(k2s)
    at = table[table["K2"] == k2] if len(table) else table

    def arm(name: str, column: str = "icl") -> pd.Series:
        return by_seed(at[at["arm"] == ARMS[name]], column) if len(at) else pd.Series(dtype=float)

    means = table.groupby(["arm", "K2"])["icl"].mean() if len(table) else pd.Series(dtype=float)

    def cross(name: str) -> str:
        part = [means.get((ARMS[name], k), math.nan) for k in sorted(k2s)]
        return crossing(sorted(k2s), [0.0 if math.isnan(v) else v for v in part])

    out = []
    for sid, text, base, other, label, note, suffices in claims:
        a, b = arm(base), arm(other)
        if a.empty or b.empty:
            out.append(not_run(sid, text, command, f"arm {base if a.empty else other}"))
            continue
        crossings = f"icl >= 0.5 from K2 = {cross(other)} ({ARMS[other]}), {cross(base)} ({ARMS[base]})"
        m2 = float((arm(other, "icl_m2_only") - arm(base, "icl_m2_only")).mean())
        short = (
            f"{ARMS[other]} itself stays below icl 0.5 at K2 = {k2} ({b.mean():.3f}): better than "
            f"{ARMS[base]}, but K2 = {k2} does not suffice"
            if suffices and b.mean() < LEARNED
            else ""
        )
        notes = "; ".join(
            p for p in (short, note, crossings, f"the same difference on icl_m2_only: {m2:.3f}") if p
        )
        where = f"multimodal icl at K2 = {k2}, {label}"
        sub = paired_subclaim(sid, text, a, b, where, min_effect, common, notes)
        if short and sub.verdict == "supported":
            sub.verdict = "weak"
        out.append(sub)
    return out


def size_subclaim(
    sizes: pd.DataFrame, common: dict, command: str, sid: str = "4b", *, min_effect: float
) -> SubClaim:
    """4b (and 4h): stage-2 icl at low K2 of the size sweep's rows ``sizes``, largest decoder minus
    smallest among those whose stage 1 learned ICL; "weak" at best if not monotone, "not tested"
    with fewer than two such sizes (the others named with their stage-1 icl)."""
    text = "model scaling consistently helps multimodal ICL"
    if sizes.empty or sizes["size"].nunique() < 2:
        named = sorted(set(sizes["size"])) if len(sizes) else []
        sub = not_run(sid, text, command, "the size sweep (two or more --sizes)")
        if named:
            s1 = sizes.groupby("size")["stage1_icl"].mean()
            sub.notes = "one size only (mean stage-1 icl): " + ", ".join(f"{z} ({s1[z]:.3f})" for z in named)
        return sub
    # a decoder that did not learn ICL in stage 1 has no circuit to hand on: it tests nothing
    s1_icl = sizes.groupby("size")["stage1_icl"].mean()
    dropped = [z for z, v in s1_icl.items() if not v >= LEARNED]
    dropped_text = (
        "left out, stage 1 never learned ICL (mean stage-1 icl < 0.5): "
        + ", ".join(f"{z} ({s1_icl[z]:.3f})" for z in dropped)
        if dropped
        else ""
    )
    sizes = sizes[~sizes["size"].isin(dropped)]
    if sizes["size"].nunique() < 2:
        return SubClaim(
            sid,
            text,
            "not tested",
            command=command,
            notes=f"fewer than two sizes whose stage 1 learned ICL; {dropped_text}",
        )
    order = sizes.groupby("size")["n_params"].first().sort_values().index.tolist()
    small, large = sizes[sizes["size"] == order[0]], sizes[sizes["size"] == order[-1]]
    k2 = int(sizes["K2"].iloc[0])
    per = sizes.groupby("size")[["icl", "icl_m2_only", "n_params"]].mean().loc[order]
    monotone = bool((per["icl"].diff().dropna() >= 0).all())
    notes = (
        "mean stage-2 icl / icl_m2_only by size (decoder parameters): "
        + ", ".join(f"{s} ({int(r.n_params)}) {r.icl:.3f} / {r.icl_m2_only:.3f}" for s, r in per.iterrows())
        + f"; {'monotone' if monotone else 'not monotone'} in size"
        + (f"; {dropped_text}" if dropped else "")
    )
    sub = paired_subclaim(
        sid,
        text,
        by_seed(small, "icl"),
        by_seed(large, "icl"),
        f"stage-2 multimodal icl at K2 = {k2}, {order[-1]} minus {order[0]}",
        min_effect,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(sizes)  # each stage-2 run has its own stage 1
    if sub.verdict == "supported" and not monotone:
        sub.verdict = "weak"
    return sub


def size_families(
    sizes: pd.DataFrame, common: dict, command: str, *, min_effect: float
) -> tuple[SubClaim, SubClaim]:
    """4b and 4h: :func:`size_subclaim` of the sizes at the shipped width (``lL_hH``) and of those
    widened through a learned input embedding (``dE_lL_hH``,
    :func:`~mmicl_interp.sweep.multimodal.varied_width`), each saying which family it is."""
    varied = varied_width(sizes["size"]) if len(sizes) else pd.Series(dtype=bool)
    fixed = size_subclaim(sizes[~varied] if len(sizes) else sizes, common, command, min_effect=min_effect)
    wide = size_subclaim(sizes[varied] if len(sizes) else sizes, common, command, "4h", min_effect=min_effect)
    fixed.text += ", at a fixed width (more layers and heads)"
    wide.text += (
        ", at a growing width (a learned input embedding, d_embed 32 -> 128, with more layers and heads)"
    )
    family = [
        (fixed, "the shipped width (no input embedding, d_model 65); the widened decoders are 4h"),
        (wide, "widened through a learned input embedding (d_model d_embed + 33); the shipped width is 4b"),
    ]
    for sub, note in family:
        sub.notes = "; ".join(p for p in (note, sub.notes) if p)
    return fixed, wide


def encoder_subclaim(
    enc: pd.DataFrame, common: dict, command: str, *, min_effect: float, min_span: float = 0.2
) -> SubClaim:
    """4c: stage-2 icl_m2_only of the encoder sweep's rows ``enc``, the strongest pretrained encoder
    minus the weakest, paired by seed; "not tested" when the mean encoder accuracies span less
    than ``min_span``."""
    text = "a weak M2 encoder caps multimodal ICL"
    if enc.empty or enc["encoder_steps"].nunique() < 2:
        return not_run("4c", text, command, "the encoder sweep (two or more --encoder-steps)")
    per = (
        enc.groupby("encoder_steps")[["encoder_acc", "icl", "icl_m2_only"]].mean().sort_values("encoder_acc")
    )
    weak, strong = per.index[0], per.index[-1]
    k2 = int(enc["K2"].iloc[0])
    rho = enc["encoder_acc"].rank().corr(enc["icl_m2_only"].rank()) if len(enc) > 2 else math.nan  # Spearman
    notes = (
        "the frozen encoder changes only the M2 route, so the effect is on icl_m2_only; mean encoder "
        "accuracy -> stage-2 icl / icl_m2_only by pretraining steps: "
        + ", ".join(
            f"{s}: {r.encoder_acc:.3f} -> {r.icl:.3f} / {r.icl_m2_only:.3f}" for s, r in per.iterrows()
        )
        + f"; Spearman over runs, encoder accuracy vs icl_m2_only: {rho:.3f}"
    )
    span = float(per["encoder_acc"].iloc[-1] - per["encoder_acc"].iloc[0])
    sub = paired_subclaim(
        "4c",
        text,
        by_seed(enc[enc["encoder_steps"] == weak], "icl_m2_only"),
        by_seed(enc[enc["encoder_steps"] == strong], "icl_m2_only"),
        f"stage-2 icl_m2_only at K2 = {k2}, encoder of {strong} minus {weak} pretraining steps",
        min_effect,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(enc[enc["encoder_steps"].isin([weak, strong])])
    if span < min_span:
        sub.verdict = "not tested"
        lo, hi = per["encoder_acc"].iloc[0], per["encoder_acc"].iloc[-1]
        sub.notes = f"encoder accuracies span only {lo:.3f} to {hi:.3f}, too narrow to test; " + notes
    return sub


__all__ = ["K2Claim", "LEARNED", "encoder_subclaim", "k2_subclaims", "size_families", "size_subclaim"]
