"""The multimodal asymmetry (SCIENCE.md section 4, claim 4), measured with one command.

Per seed (``--seeds``, default 0 1 2; each sets task, model and training seeds together) it
trains stage 1 (``mm_stage1``) once, then per K2 one run of each arm (``--arms``: stage 2, early
fusion and their controls) and, at ``--low-k2``, the decoder-size (``--sizes``) and M2-encoder
(``--encoder-steps``) sweeps through stage 1 -> stage 2. It writes ``multimodal_asymmetry.md``,
``multimodal_asymmetry_runs.csv``, a plotly figure and section "4" of ``claims.json``.
``--from-results`` re-judges section 4 from the per-run CSV alone; ``--merge [CSV]`` puts this
command's rows into the committed table (rows of the same run and role replaced, the rest kept)
and writes every output from the merged table.

The arms and runs: :mod:`mmicl_interp.sweep.multimodal`; the verdict builders (4a-4h, paired by
seed): :mod:`mmicl_interp.sweep.multimodal_claims`; the command (options, training waves,
``--merge``, outputs, compute time): :mod:`mmicl_interp.sweep.multimodal_run`.

    .venv/bin/python analyses/multimodal_asymmetry.py [--k2 32 128 512 2048 8192] [--steps 1000]
        [--stage1-steps 1000] [--seeds 0 1 2] [--arms stage2 early random ...]
        [--sizes 0x2x1 0x3x2 0x4x4 32x2x1 64x3x2 128x4x4] [--encoder-steps 10 40 150 500] [--eval-size 1000]
        [--device cuda] [--workers 2]
    .venv/bin/python analyses/multimodal_asymmetry.py --from-results [CSV]
    .venv/bin/python analyses/multimodal_asymmetry.py --arms size --sizes 32x2x1 64x3x2 128x4x4 --merge
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import multimodal_claims as MC
from mmicl_interp.sweep.claims import SubClaim, command_line
from mmicl_interp.sweep.multimodal import (  # noqa: F401  (ARMS, run_count, merge_rows: the tests use them here)
    ARMS,
    merge_rows,
    run_count,
    split_tables,
)
from mmicl_interp.sweep.multimodal_claims import K2Claim
from mmicl_interp.sweep.multimodal_run import MultimodalScript

TITLE = "Multimodal asymmetry"
MIN_EFFECT_K2 = 0.2
"""Smallest icl difference at the smallest K2 that counts as more than weak (4a, 4d-4g)."""
MIN_EFFECT_SWEEP = 0.1
"""Smallest icl difference between the ends of the size / encoder sweeps that counts (4b, 4c, 4h)."""
K2_CLAIMS = (
    K2Claim(
        "4a",
        "after stage 1, a low K2 suffices for multimodal ICL; from scratch it does not",
        "early",
        "stage2",
        "stage 2 minus early fusion",
        "stage 2 gets a pretrained decoder plus the same steps as early fusion from scratch; the "
        "controls are 4d-4g",
        suffices=True,
    ),
    K2Claim(
        "4d",
        "the stage-1 decoder, not the frozen architecture, makes stage 2 work",
        "random",
        "stage2",
        "stage 2 minus a frozen random decoder",
        "same freezing and steps; the decoder from a fresh init instead of stage 1",
    ),
    K2Claim(
        "4e",
        "stage 2 beats early fusion given the same total budget",
        "matched",
        "stage2",
        "stage 2 minus early fusion for stage-1 + stage-2 steps",
    ),
    K2Claim(
        "4f",
        "stage 2 beats early fusion on high-K1 M1 data (same total budget)",
        "highk1",
        "stage2",
        "stage 2 minus early fusion with M1 from all K1 classes",
        "early fusion's M1 items from any M1 class of the label (task.m1_pool = all), not the "
        "M2 class's fixed partner",
    ),
    K2Claim(
        "4g",
        "after stage 1, a low K2 suffices without freezing the decoder",
        "matched",
        "unfrozen",
        "unfrozen stage 2 minus early fusion for the same total budget",
        suffices=True,
    ),
)
"""4a and its controls 4d-4g: multimodal icl at the smallest K2, arm ``other`` minus ``base``."""

k2_subclaims = partial(MC.k2_subclaims, claims=K2_CLAIMS, min_effect=MIN_EFFECT_K2)
"""4a, 4d-4g: ``(k2_table, k2s, common, command)``."""
size_subclaim = partial(MC.size_subclaim, min_effect=MIN_EFFECT_SWEEP)
"""4b (4h with ``sid="4h"``): ``(sizes, common, command)``, largest decoder minus smallest."""


def subclaims(table: pd.DataFrame, k2s: list[int], common: dict, command: str) -> list[SubClaim]:
    """Section 4 from the per-run table, every difference paired by seed: 4a, 4d-4g (K2_CLAIMS);
    4b at the shipped width and 4h at a growing width (size sweep, largest minus smallest
    decoder); 4c (encoder sweep, strongest minus weakest encoder, on icl_m2_only)."""
    k2_table, size_table, enc_table = split_tables(table)
    subs = [
        *k2_subclaims(k2_table, list(k2s), common, command),
        *MC.size_families(size_table, common, command, min_effect=MIN_EFFECT_SWEEP),
        MC.encoder_subclaim(enc_table, common, command, min_effect=MIN_EFFECT_SWEEP),
    ]
    return sorted(subs, key=lambda sub: sub.id)


def judged_runs(table: pd.DataFrame, _csv: Path) -> list[SubClaim]:
    """Section 4's sub-claims from the per-run table (``--from-results``)."""
    k2s = sorted(int(k) for k in table["K2"].dropna().unique())
    stage2 = table[table["arm"] == ARMS["stage2"]]
    common = dict(steps=int(stage2["steps"].max()) if len(stage2) else None)
    return subclaims(table, k2s, common, command_line("multimodal_asymmetry"))


SCRIPT = MultimodalScript("multimodal_asymmetry", "4", TITLE, __doc__, judge=judged_runs, verdicts=subclaims)
"""The command (options, input checks, training, ``--merge``, the outputs):
:mod:`mmicl_interp.sweep.multimodal_run`."""
_parser = SCRIPT.parser  # the tests build the parser here


def main(argv: list[str] | None = None) -> None:
    """Run claim 4 (see the module docstring)."""
    SCRIPT.main(argv)


if __name__ == "__main__":
    main()
