"""Fidelity (issue 19): is the `published` config the published code's model, and which of the
differences from the old paper model (`paper_arch`) move the ICL/IWL boundary?

Sweeps ``grids/published_ablation.toml``: the `published` config with its MLP init
(``torch_default`` as published, ``normal`` as the old paper model) and read-out bias (absent as
published, present as in the old model) crossed, at K = 2048 and 4096, 3 seeds of task, model
and data, 2000 steps; ``grids/embed_init.toml``: the default config with a learned input
embedding (d_embed 32) under the new norm-preserving and the old N(0, init_std^2) W_E init; and
``grids/published_rope.toml``: `published` with RoPE at K = 4096 and 8192.

F1/F2: `published` ends on the published code's side (memorises at K 2048, learns in context at
K 4096) for every seed; F3-F5: undoing a difference changes final icl at K 2048 (paired by seed);
P1/P2: where one-hot and RoPE icl cross 0.5. The method (side rule, guards, intervals) is in
:mod:`mmicl_interp.sweep.published_claims`.

Writes ``analyses/results/published_ablation.md`` / ``_runs.csv`` and section ``published`` of
``analyses/results/claims.json``. Complete runs are reused.

    .venv/bin/python analyses/published_ablation.py [--out DIR] [--runs DIR] [--workers N]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.published_claims import (
    boundary_subclaims,  # noqa: F401  (tests read the P1/P2 rules from the script)
    final_icl,
    report_lines,
    run_evidence,
    side_subclaim,
    undone_subclaim,
    variant,
)
from mmicl_interp.sweep.published_compare import (
    PLATEAU,
    arm_lines,
    last_steps,
    reference_lines,
    side,  # noqa: F401  (tests read the side rule from the script)
    step_rows,
    step_table,
    trajectories,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [
    ROOT / "analyses" / "grids" / name
    for name in ("published_ablation.toml", "embed_init.toml", "published_rope.toml")
]
REFERENCE = ROOT / "analyses" / "results" / "published_reference.csv"
STEPS = (500, 1000, 1500, 2000)
KEYS = ("model.mlp_init", "model.readout_bias", "task.K", "seed")
"""The swept keys of a row of the per-run table (its variant, K and seed), in its sort order."""
VARIANTS = {
    ("torch_default", False): "published",
    ("normal", False): "MLP init N(0, 0.02), biases 0",
    ("torch_default", True): "+ read-out bias",
    ("normal", True): "both undone (the old paper_arch model)",
}
"""(model.mlp_init, model.readout_bias) -> the variant's name in the report."""

SIDES = (("F1", 2048, "IWL"), ("F2", 4096, "ICL"))
"""F1/F2: (id, K, the published code's side there): `published` on it for every seed at step 2000."""
UNDONE = (
    ("F3", ("normal", False), "the MLP init moves the boundary: N(0, 0.02) MLPs learn ICL at K = 2048"),
    ("F4", ("torch_default", True), "a read-out bias moves the boundary at K = 2048"),
    ("F5", ("normal", True), "the old paper model (both undone) learns ICL at K = 2048"),
)
"""F3-F5: (id, variant, claim): its final icl at K 2048 minus `published`'s, paired by seed."""
MIN_EFFECT = 0.1
"""The smallest change in final icl that F3-F5 count as moving the boundary."""


def subclaims(runs: pd.DataFrame, common: dict) -> list[C.SubClaim]:
    """F1/F2 (:data:`SIDES`) and F3-F5 (:data:`UNDONE`) on the per-run table ``runs``."""
    pub = variant(runs)
    base = final_icl(pub, 2048)
    sides = [side_subclaim(sid, pub[pub["task.K"] == K], K, want, common) for sid, K, want in SIDES]
    undone = [
        undone_subclaim(sid, text, base, final_icl(variant(runs, *key), 2048), common, MIN_EFFECT)
        for sid, key, text in UNDONE
    ]
    return sides + undone


def report(done, args, command: str) -> Outcome:
    ablation, embed, rope_result = done.results
    runs = step_rows(trajectories(ablation.table), KEYS, STEPS, PLATEAU)
    rope = last_steps(trajectories(rope_result.table))
    common = run_evidence(runs, command)
    onehot = variant(runs).rename(columns={"icl_2000": "icl"})[["task.K", "seed", "icl"]]

    def judged(wall: float) -> list[C.SubClaim]:
        fields = {**common, "wall_time_s": wall}
        return subclaims(runs, fields) + boundary_subclaims(onehot, rope, fields)

    embed_md, embed_runs = arm_lines(embed.table, "model.embed_init", "init_std", "unit", "W_E init")
    lines = report_lines(
        command,
        done.timing(),
        step_table(runs, KEYS[:2], VARIANTS, STEPS),
        reference_lines(variant(runs), STEPS, REFERENCE),
        judged(math.nan),  # the verdicts in the Markdown (the section gets them with the wall time)
        embed_md,
    )
    csv = {"published_ablation_runs.csv": runs, "embed_init_runs.csv": embed_runs}
    return Outcome(lines, None, "", judged, csv=csv)


SCRIPT = ClaimScript(
    "published_ablation", "published", "Fidelity: the published code's model", __doc__, GRIDS, report
)


def main(argv: list[str] | None = None) -> int:
    SCRIPT.main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
