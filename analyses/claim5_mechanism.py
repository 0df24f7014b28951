"""Claim 5 (SCIENCE.md section 6), across runs: ICL runs on an induction head.

For every run of the unimodal claim sweeps (claims 1, 2 and 3; each trained first if it is
missing), at its last checkpoint: final icl accuracy, its best induction head and the icl and iwl
drop when that head, and jointly every head with ``ih >= IH_THRESHOLD``, is mean-ablated; for
claim 4's stage-2 runs (``--multimodal``: ``multimodal_asymmetry_runs.csv``, the runs under
``--runs``; run ``analyses/multimodal_asymmetry.py`` first, else 5c and 5e are "not tested"),
the stage-1 run's best induction head (and a control head of its layer) ablated in the stage-2
model. Writes ``analyses/results/claim5_mechanism.md``, every run's row to
``claim5_mechanism_runs.csv`` and ``claim5_multimodal_runs.csv``, a figure (HTML; PNG with
kaleido), and the verdicts to section "5" of ``analyses/results/claims.json``.
``--from-results`` re-judges section 5 from the two CSVs alone.

The method (measures, sub-claims 5a-5e and their intervals):
:mod:`mmicl_interp.sweep.mechanism_claims`; the ablations: :mod:`mmicl_interp.sweep.head_ablation`.

    .venv/bin/python analyses/claim5_mechanism.py [--grid FILE ...] [--out DIR] [--workers N]
        [--multimodal CSV]
    .venv/bin/python analyses/claim5_mechanism.py --from-results [CSV]
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import mechanism_claims as M
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.head_ablation import (  # noqa: F401  (control_head, N_SEQS: the tests use them here)
    N_SEQS,
    control_head,
    mechanism_figure,
    multimodal_rows,
    sweep_rows,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [
    ROOT / "analyses" / "grids" / f"{name}.toml"
    for name in (
        "claim1_K",
        "claim1_B",
        "claim1_eps",
        "claim1_alpha",
        "claim2_positions",
        "claim3_heads",
        "claim3_layers",
        "claim3_heads_long",
    )
]
LEARNED = 0.5
"""A run 'learned' ICL (IWL) when its final icl (iwl) accuracy is at least this."""
MIN_R = 0.3
"""5a: the smallest Pearson r (final icl vs best-head ih) that counts."""
MIN_DROP = 0.1
"""5b-5e: the smallest drop difference (icl minus iwl; induction minus control head) that counts."""
TITLE = "Mechanism across runs"
RUNS_CSV = "claim5_mechanism_runs.csv"
MM_CSV = "claim5_multimodal_runs.csv"

multimodal_subclaim = partial(M.multimodal_subclaim, learned=LEARNED, min_effect=MIN_DROP)
"""5c: ``(mm, command, wall)``: stage-2 learners, per-seed mean of icl minus iwl drop, t over seeds."""
control_subclaim = partial(M.control_subclaim, learned=LEARNED, min_effect=MIN_DROP)
"""5e: ``(mm, command, wall)``: stage-2 learners, per-seed mean of induction minus control head drop."""


def subclaims(
    runs: pd.DataFrame, unique: pd.DataFrame, command: str, wall: float, mm: pd.DataFrame | None = None
) -> list[SubClaim]:
    """5a: Pearson r of icl vs best-head ih over the unique runs (BCa), at least MIN_R; 5b and 5d:
    in the unique runs with icl >= LEARNED, icl drop minus iwl drop of the best head (5b) and of
    the joint ablation in the multi-head or deeper ones (5d), paired t over runs, at least
    MIN_DROP; 5c and 5e on claim 4's stage-2 rows ``mm`` (:func:`multimodal_rows`), t over seeds."""
    common = M.evidence(runs, unique, command, wall)
    learners = unique[unique["icl"] >= LEARNED]
    mm = pd.DataFrame() if mm is None else mm
    return [
        M.correlation_subclaim(unique, MIN_R, common),
        M.best_head_subclaim(learners, MIN_DROP, common),
        M.joint_subclaim(learners, MIN_DROP, common),
        multimodal_subclaim(mm, command, wall),
        control_subclaim(mm, command, wall),
    ]


def from_results(args) -> None:
    """``--from-results``: section 5 re-judged from ``claim5_mechanism_runs.csv`` (and
    ``claim5_multimodal_runs.csv`` beside it, for 5c and 5e) alone."""
    M.rejudge(args, "5", TITLE, "claim5_mechanism", (RUNS_CSV, MM_CSV), subclaims)


def report(done, args, command: str) -> Outcome:
    t0 = time.perf_counter()
    runs = sweep_rows(done)  # per run: best induction head, its ablation, the joint ablation
    mm = multimodal_rows(Path(args.multimodal), Path(args.runs) if args.runs else ROOT / "checkpoints")
    lines, p = M.report_lines(runs, mm, done, time.perf_counter() - t0, LEARNED, args.multimodal)
    unique = runs.drop_duplicates("config_hash")
    return Outcome(
        lines,
        mechanism_figure(runs),
        f"Claim 5 across {len(runs)} runs: Pearson r = {p.value:.2f} [{p.lo:.2f}, {p.hi:.2f}]",
        lambda wall: subclaims(runs, unique, command, wall, mm),
        csv={RUNS_CSV: runs, **({MM_CSV: mm} if len(mm) else {})},
        width=1300,
        height=500,
        wall_s=time.perf_counter() - t0,
    )


OPTIONS = [
    (
        "--multimodal",
        dict(
            default=str(ROOT / "analyses" / "results" / "multimodal_asymmetry_runs.csv"),
            help="claim 4's per-run table, for 5c (default: %(default)s); its runs are read from --runs",
        ),
    )
]

SCRIPT = ClaimScript(
    "claim5_mechanism", "5", TITLE, __doc__, GRIDS, report, rejudge=from_results, options=OPTIONS
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
