"""Claim 2 (SCIENCE.md section 6): RoPE raises the data-complexity threshold for ICL and
delays the onset of the ICL circuit, compared with absolute positions; previous-token and
induction patterns are weaker. Checked under the correct RoPE and the published one.

Sweeps position type (one-hot APE, learned APE, correct RoPE, published RoPE) x K x 5 seeds
(``grids/claim2_positions.toml``: task, model and data seeds together; up to 10000 steps,
stopping early from step 4000 once icl has settled, ``train.stop_plateau``; a checkpoint every
25 steps up to step 2000). Then, per run, scores every checkpoint on the icl
suite (:func:`~mmicl_interp.analyses.tables.circuit_scores`) and finds the onsets of icl
accuracy, of the best induction head's strength and of the best previous-token head
(:func:`~mmicl_interp.analyses.correlation.phases`: first crossing of half the final rise,
and first step above the starting plateau + 0.05), each with its checkpoint resolution, and
the end-of-training scores of both heads, and each run's across-checkpoint Pearson r of its
best induction head's ``ih`` with icl accuracy with a moving-block bootstrap interval (block
length from the curves' autocorrelation, :func:`~mmicl_interp.analyses.correlation.
ih_icl_correlation`; columns ``ih_icl_r/_lo/_hi/_block`` of ``claim2_positions_runs.csv``).
Writes the threshold K per position type (and each seed's own crossing, geometric mean with a
t interval and the grid cell it lies in), the runs still moving at the end (icl changed by >=
0.01 over the last 20% of training; column ``still_moving`` of the per-run CSV), the final
accuracies and the onsets per (position type, K), and a verdict line to
``analyses/results/claim2_positions.md``, a figure (HTML; PNG with kaleido), and the
verdicts with their intervals to section "2" of ``analyses/results/claims.json``: every arm is
compared with one-hot seed by seed (the seeds share task and data stream), by paired t
intervals, with the grid rule on the crossing ratios and the delay rule on the onsets
(:mod:`mmicl_interp.sweep.claims`). ``--from-results`` re-judges that section from the
committed ``claim2_positions_runs.csv`` alone (no training, no run folders).

    .venv/bin/python analyses/claim2_positions.py [--grid FILE] [--out DIR] [--workers N]
    .venv/bin/python analyses/claim2_positions.py --from-results [CSV]
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome, moving_line, plateau_note, sweep_evidence
from mmicl_interp.sweep.figures import POSITION_COLOURS, add_curves_by, add_values_by_suite, panels
from mmicl_interp.sweep.measures import (
    circuit_runs,
    final_table,
    number_texts,
    over_learners,
    threshold_table,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / "claim2_positions.toml"]
POS, K = "model.positions", "task.K"
N_SEQS = 500
"""icl sequences scored per checkpoint for the head measures."""
VARIANTS = (("rope", "correct RoPE"), ("rope_paper", "published RoPE"))
TITLE = "RoPE raises the threshold and delays ICL; weaker patterns"
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


def verdict(
    thresholds: dict, onsets: pd.Series, largest: float, resolution: float | pd.Series = 0.0
) -> list[str]:
    """One sentence per RoPE variant: does it raise the threshold and delay icl (``onsets``: icl
    onset step per (positions, K)) compared with one-hot APE? A delay counts only where it is
    larger than ``resolution``, the checkpoint spacing around the onsets: one number, or one per
    (positions, K), the larger of the two compared cells then applying at that K."""

    def spacing(pos: str, k) -> float:
        if not isinstance(resolution, pd.Series):
            return float(resolution)
        return float(max(resolution.get((pos, k), 0.0), resolution.get(("onehot", k), 0.0)))

    lines = []
    base_t = thresholds.get("onehot", math.nan)
    for pos, label in (("rope", "correct RoPE"), ("rope_paper", "the published RoPE")):
        if pos not in thresholds or "onehot" not in thresholds:
            continue
        t = thresholds[pos]
        raised = (math.isnan(t) and not math.isnan(base_t)) or (t > base_t)
        common = [k for (p, k) in onsets.index if p == pos and ("onehot", k) in onsets.index]
        delays = [onsets[(pos, k)] - onsets[("onehot", k)] for k in common]
        delayed = bool(delays) and all(d > spacing(pos, k) for k, d in zip(common, delays, strict=True))
        delay_text = (
            ", ".join(f"K={k}: {d:+.0f} steps" for k, d in zip(common, delays, strict=True))
            if delays
            else "no K where both learned"
        )
        any_spacing = any(spacing(pos, k) > 0 for k in common) if common else False
        within = " or within the checkpoint resolution" if any_spacing else ""
        lines.append(
            f"- Under {label}: threshold K {S.format_threshold(t, largest)} vs one-hot "
            f"{S.format_threshold(base_t, largest)} ({'raised' if raised else 'not raised'}); "
            f"icl onset vs one-hot: {delay_text} "
            f"({'delayed' if delayed else f'not delayed at every K{within}'}). "
            f"Claim 2 {'holds' if raised and delayed else 'holds in part' if raised or delayed else 'fails'}."
        )
    return lines


def subclaims(runs: pd.DataFrame, common: dict, moving: list[str] | None) -> list[C.SubClaim]:
    """Claim 2's sub-claims per RoPE variant against one-hot APE, from the per-run table alone
    (``runs``: one row per run with its positions, K, seed, final icl, onsets and final head
    scores; the columns of ``claim2_positions_runs.csv``), seed by seed: the threshold raised
    (a-b: the paired per-seed log ratio of the crossing K, with the grid rule), the icl onset
    delayed (c-d: paired per-seed onset differences, with the delay rule), the induction
    pattern weaker (e-f: paired per-seed final ih). ``moving``: the runs still moving at the
    end (None: not known), which cap the verdicts of the arms they belong to at weak."""
    run_pos = dict(zip(runs["run"], runs[POS], strict=False))
    crossings = S.seed_crossings(runs, K, by=[POS], value="final_icl")
    arms = {pos: part for pos, part in crossings.groupby(POS)}

    subs: list[C.SubClaim] = []
    present = [(pos, label) for pos, label in VARIANTS if pos in arms and "onehot" in arms]
    for i, (pos, label) in enumerate(present):
        # only the runs compared cap it
        pair = None if moving is None else [r for r in moving if run_pos.get(r) in (pos, "onehot")]
        judged = C.judge_crossing_ratio(arms[pos], arms["onehot"], at_most_weak=pair is None or bool(pair))
        others = 0 if pair is None else len(moving) - len(pair)
        subs.append(
            judged.subclaim(
                f"2{'ab'[i]}",
                f"{label} raises the data-complexity threshold",
                "crossing K, RoPE / one-hot (geometric mean of the per-seed ratios)",
                f"crossing K per seed: {pos} {C.crossing_text(arms[pos])} vs one-hot "
                f"{C.crossing_text(arms['onehot'])}; {plateau_note(pair, others)}",
                **common,
            )
        )
    final_icl = runs.groupby([POS, K])["final_icl"].mean()
    for i, (pos, label) in enumerate(present):
        both = [
            k
            for k in sorted(runs[K].unique())
            if final_icl.get((pos, k), 0) >= 0.5 and final_icl.get(("onehot", k), 0) >= 0.5
        ]
        if not both:
            for ids, what in (("cd", "delays the ICL onset"), ("ef", "weakens the induction pattern")):
                subs.append(
                    C.SubClaim(
                        f"2{ids[i]}",
                        f"{label} {what}",
                        "not tested",
                        notes="no K where both learned ICL",
                        **common,
                    )
                )
            continue
        k = both[-1]
        a = runs[(runs[POS] == "onehot") & (runs[K] == k)].set_index(S.seed_key(runs))
        b = runs[(runs[POS] == pos) & (runs[K] == k)].set_index(S.seed_key(runs))
        res = float(pd.concat([a["icl_resolution"], b["icl_resolution"]]).max())
        judged = C.judge_delay(a["icl_onset"], b["icl_onset"], res)
        per_seed = (b["icl_onset"] - a["icl_onset"]).dropna()
        plateau_d = b["icl_onset_plateau"].mean() - a["icl_onset_plateau"].mean()
        abs_d = b["steps_to_icl_half"].mean() - a["steps_to_icl_half"].mean()
        subs.append(
            judged.subclaim(
                f"2{'cd'[i]}",
                f"{label} delays the ICL onset",
                f"half-rise icl onset, RoPE minus one-hot, steps (K = {k})",
                f"per-seed delays {', '.join(f'{d:+.0f}' for d in per_seed)} steps; checkpoint spacing "
                f"{res:.0f} steps; leaving-the-plateau onset {plateau_d:+.0f} steps; steps to the absolute "
                f"level 0.5 {abs_d:+.0f} (mixes a lower ceiling with lateness)",
                **common,
            )
        )
        judged = C.judge_difference(a["final_ih"], b["final_ih"], expected="negative", min_effect=0.05)
        ph = b["final_prev_token_label"].mean() - a["final_prev_token_label"].mean()
        subs.append(
            judged.subclaim(
                f"2{'ef'[i]}",
                f"{label} weakens the induction pattern",
                f"final best-head ih, RoPE minus one-hot (K = {k})",
                f"final best PH-label {ph:+.3f}; RoPE's icl is also lower "
                f"({final_icl[(pos, k)]:.3f} vs {final_icl[('onehot', k)]:.3f})",
                **common,
            )
        )
    return sorted(subs, key=lambda sc: sc.id)


def judged_runs(runs: pd.DataFrame, csv: Path) -> list[C.SubClaim]:
    """The sub-claims of the per-run table ``runs`` (read from ``csv``; the still-moving runs
    come from the Markdown beside it)."""
    moving = C.moving_runs(runs, csv.parent / "claim2_positions.md")
    return subclaims(runs, dict(n_runs=len(runs), n_seeds=C.n_seeds(runs, [POS, K])), moving)


def report(done, args, command: str) -> Outcome:
    result = done.results[0]
    summary = S.final_values(result.table, [POS, K], suites=("icl", "iwl"))
    moving = C.still_moving(result.table)
    largest = summary[K].max()
    scores, runs = circuit_runs(done.grids[0], result, N_SEQS, workers=args.workers)
    positions = list(dict.fromkeys(result.table[POS]))
    min_step = done.grids[0].points()[0].config.train.stop_min_step
    budget = C.budget_text(done.steps(), min_step, runs["last_step"])
    lines = [
        "# Claim 2: position encoding vs the data-complexity threshold and the ICL circuit's onset",
        "",
        f"{budget}; final accuracy is mean [min, max] over seeds. "
        "'Steps to icl 0.5': first step where icl accuracy reaches 0.5 (the same level for every position "
        "type, so it compares runs that rise to different heights). Onsets: first crossing of half each "
        "run's own final rise (interpolated between checkpoints, every 25 steps up to step 2000); "
        "both are means over the seeds whose final icl >= 0.5; the induction (ih) and previous-token "
        "(PH-label) curves are "
        f"each run's best head (highest final value), scored on {N_SEQS} icl sequences per checkpoint. "
        f"Command: `.venv/bin/python analyses/claim2_positions.py`; wall time {done.timing()}.",
        "",
        "## Threshold K (smallest K with mean final icl >= 0.5)",
        "",
        *threshold_table(summary, runs, POS, K, value="final_icl", order=positions),
        "",
        moving_line(moving, result.table["run"].nunique()),
    ]
    onset = {c: over_learners(runs, [POS, K], c) for c in ONSETS}
    columns = {h: number_texts(onset[c]) for c, h in ONSETS.items()}
    columns |= {h: number_texts(runs.groupby([POS, K])[c].mean(), 3) for c, h in FINALS.items()}
    lines += ["", "## Final accuracy, onsets and end-of-training head scores", ""]
    lines += final_table(summary, [POS, K], extra=columns, order=positions)
    resolution = over_learners(runs, [POS, K], "icl_resolution", "max")  # spacing around each cell's onsets
    found = S.threshold(summary, K, by=[POS])
    lines += ["", "## Verdict", "", *verdict(found, onset["icl_onset"], largest, resolution)]
    lines += ["", "Verdicts with intervals: section 2 of `claims.json`."]

    k_max = int(largest)
    titles = [
        "final icl vs K",
        f"icl accuracy over training (K={k_max})",
        f"best-head induction strength (K={k_max})",
    ]
    fig = panels(titles)
    add_values_by_suite(
        fig, summary, K, POS, ("icl",), values=positions, colours=POSITION_COLOURS, name=str, legendgroup=True
    )
    for col, metric in ((2, "accuracy"), (3, "ih")):
        add_curves_by(fig, scores[scores[K] == k_max], POS, metric, col, positions, POSITION_COLOURS)
    fig.update_xaxes(type="log", title_text="K", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    common = sweep_evidence(done, command)
    return Outcome(
        lines,
        fig,
        "Claim 2: one-hot / learned APE vs correct / published RoPE (one line per seed)",
        lambda wall: subclaims(runs, {**common, "wall_time_s": wall}, moving),
        csv={SCRIPT.runs_csv: runs.assign(still_moving=runs["run"].isin(moving))},
        width=1500,
    )


SCRIPT = ClaimScript(
    "claim2_positions", "2", TITLE, __doc__, GRIDS, report, judge=judged_runs, one_grid="position type x K"
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
