"""Claim 3 (SCIENCE.md section 6): more heads (and less so more layers) shift learning toward
IWL; bigger models need stronger statistical cues (a larger K) for ICL.

Two K sweeps of the default config (K in {128, 192, 256, 352, 512}, 3000 steps), five seeds
each (task, model and data seeds together): the number of heads in {1, 2, 4, 8} at 2
layers (``grids/claim3_heads.toml``; every head keeps the default width d_head = 57, so more
heads is a wider model) and the number of layers in {2, 3, 4} with one head
(``grids/claim3_layers.toml``); and, as a follow-up, 1 vs 8 heads at K = 2048 for 3000
steps (``grids/claim3_heads_long.toml``: is a plateau at 1000 steps a threshold or a delay?).
Writes the threshold K per model size and each seed's own crossing, the final icl / iwl per
(size, K), the runs still moving at the end and the follow-up's steps to icl 0.5 to
``analyses/results/claim3_scaling.md``, one figure (HTML; PNG with kaleido), every run's final
icl / iwl and ``still_moving`` to ``claim3_scaling_runs.csv``, and the verdicts to section "3"
of ``analyses/results/claims.json``: the crossing K of the largest size over the smallest's,
paired by seed, with the grid rule, capped at weak when a compared run is still moving (the
method: :mod:`mmicl_interp.sweep.unimodal_claims` and :mod:`mmicl_interp.sweep.unimodal_report`).

A third K sweep, ``grids/claim3_heads_split.toml``, has the heads split a fixed width as in
the paper (d_head unset: d_model // n_heads = 57, 28, 14, 7 for 1, 2, 4, 8 heads; K in {128,
192, 256, 352}, 3000 steps, 5 seeds): 3c, beside the widened 3a. Each sub-claim's id follows
its grid (claim3_heads 3a, claim3_layers 3b, claim3_heads_split 3c; other grids take the free
letters in order), and a command that runs some of the grids (``--grid``) re-judges only their
sub-claims: the section's other sub-claims are kept as they are in claims.json. ``--name`` sets
the stem of the Markdown, figure and per-run CSV (default ``claim3_scaling``), so such a partial
run does not overwrite the full run's tables; ``--from-results`` without a CSV reads every
``claim3_*_runs.csv`` in ``--out``.

    .venv/bin/python analyses/claim3_scaling.py [--grid FILE ...] [--name STEM] [--out DIR] [--workers N]
    .venv/bin/python analyses/claim3_scaling.py --grid analyses/grids/claim3_heads_split.toml \
        --name claim3_heads_split --workers 2
    .venv/bin/python analyses/claim3_scaling.py --from-results [CSV]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep import unimodal_claims as U
from mmicl_interp.sweep import unimodal_report as R
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.unimodal_claims import K

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [
    ROOT / "analyses" / "grids" / f"claim3_{part}.toml"
    for part in ("heads", "layers", "heads_split", "heads_long")
]
SUBCLAIM_IDS = {"claim3_heads": "3a", "claim3_layers": "3b", "claim3_heads_split": "3c"}
"""The sub-claim id of each K sweep, by grid name (other grids take the free letters in order)."""
SIZE_TEXT = {
    "model.n_heads": "more heads shift learning toward IWL (raise the K threshold)",
    "model.n_layers": "more layers shift learning toward IWL (raise the K threshold)",
}
GRID_TEXT = {
    "claim3_heads_split": "more heads at a fixed width (heads split d_model 57) shift learning toward IWL "
    "(raise the K threshold)",
}
"""Claim text by grid name, where the size key alone does not say what the sweep varies."""
GRID_NOTES = {
    "claim3_heads_split": "heads split a fixed width: d_head = d_model // n_heads = 57, 28, 14, 7 for "
    "1, 2, 4, 8 heads (d_model 57), as in the paper; 3a's heads each keep d_head 57, so there more "
    "heads also widen the model",
}
SMALL_SHIFT = 1.5
"""A crossing-K ratio below this is called a small shift in the notes."""
TITLE = "Scaling: more heads (less so layers) shift toward IWL"
RUNS_CSV = "claim3_scaling_runs.csv"
SIZES = ("model.n_heads", "model.n_layers")


def size_subclaim(sid: str, size: str, runs: pd.DataFrame, common: dict, grid: str = "") -> C.SubClaim:
    """The crossing K of the largest ``size`` over the smallest's, paired by seed (the per-seed
    log ratio, t interval, with the grid rule), from the per-run rows of one K sweep (``runs``:
    ``size``, K, seed, icl, still_moving). A compared run still moving at the end caps it at weak."""
    text = GRID_TEXT.get(grid) or SIZE_TEXT.get(size, f"larger {S.short(size)} raises the K threshold")
    return U.shift_subclaim(sid, size, runs, common, text, GRID_NOTES.get(grid, ""), SMALL_SHIFT)


def subclaims(runs: pd.DataFrame, evidence: dict[str, dict] | None = None) -> list[C.SubClaim]:
    """3a, 3b, ...: one per K sweep in the per-run table (``claim3_scaling_runs.csv``: a ``grid``
    column, the size key, K, seed, icl, still_moving), in the order of the table; n_runs and
    n_seeds are counted here, ``evidence[grid]`` adds the other fields (steps, command, ...)."""
    subs: list[C.SubClaim] = []
    names = list(dict.fromkeys(runs["grid"]))
    free = iter(c for c in "abcdefgh" if f"3{c}" not in {SUBCLAIM_IDS.get(n) for n in names})
    for name, part in U.sweep_parts(runs, [*SIZES, K]):
        size = next((k for k in SIZES if k in part and part[k].nunique() > 1), None)
        if size is None or K not in part or part[K].nunique() < 2:
            continue  # a fixed-K follow-up: reported, not a sub-claim
        fields = U.run_counts(part, [size, K], (evidence or {}).get(name))
        subs.append(size_subclaim(SUBCLAIM_IDS.get(name) or f"3{next(free)}", size, part, fields, grid=name))
    return sorted(subs, key=lambda sc: sc.id)


def from_results(args) -> None:
    """``--from-results``: section 3 of claims.json re-judged from the per-run CSV alone (without
    a CSV: every ``claim3_*_runs.csv`` in ``--out``); sub-claims of grids not in them are kept."""
    U.rejudge_csvs(args, "3", TITLE, "claim3_scaling", subclaims, RUNS_CSV, "claim3_*_runs.csv")


def report(done, args, command: str) -> Outcome:
    lines, fig, runs, evidence = R.scaling_report(done, command)
    return Outcome(
        lines,
        fig,
        "Claim 3: final icl and iwl vs K by heads and by layers (error bars: min/max over seeds)",
        R.with_wall(subclaims, runs, evidence),
        csv={f"{args.name}_runs.csv": runs},
        width=1500,
        stem=args.name,
        section=lambda section: C.keep_others(Path(args.out) / "claims.json", section),
    )


OPTIONS = [
    (
        "--name",
        dict(
            default="claim3_scaling",
            help="stem of the Markdown, figure and per-run CSV (<name>_runs.csv) in --out "
            "(default: %(default)s)",
        ),
    )
]

SCRIPT = ClaimScript(
    "claim3_scaling", "3", TITLE, __doc__, GRIDS, report, rejudge=from_results, options=OPTIONS
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
