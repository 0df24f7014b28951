"""Claim 2 (SCIENCE.md section 6): RoPE raises the data-complexity threshold for ICL and
delays the onset of the ICL circuit, compared with absolute positions; previous-token and
induction patterns are weaker. Checked under the correct RoPE and the published one.

Sweeps position type (one-hot APE, learned APE, correct RoPE, published RoPE) x K x 5 seeds
(``grids/claim2_positions.toml``: task, model and data seeds together; up to 10000 steps,
stopping early from step 4000 once icl has settled, ``train.stop_plateau``; a checkpoint every
25 steps up to step 2000). Then, per run, scores every checkpoint on the icl
suite (:func:`~mmicl_interp.analyses.tables.circuit_scores`) and finds the onsets of icl
accuracy, of the best induction head's strength and of the best previous-token head
(:func:`~mmicl_interp.analyses.correlation.phases`), the end-of-training scores of both heads,
and each run's across-checkpoint Pearson r of its best induction head's ``ih`` with icl accuracy
with a moving-block bootstrap interval (columns ``ih_icl_r/_lo/_hi/_block`` of
``claim2_positions_runs.csv``; :func:`~mmicl_interp.sweep.measures.circuit_runs`).
Writes the threshold K per position type, the runs still moving at the end (column
``still_moving`` of the per-run CSV), the final accuracies and the onsets per (position type,
K), and a verdict line to ``analyses/results/claim2_positions.md``, a figure (HTML; PNG with
kaleido), and the verdicts with their intervals to section "2" of
``analyses/results/claims.json``: every arm is compared with one-hot seed by seed, with the grid
rule on the crossing ratios and the delay rule on the onsets. The method:
:mod:`mmicl_interp.sweep.unimodal_claims` and :mod:`mmicl_interp.sweep.unimodal_report`.
``--from-results`` re-judges that section from the committed ``claim2_positions_runs.csv`` alone
(no training, no run folders).

    .venv/bin/python analyses/claim2_positions.py [--grid FILE] [--out DIR] [--workers N]
    .venv/bin/python analyses/claim2_positions.py --from-results [CSV]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import unimodal_claims as U
from mmicl_interp.sweep import unimodal_report as R
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome, plateau_note
from mmicl_interp.sweep.measures import circuit_runs
from mmicl_interp.sweep.unimodal_claims import POS, K

# tests call claim2.verdict: the one-line verdict per RoPE variant of the report
from mmicl_interp.sweep.unimodal_report import rope_verdict as verdict  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / "claim2_positions.toml"]
TITLE = "RoPE raises the threshold and delays ICL; weaker patterns"
N_SEQS = 500
"""icl sequences scored per checkpoint for the head measures."""
VARIANTS = (("rope", "correct RoPE"), ("rope_paper", "published RoPE"))
ONSETS = {
    "steps_to_icl_half": "steps to icl 0.5",
    "icl_onset": "icl onset",
    "induction_onset": "ih onset",
    "prev_token_onset": "PH onset",
    "icl_onset_plateau": "icl leaves plateau",
    "induction_onset_plateau": "ih leaves plateau",
}
"""The onset columns of the per-run table and their headers, in the order of the Markdown table."""
FINALS = {"final_ih": "final ih", "final_prev_token_label": "final PH-label"}
"""The end-of-training head scores of the per-run table and their headers."""


def subclaims(runs: pd.DataFrame, common: dict, moving: list[str] | None) -> list[C.SubClaim]:
    """Claim 2's sub-claims per RoPE variant against one-hot APE, from the per-run table alone
    (``runs``: one row per run with its positions, K, seed, final icl, onsets and final head
    scores; the columns of ``claim2_positions_runs.csv``), seed by seed: the threshold raised
    (a-b: the paired per-seed log ratio of the crossing K, with the grid rule), the icl onset
    delayed (c-d: paired per-seed onset differences, with the delay rule), the induction
    pattern weaker (e-f: paired per-seed final ih, by at least 0.05). ``moving``: the runs still
    moving at the end (None: not known), which cap the verdicts of the arms they belong to at weak."""
    arms = U.arm_crossings(runs, POS, "final_icl")
    present = [(pos, label) for pos, label in VARIANTS if pos in arms and "onehot" in arms]
    subs: list[C.SubClaim] = []
    for i, (pos, label) in enumerate(present):
        pair = U.moving_of(runs, moving, POS, (pos, "onehot"))  # only the runs compared cap it
        tail = "; " + plateau_note(pair, 0 if pair is None else len(moving) - len(pair))
        text, capped = f"{label} raises the data-complexity threshold", pair is None or bool(pair)
        subs.append(U.rope_ratio_subclaim(f"2{'ab'[i]}", text, arms, pos, pos, capped, tail, common))
        ids = (f"2{'cd'[i]}", f"2{'ef'[i]}")
        subs += U.circuit_subclaims(ids, label, runs, pos, common, ih_min_effect=0.05)
    return sorted(subs, key=lambda sc: sc.id)


# judged_runs(runs, csv): the sub-claims of the per-run CSV (for --from-results)
judged_runs = U.csv_judge(subclaims, "claim2_positions.md", [POS, K])


def report(done, args, command: str) -> Outcome:
    scores, runs = circuit_runs(done.grids[0], done.results[0], N_SEQS, workers=args.workers)
    return R.positions_outcome(
        done, command, scores, runs, subclaims, SCRIPT.runs_csv, N_SEQS, ONSETS, FINALS
    )


SCRIPT = ClaimScript(
    "claim2_positions", "2", TITLE, __doc__, GRIDS, report, judge=judged_runs, one_grid="position type x K"
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
