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
import sys
import time
from pathlib import Path

import pandas as pd
from plotly.subplots import make_subplots

from mmicl_interp.analyses.correlation import (
    crossing_step,
    head_table,
    ih_icl_correlation,
    model_curve,
    phases,
)
from mmicl_interp.analyses.tables import circuit_scores_runs
from mmicl_interp.sweep import Grid, SweepResult
from mmicl_interp.sweep.claims import (
    Section,
    SubClaim,
    budget_text,
    command_line,
    crossing_text,
    judge_crossing_ratio,
    judge_delay,
    judge_difference,
    moving_runs,
    n_seeds,
    n_unique_configs,
    still_moving,
    write_section,
)
from mmicl_interp.sweep.summary import (
    claim_parser,
    final_values,
    format_threshold,
    markdown_table,
    rejudge_from_results,
    run_grids,
    seed_crossings,
    seed_key,
    spread_trace,
    threshold,
    wide,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / "claim2_positions.toml"]
POS, K = "model.positions", "task.K"
COLOURS = {"onehot": "#1f77b4", "learned": "#2ca02c", "rope": "#d62728", "rope_paper": "#ff7f0e"}
N_SEQS = 500
"""icl sequences scored per checkpoint for the head measures."""


def run_circuits(
    grid: Grid, result: SweepResult, n_seqs: int = N_SEQS, workers: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run's checkpoint scores on the icl suite (``workers`` runs at a time), and per run one
    row of onsets and final scores."""
    tables, rows = [], []
    dirs = [pr.run_dir for pr in result.results]
    every = circuit_scores_runs(dirs, workers=workers, suites=["icl"], n_seqs=n_seqs)
    for point, scores in zip(grid.points(), every, strict=True):
        tables.append(scores.assign(**point.values))
        phase = phases(scores).iloc[0].to_dict()
        plateau = phases(scores, rule="plateau").iloc[0]
        for what in ("icl", "induction", "prev_token"):
            phase[f"{what}_onset_plateau"] = plateau[f"{what}_onset"]
        last = int(scores["step"].max())
        final = scores[scores["step"] == last]
        phase.update(point.values)
        phase["last_step"] = last  # below train.steps where train.stop_plateau stopped the run
        icl = model_curve(scores)
        phase["final_icl"] = float(icl.iloc[-1])
        phase["steps_to_icl_half"] = crossing_step(icl.index.to_numpy(), icl.to_numpy(), 0.5)
        for measure, column in (("ih", "final_ih"), ("prev_token_label", "final_prev_token_label")):
            phase[column] = float(final[final["metric"] == measure]["value"].max())
        best = ih_icl_correlation(scores).query("best").iloc[0]  # moving-block bootstrap, block from the acf
        phase.update(
            ih_icl_r=float(best["pearson"]),
            ih_icl_lo=float(best["pearson_lo"]),
            ih_icl_hi=float(best["pearson_hi"]),
            ih_icl_block=int(best["block"]),
        )
        rows.append(phase)
    return pd.concat(tables, ignore_index=True), pd.DataFrame(rows)


def mean_over_learners(runs: pd.DataFrame, column: str) -> pd.Series:
    """Mean of ``column`` per (positions, K) over the runs whose final icl reached 0.5."""
    learners = runs[runs["final_icl"] >= 0.5]
    return learners.groupby([POS, K])[column].mean()


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
            f"- Under {label}: threshold K {format_threshold(t, largest)} vs one-hot "
            f"{format_threshold(base_t, largest)} ({'raised' if raised else 'not raised'}); "
            f"icl onset vs one-hot: {delay_text} "
            f"({'delayed' if delayed else f'not delayed at every K{within}'}). "
            f"Claim 2 {'holds' if raised and delayed else 'holds in part' if raised or delayed else 'fails'}."
        )
    return lines


VARIANTS = (("rope", "correct RoPE"), ("rope_paper", "published RoPE"))
TITLE = "RoPE raises the threshold and delays ICL; weaker patterns"
RUNS_CSV = "claim2_positions_runs.csv"


def subclaims(runs: pd.DataFrame, common: dict, moving: list[str] | None) -> list[SubClaim]:
    """Claim 2's sub-claims per RoPE variant against one-hot APE, from the per-run table alone
    (``runs``: one row per run with its positions, K, seed, final icl, onsets and final head
    scores; the columns of ``claim2_positions_runs.csv``), seed by seed: the threshold raised
    (a-b: the paired per-seed log ratio of the crossing K, with the grid rule), the icl onset
    delayed (c-d: paired per-seed onset differences, with the delay rule), the induction
    pattern weaker (e-f: paired per-seed final ih). ``moving``: the runs still moving at the
    end (None: not known), which cap the verdicts of the arms they belong to at weak."""
    run_pos = dict(zip(runs["run"], runs[POS], strict=False))
    crossings = seed_crossings(runs, K, by=[POS], value="final_icl")
    arms = {pos: part for pos, part in crossings.groupby(POS)}

    def moving_note(pair: list[str] | None) -> str:
        if pair is None:
            return "whether the runs are at a plateau is not known here: verdict capped at weak"
        others = len(moving) - len(pair)
        elsewhere = f"; {others} run(s) of other position types still moving" if others else ""
        if pair:
            return (
                f"{len(pair)} of the compared runs still moving at the end (icl changed >= 0.01 over the "
                f"last 20%): verdict capped at weak{elsewhere}"
            )
        return f"every compared run at a plateau (icl changed < 0.01 over the last 20%){elsewhere}"

    subs: list[SubClaim] = []
    present = [(pos, label) for pos, label in VARIANTS if pos in arms and "onehot" in arms]
    for i, (pos, label) in enumerate(present):
        # only the runs compared cap it
        pair = None if moving is None else [r for r in moving if run_pos.get(r) in (pos, "onehot")]
        judged = judge_crossing_ratio(arms[pos], arms["onehot"], at_most_weak=pair is None or bool(pair))
        subs.append(
            judged.subclaim(
                f"2{'ab'[i]}",
                f"{label} raises the data-complexity threshold",
                "crossing K, RoPE / one-hot (geometric mean of the per-seed ratios)",
                f"crossing K per seed: {pos} {crossing_text(arms[pos])} vs one-hot "
                f"{crossing_text(arms['onehot'])}; {moving_note(pair)}",
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
                    SubClaim(
                        f"2{ids[i]}",
                        f"{label} {what}",
                        "not tested",
                        notes="no K where both learned ICL",
                        **common,
                    )
                )
            continue
        k = both[-1]
        a = runs[(runs[POS] == "onehot") & (runs[K] == k)].set_index(seed_key(runs))
        b = runs[(runs[POS] == pos) & (runs[K] == k)].set_index(seed_key(runs))
        res = float(pd.concat([a["icl_resolution"], b["icl_resolution"]]).max())
        judged = judge_delay(a["icl_onset"], b["icl_onset"], res)
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
        judged = judge_difference(a["final_ih"], b["final_ih"], expected="negative", min_effect=0.05)
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


def from_results(args) -> None:
    """``--from-results``: section 2 of claims.json re-judged from the per-run CSV alone."""
    rejudge_from_results(args, RUNS_CSV, "2", TITLE, "claim2_positions", judged_runs)


def judged_runs(runs: pd.DataFrame, csv: Path) -> list[SubClaim]:
    """The sub-claims of the per-run table ``runs`` (read from ``csv``; the still-moving runs
    come from the Markdown beside it)."""
    moving = moving_runs(runs, csv.parent / "claim2_positions.md")
    return subclaims(runs, dict(n_runs=len(runs), n_seeds=n_seeds(runs, [POS, K])), moving)


def main(argv: list[str] | None = None) -> None:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results", from_results=RUNS_CSV)
    args = parser.parse_args(argv)
    if args.from_results is not None:
        from_results(args)
        return
    if len(args.grid) != 1:
        parser.error(f"--grid: this script reads one grid (position type x K), got {len(args.grid)}")
    done = run_grids(args.grid, args.runs, args.workers)
    result = done.results[0]
    summary = final_values(result.table, [POS, K], suites=("icl", "iwl"))
    found = threshold(summary, K, by=[POS])
    crossing = threshold(summary, K, by=[POS], interpolate=True)
    moving = still_moving(result.table)
    largest = summary[K].max()
    scores, runs = run_circuits(done.grids[0], result, workers=args.workers)
    per_seed = {p: part for p, part in seed_crossings(runs, K, by=[POS], value="final_icl").groupby(POS)}
    positions = list(dict.fromkeys(result.table[POS]))
    min_step = done.grids[0].points()[0].config.train.stop_min_step
    budget = budget_text(done.steps(), min_step, runs["last_step"])
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
    ]
    lines += markdown_table(
        [
            "positions",
            "threshold K",
            "crossing K (log-interpolated)",
            "crossing K per seed [95% t], grid cell",
        ],
        [
            [
                p,
                format_threshold(found[p], largest),
                format_threshold(crossing[p], largest),
                crossing_text(per_seed[p]),
            ]
            for p in positions
        ],
    )
    lines += [
        "",
        f"Runs still moving at the end (icl changed by >= 0.01 over the last 20% of training): "
        f"{len(moving)} of {result.table['run'].nunique()}"
        + (f" ({', '.join(moving[:10])}{', ...' if len(moving) > 10 else ''})." if moving else "."),
    ]
    table = wide(summary, [POS, K]).set_index([POS, K])
    onset = {
        c: mean_over_learners(runs, c)
        for c in (
            "steps_to_icl_half",
            "icl_onset",
            "induction_onset",
            "prev_token_onset",
            "icl_onset_plateau",
            "induction_onset_plateau",
        )
    }
    finals = {c: runs.groupby([POS, K])[c].mean() for c in ("final_ih", "final_prev_token_label")}
    body = []
    for pos in positions:
        for k in sorted(summary[K].unique()):
            cells = [f"{onset[c].get((pos, k), math.nan):.0f}" for c in onset]
            cells = ["-" if c == "nan" else c for c in cells]
            body.append(
                [pos, k, table.loc[(pos, k), "icl"], table.loc[(pos, k), "iwl"], *cells]
                + [f"{finals[c][(pos, k)]:.3f}" for c in finals]
            )
    lines += ["", "## Final accuracy, onsets and end-of-training head scores", ""]
    lines += markdown_table(
        [
            "positions",
            "K",
            "icl",
            "iwl",
            "steps to icl 0.5",
            "icl onset",
            "ih onset",
            "PH onset",
            "icl leaves plateau",
            "ih leaves plateau",
            "final ih",
            "final PH-label",
        ],
        body,
    )
    learners = runs[runs["final_icl"] >= 0.5]
    resolution = learners.groupby([POS, K])["icl_resolution"].max()  # spacing around each cell's onsets
    lines += ["", "## Verdict", "", *verdict(found, onset["icl_onset"], largest, resolution)]
    lines += ["", "Verdicts with intervals: section 2 of `claims.json`."]

    k_max = int(largest)
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=[
            "final icl vs K",
            f"icl accuracy over training (K={k_max})",
            f"best-head induction strength (K={k_max})",
        ],
    )
    for pos in positions:
        colour = dict(color=COLOURS.get(pos, "#7f7f7f"))
        rows = summary[(summary[POS] == pos) & (summary["suite"] == "icl")]
        fig.add_trace(spread_trace(rows, K, pos, line=colour, legendgroup=pos), row=1, col=1)
        for col, metric in ((2, "accuracy"), (3, "ih")):
            part = scores[(scores[POS] == pos) & (scores[K] == k_max)]
            for i, (_, run) in enumerate(part.groupby("run")):
                if metric == "accuracy":
                    curve = model_curve(run)
                else:
                    heads = head_table(run, "ih")
                    curve = heads[heads.iloc[-1].idxmax()]
                fig.add_scatter(
                    x=curve.index,
                    y=curve.values,
                    name=pos,
                    legendgroup=pos,
                    showlegend=False,
                    mode="lines",
                    line=colour,
                    opacity=1.0 if i == 0 else 0.5,
                    row=1,
                    col=col,
                )
    fig.update_xaxes(type="log", title_text="K", row=1, col=1)
    fig.update_xaxes(title_text="step", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    write_results(
        args.out,
        "claim2_positions",
        lines,
        fig,
        title="Claim 2: one-hot / learned APE vs correct / published RoPE (one line per seed)",
        width=1500,
        png=not args.no_png,
        csv={RUNS_CSV: runs.assign(still_moving=runs["run"].isin(moving))},
    )
    command = command_line("claim2_positions", argv)
    wall = done.compute_s(time.perf_counter() - t0)  # recorded training time + analysis
    common = dict(
        n_runs=len(result.results),
        n_unique_configs=n_unique_configs([r.run_dir for r in result.results]),
        n_seeds=n_seeds(result.table),
        steps=done.steps(),
        command=command,
        wall_time_s=wall,
    )
    write_section(
        Path(args.out) / "claims.json", Section("2", TITLE, subclaims(runs, common, moving), command, wall)
    )


if __name__ == "__main__":
    main()
