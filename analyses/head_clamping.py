"""Head clamping (issue 20, after Singh et al. 2024): does a perfect previous-token head make
the induction head form, and icl rise, earlier?

Trains the grid ``analyses/grids/head_clamping.toml``: the default config (2 layers, 1 head),
once with layer 0's head clamped to the perfect previous-token pattern for the whole run
(its last eval included: ``clamp_end`` lies past ``train.steps``)
(``train.clamp_pattern = "prev_token"``, :mod:`mmicl_interp.train.clamp`) and once unclamped,
for each seed (task, model and data seeds together). Every checkpoint is scored on the icl
suite as it was trained: with the clamp on where the clamp covered that step. Per run: the
half-rise onset (:func:`~mmicl_interp.analyses.correlation.phases`) of the best induction head
after the clamped layer (highest final ``ih``), of icl accuracy, and the first step where icl
reaches 0.5. The clamped run and the control of the same seed are compared seed by seed with
the claims' rules: paired t over seeds of the onset differences (control minus clamped: > 0
means clamping speeds formation up) and the delay rule
(:func:`~mmicl_interp.sweep.claims.judge_delay`: "supported" only when the interval's lower
bound exceeds the checkpoint spacing around the onsets).

Writes ``analyses/results/head_clamping.md`` and ``head_clamping_runs.csv`` (one row per run).
Not a claim of the paper, so it writes no section of claims.json.

    flock /tmp/mmicl-heavy.lock .venv/bin/python analyses/head_clamping.py [--grid FILE]
        [--out DIR] [--runs DIR] [--workers N] [--n-seqs N]
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.claims import Judgement
from mmicl_interp.sweep.clamping import arm_rows, judge_delays, score_runs, seed_differences, verdict_rows
from mmicl_interp.sweep.summary import markdown_table

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "analyses" / "grids" / "head_clamping.toml"
ARM = "train.clamp_pattern"
CONTROL, CLAMPED = "none", "prev_token"
N_SEQS = 500
"""icl sequences scored per checkpoint."""
STEM = "head_clamping"
ARM_COLUMNS = {
    "prev_token_label_l0_first": ("layer-0 PH-label, step 0", 3),
    "prev_token_label_l0_final": ("layer-0 PH-label, final", 3),
    "induction_onset": ("ih onset", 0),
    "icl_onset": ("icl onset", 0),
    "steps_to_icl_half": ("steps to icl 0.5", 0),
    "final_ih": ("final ih", 3),
    "final_icl": ("final icl", 3),
}
"""The per-arm table: per-run column -> (header, digits), mean [min, max] over seeds."""

CLAIM = "Clamping the previous-token head makes "
HYPOTHESES = {
    "induction_onset": ("induction_resolution", CLAIM + "the induction head form earlier"),
    "icl_onset": ("icl_resolution", CLAIM + "icl rise earlier (half-rise onset)"),
    "steps_to_icl_half": ("icl_resolution", CLAIM + "icl reach 0.5 earlier"),
}
"""The verdict rule: per measure (per-run column), the column of its checkpoint spacing and the
hypothesis; control minus clamped, paired by seed, by the delay rule
(:func:`~mmicl_interp.sweep.clamping.judge_delays`)."""


def judge(runs: pd.DataFrame) -> dict[str, tuple[Judgement, float]]:
    """Per measure: the paired delay judgement (control minus clamped, by seed) and its spacing."""
    return judge_delays(runs, ARM, CLAMPED, CONTROL, {c: r for c, (r, _) in HYPOTHESES.items()})


def report(runs: pd.DataFrame, verdicts: dict, timing: str, n_seqs: int) -> list[str]:
    steps = int(runs["last_step"].max())
    lines = [
        "# Head clamping: a perfect previous-token head vs the induction head's formation",
        "",
        f"Default config (2 layers, 1 head, one-hot APE, K = 8192, N = 8, B = 2), {steps} steps, "
        f"{runs['seed'].nunique()} seeds (task, model and data seeds together). Clamped arm: layer 0's "
        "head clamped to the perfect previous-token pattern (A[t, t-1] = 1) for every step "
        'and eval (`train.clamp_pattern = "prev_token"`, clamp_start = 0, clamp_end past the last step); '
        "control: the same "
        "seed unclamped. Each checkpoint (every 25 steps to 1000, every 100 after) is scored on "
        f"{n_seqs} icl sequences as it was trained (clamp on in the clamped arm). Onsets: first crossing "
        "of half each run's own rise (interpolated); the induction head is the layer-1 head; "
        "'steps to icl 0.5': first step where icl accuracy reaches 0.5. Values: mean [min, max] over "
        "seeds. Command: `flock /tmp/mmicl-heavy.lock .venv/bin/python analyses/head_clamping.py`; "
        f"{timing}.",
        "",
        "## Per arm",
        "",
    ]
    digits = {column: d for column, (_, d) in ARM_COLUMNS.items()}
    lines += markdown_table(
        ["clamp", "runs", *(header for header, _ in ARM_COLUMNS.values())], arm_rows(runs, ARM, digits)
    )
    lines += ["", "## Per seed: control minus clamped (steps; > 0: the clamped run is earlier)", ""]
    lines += markdown_table(
        ["seed", *verdicts], seed_differences(runs, ARM, CONTROL, CLAMPED, list(verdicts))
    )
    lines += ["", "## Verdicts (paired t over seeds, delay rule)", ""]
    texts = {column: text for column, (_, text) in HYPOTHESES.items()}
    lines += markdown_table(
        ["hypothesis", "speed-up (steps)", "95% interval", "spacing", "verdict", "rule"],
        verdict_rows(verdicts, texts),
    )
    return lines


def scored(done, args, command: str) -> Outcome:
    t0 = time.perf_counter()
    grid, result = done.grids[0], done.results[0]
    runs = score_runs(grid, result, args.n_seqs)
    all_s = done.wall_s + time.perf_counter() - t0
    timing = f"{done.timing()}; {all_s / 60:.1f} min in all, scoring included"
    lines = report(runs, judge(runs), timing, args.n_seqs)
    return Outcome(lines, None, "", lambda wall: [], csv={f"{STEM}_runs.csv": runs})


OPTIONS = [("--n-seqs", dict(type=int, default=N_SEQS, help="icl sequences per checkpoint"))]

SCRIPT = ClaimScript(
    STEM, None, "Head clamping", __doc__, [GRID], scored, options=OPTIONS, one_grid="clamp x seed"
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
