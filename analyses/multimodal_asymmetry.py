"""The multimodal asymmetry (SCIENCE.md section 4, claim 4), measured with one command.

Per seed (``--seeds``, default 0 1 2; each sets task, model and training seeds together) it
trains stage 1 (``mmicl_interp/configs/mm_stage1.toml``, ``--stage1-steps``) once, then per K2
one run of each arm (``--arms``), all multimodal runs ``--steps`` long unless said otherwise:

- ``stage2``: the stage-1 decoder of that seed, frozen (projector, final norm, read-out train);
- ``early``: early fusion, the same multimodal training from scratch;
- ``random``: stage 2 with the same freezing but a freshly initialised decoder;
- ``unfrozen``: stage 2 from the stage-1 decoder with nothing frozen;
- ``matched``: early fusion for stage-1 + stage-2 steps (the pipeline's total budget);
- ``highk1``: ``matched`` on high-K1 M1 data (``task.m1_pool = "all"``: each exemplar's M1
  item from any of the K1 M1 classes of its label, not the M2 class's fixed partner);

and two sweeps at ``--low-k2`` (default the smallest K2), both through stage 1 -> stage 2:

- ``size``: decoders of ``--sizes`` (``d_embed x n_layers x n_heads``; d_embed 0: no input
  embedding, as shipped), each with its own stage 1 (the shipped size reuses the runs above); a
  size whose stage 1 did not learn ICL is left out of the verdict and named;
- ``encoder``: M2 encoders (``mm_encoder``) pretrained for each of ``--encoder-steps`` steps
  (so to several accuracies), loaded frozen in front of the projector of a stage-2 run.

It writes the final accuracies as Markdown (``multimodal_asymmetry.md``), per run as CSV
(``multimodal_asymmetry_runs.csv``), a plotly figure, and the verdicts to section "4" of
``claims.json`` (4a, 4d-4g: differences at the smallest K2; 4b: size at the shipped width, more
layers and heads; 4h: size at a growing width, the ``dE`` decoders; 4c: encoder strength;
every difference paired by seed, since a seed's arms share its task seed and stage-1 run: the
paired t interval of the per-seed differences). ``--from-results`` re-judges section 4 from
``multimodal_asymmetry_runs.csv`` alone (no training, no run folders). Runs land in ``--runs``
(default ``checkpoints/``) and are reused when complete (``mmicl train`` skips them); an
interrupted one is resumed. ``--workers N`` trains N runs at once, in two waves (stage-1 and
encoder runs, and every run that loads none; then the runs that load them). The wall time in
``claims.json`` is the runs' recorded training time plus the analysis, the same whether runs
were trained now or reused.

    .venv/bin/python analyses/multimodal_asymmetry.py [--k2 32 128 512 2048 8192] [--steps 1000]
        [--stage1-steps 1000] [--seeds 0 1 2] [--arms stage2 early random ...]
        [--sizes 0x2x1 0x3x2 0x4x4 32x2x1 64x3x2 128x4x4] [--encoder-steps 10 40 150 500] [--eval-size 1000]
        [--device cuda] [--workers 2]
    .venv/bin/python analyses/multimodal_asymmetry.py --from-results [CSV]

``--merge [CSV]`` reruns part of the runs into the committed table: this command's rows replace
the rows of the same run and role in ``multimodal_asymmetry_runs.csv`` (every other row kept),
and the Markdown, figure and section 4 come from the merged table, e.g. the learned-embedding
size points alone::

    .venv/bin/python analyses/multimodal_asymmetry.py --arms size --sizes 32x2x1 64x3x2 128x4x4 --merge
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep.claim_script import by_seed, not_run, paired_subclaim
from mmicl_interp.sweep.claims import SubClaim, command_line
from mmicl_interp.sweep.multimodal import (  # noqa: F401  (run_count, merge_rows: the tests use them here)
    ARMS,
    crossing,
    merge_rows,
    run_count,
    split_tables,
    varied_width,
)
from mmicl_interp.sweep.multimodal_run import MultimodalScript

TITLE = "Multimodal asymmetry"
MIN_EFFECT_K2 = 0.2
"""Smallest icl difference at the smallest K2 that counts as more than weak (4a, 4d-4g)."""
MIN_EFFECT_SWEEP = 0.1
"""Smallest icl difference between the ends of the size / encoder sweeps that counts (4b, 4c)."""


def k2_subclaims(table: pd.DataFrame, k2s: list[int], common: dict, command: str) -> list[SubClaim]:
    """4a and the controls 4d-4g: icl differences at the smallest K2."""
    k2 = min(k2s)
    at = table[table["K2"] == k2] if len(table) else table

    def arm(name: str, column: str = "icl") -> pd.Series:
        return by_seed(at[at["arm"] == ARMS[name]], column) if len(at) else pd.Series(dtype=float)

    means = table.groupby(["arm", "K2"])["icl"].mean() if len(table) else pd.Series(dtype=float)

    def cross(name: str) -> str:
        part = [means.get((ARMS[name], k), math.nan) for k in sorted(k2s)]
        return crossing(sorted(k2s), [0.0 if math.isnan(v) else v for v in part])

    where = f"multimodal icl at K2 = {k2}"
    suffices = {"4a", "4g"}  # "a low K2 suffices": the arm itself must reach icl 0.5 there
    specs = [
        (
            "4a",
            "after stage 1, a low K2 suffices for multimodal ICL; from scratch it does not",
            "early",
            "stage2",
            f"{where}, stage 2 minus early fusion",
            "stage 2 gets a pretrained decoder plus the same steps as early fusion from scratch; the "
            "controls are 4d-4g",
        ),
        (
            "4d",
            "the stage-1 decoder, not the frozen architecture, makes stage 2 work",
            "random",
            "stage2",
            f"{where}, stage 2 minus a frozen random decoder",
            "same freezing and steps; the decoder from a fresh init instead of stage 1",
        ),
        (
            "4e",
            "stage 2 beats early fusion given the same total budget",
            "matched",
            "stage2",
            f"{where}, stage 2 minus early fusion for stage-1 + stage-2 steps",
            "",
        ),
        (
            "4f",
            "stage 2 beats early fusion on high-K1 M1 data (same total budget)",
            "highk1",
            "stage2",
            f"{where}, stage 2 minus early fusion with M1 from all K1 classes",
            "early fusion's M1 items from any M1 class of the label (task.m1_pool = all), not the "
            "M2 class's fixed partner",
        ),
        (
            "4g",
            "after stage 1, a low K2 suffices without freezing the decoder",
            "matched",
            "unfrozen",
            f"{where}, unfrozen stage 2 minus early fusion for the same total budget",
            "",
        ),
    ]
    out = []
    for sid, text, base, other, label, note in specs:
        a, b = arm(base), arm(other)
        if a.empty or b.empty:
            out.append(not_run(sid, text, command, f"arm {base if a.empty else other}"))
            continue
        crossings = f"icl >= 0.5 from K2 = {cross(other)} ({ARMS[other]}), {cross(base)} ({ARMS[base]})"
        m2 = float((arm(other, "icl_m2_only") - arm(base, "icl_m2_only")).mean())
        short = (
            f"{ARMS[other]} itself stays below icl 0.5 at K2 = {k2} ({b.mean():.3f}): better than "
            f"{ARMS[base]}, but K2 = {k2} does not suffice"
            if sid in suffices and b.mean() < 0.5
            else ""
        )
        notes = "; ".join(
            p for p in (short, note, crossings, f"the same difference on icl_m2_only: {m2:.3f}") if p
        )
        sub = paired_subclaim(sid, text, a, b, label, MIN_EFFECT_K2, common, notes)
        if short and sub.verdict == "supported":
            sub.verdict = "weak"
        out.append(sub)
    return out


def size_subclaim(sizes: pd.DataFrame, common: dict, command: str, sid: str = "4b") -> SubClaim:
    """4b (and 4h): stage-2 icl at low K2, largest decoder minus smallest; 'weak' at best if not
    monotone."""
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
    dropped = [z for z, v in s1_icl.items() if not v >= 0.5]
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
        MIN_EFFECT_SWEEP,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(sizes)  # each stage-2 run has its own stage 1
    if sub.verdict == "supported" and not monotone:
        sub.verdict = "weak"
    return sub


def encoder_subclaim(enc: pd.DataFrame, common: dict, command: str) -> SubClaim:
    """4c: stage-2 icl_m2_only with the strongest pretrained encoder minus the weakest."""
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
        MIN_EFFECT_SWEEP,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(enc[enc["encoder_steps"].isin([weak, strong])])
    if span < 0.2:
        sub.verdict = "not tested"
        lo, hi = per["encoder_acc"].iloc[0], per["encoder_acc"].iloc[-1]
        sub.notes = f"encoder accuracies span only {lo:.3f} to {hi:.3f}, too narrow to test; " + notes
    return sub


def subclaims(table: pd.DataFrame, k2s: list[int], common: dict, command: str) -> list[SubClaim]:
    """Section 4's sub-claims (4a-4h) from the per-run table. The size sweep is judged per family:
    4b at the shipped width (more layers and heads), 4h at a growing width (a learned input
    embedding, with more layers and heads)."""
    k2_table, size_table, enc_table = split_tables(table)
    subs = k2_subclaims(k2_table, list(k2s), common, command)
    varied = varied_width(size_table["size"]) if len(size_table) else pd.Series(dtype=bool)
    fixed = size_subclaim(size_table[~varied] if len(size_table) else size_table, common, command)
    wide = size_subclaim(size_table[varied] if len(size_table) else size_table, common, command, sid="4h")
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
    subs.insert(1, fixed)
    subs.insert(2, encoder_subclaim(enc_table, common, command))
    subs.append(wide)
    return subs


def judged_runs(table: pd.DataFrame, _csv: Path) -> list[SubClaim]:
    """Section 4's sub-claims from the per-run table."""
    k2s = sorted(int(k) for k in table["K2"].dropna().unique())
    stage2 = table[table["arm"] == ARMS["stage2"]]
    common = dict(steps=int(stage2["steps"].max()) if len(stage2) else None)
    return subclaims(table, k2s, common, command_line("multimodal_asymmetry"))


SCRIPT = MultimodalScript("multimodal_asymmetry", "4", TITLE, __doc__, judge=subclaims, rejudge=judged_runs)
"""The command (options, input checks, training, ``--merge``, the outputs):
:mod:`mmicl_interp.sweep.multimodal_run`."""
_parser = SCRIPT.parser  # the tests build the parser here


def main(argv: list[str] | None = None) -> None:
    """Run claim 4 (see the module docstring)."""
    SCRIPT.main(argv)


if __name__ == "__main__":
    main()
