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

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mmicl_interp.analyses.correlation import crossing_step, model_curve, phases
from mmicl_interp.analyses.tables import checkpoint_rows
from mmicl_interp.analyses.tidy import tidy_table
from mmicl_interp.runs import load_run
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.claims import Judgement, judge_delay
from mmicl_interp.sweep.summary import markdown_table
from mmicl_interp.train.clamp import Clamp, clamped

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "analyses" / "grids" / "head_clamping.toml"
ARM = "train.clamp_pattern"
CONTROL, CLAMPED = "none", "prev_token"
N_SEQS = 500
"""icl sequences scored per checkpoint."""
STEM = "head_clamping"


def run_scores(run_dir: Path, name: str, n_seqs: int) -> pd.DataFrame:
    """The tidy icl-suite table of one run's checkpoints, each scored with the clamp on where the
    clamp covered that step in training (prev_token: the same pattern for every sequence)."""
    run = load_run(run_dir)
    clamp = Clamp.from_config(run.config.train)
    if clamp is not None and clamp.needs_batch:
        raise SystemExit(f"{run_dir}: this script scores prev_token clamps only, got {clamp.pattern}")
    icl = {"icl": run.suites(n_seqs)["icl"]}
    rows: list[dict] = []
    for step in run.steps:
        model = run.model(step)
        on = clamp if clamp is not None and clamp.active(step) else None
        with clamped(model, on, run.layout):
            rows += checkpoint_rows(model, icl, run.layout, run=name, step=step, measure_suites=("icl",))
    return tidy_table(rows)


def run_row(scores: pd.DataFrame, clamp_layer: int) -> dict:
    """Onsets and final values of one run; the induction head is sought after the clamped layer."""
    later = scores[(scores["metric"] != "ih") | (scores["layer"] > clamp_layer)]
    phase = phases(later).iloc[0].to_dict()
    icl = model_curve(scores)
    last = int(scores["step"].max())
    final = scores[scores["step"] == last]

    def head_value(metric: str, layer: int, step: int) -> float:
        part = scores[(scores["metric"] == metric) & (scores["layer"] == layer) & (scores["step"] == step)]
        return float(part["value"].max())

    return {
        "induction_layer": phase["induction_layer"],
        "induction_onset": phase["induction_onset"],
        "induction_resolution": phase["induction_resolution"],
        "icl_onset": phase["icl_onset"],
        "icl_resolution": phase["icl_resolution"],
        "prev_token_onset": phase["prev_token_onset"],
        "steps_to_icl_half": crossing_step(icl.index.to_numpy(), icl.to_numpy(), 0.5),
        "first_icl": float(icl.iloc[0]),
        "final_icl": float(icl.iloc[-1]),
        "final_ih": float(final[(final["metric"] == "ih") & (final["layer"] > clamp_layer)]["value"].max()),
        "prev_token_label_l0_first": head_value("prev_token_label", clamp_layer, 0),
        "prev_token_label_l0_final": head_value("prev_token_label", clamp_layer, last),
        "last_step": last,
    }


def judge(runs: pd.DataFrame) -> dict[str, tuple[Judgement, float]]:
    """Per measure: the paired delay judgement (control minus clamped, by seed) and its spacing."""
    out = {}
    for column, resolution in (
        ("induction_onset", "induction_resolution"),
        ("icl_onset", "icl_resolution"),
        ("steps_to_icl_half", "icl_resolution"),
    ):
        arms = {arm: part.set_index("seed")[column] for arm, part in runs.groupby(ARM)}
        resolutions = runs[resolution].to_numpy(dtype=float)
        spacing = float(np.nanmax(resolutions)) if np.isfinite(resolutions).any() else math.nan
        out[column] = (judge_delay(arms[CLAMPED], arms[CONTROL], spacing), spacing)
    return out


def _fmt(values: pd.Series, digits: int = 0) -> str:
    v = values.dropna().to_numpy(dtype=float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.{digits}f} [{v.min():.{digits}f}, {v.max():.{digits}f}]"


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
    rows = []
    for arm, part in runs.groupby(ARM, sort=False):
        rows.append(
            [
                arm,
                str(len(part)),
                _fmt(part["prev_token_label_l0_first"], 3),
                _fmt(part["prev_token_label_l0_final"], 3),
                _fmt(part["induction_onset"]),
                _fmt(part["icl_onset"]),
                _fmt(part["steps_to_icl_half"]),
                _fmt(part["final_ih"], 3),
                _fmt(part["final_icl"], 3),
            ]
        )
    lines += markdown_table(
        [
            "clamp",
            "runs",
            "layer-0 PH-label, step 0",
            "layer-0 PH-label, final",
            "ih onset",
            "icl onset",
            "steps to icl 0.5",
            "final ih",
            "final icl",
        ],
        rows,
    )
    lines += ["", "## Per seed: control minus clamped (steps; > 0: the clamped run is earlier)", ""]
    wide = runs.pivot(index="seed", columns=ARM)
    seed_rows = []
    for seed in wide.index:
        cells = [str(seed)]
        for column in verdicts:
            d = wide.loc[seed, (column, CONTROL)] - wide.loc[seed, (column, CLAMPED)]
            cells.append("n/a" if math.isnan(d) else f"{d:+.0f}")
        seed_rows.append(cells)
    lines += markdown_table(["seed", *verdicts], seed_rows)
    lines += ["", "## Verdicts (paired t over seeds, delay rule)", ""]
    texts = {
        "induction_onset": "Clamping the previous-token head makes the induction head form earlier",
        "icl_onset": "Clamping the previous-token head makes icl rise earlier (half-rise onset)",
        "steps_to_icl_half": "Clamping the previous-token head makes icl reach 0.5 earlier",
    }
    verdict_rows = []
    for column, (j, spacing) in verdicts.items():
        interval = "n/a" if j.interval is None else f"[{j.interval[0]:+.0f}, {j.interval[1]:+.0f}]"
        effect = "n/a" if j.effect is None or math.isnan(j.effect) else f"{j.effect:+.0f}"
        verdict_rows.append([texts[column], effect, interval, f"{spacing:.0f}", j.verdict, j.note])
    lines += markdown_table(
        ["hypothesis", "speed-up (steps)", "95% interval", "spacing", "verdict", "rule"], verdict_rows
    )
    return lines


def scored(done, args, command: str) -> Outcome:
    t0 = time.perf_counter()
    grid, result = done.grids[0], done.results[0]
    rows = []
    for point, pr in zip(grid.points(), result.results, strict=True):
        scores = run_scores(pr.run_dir, point.name, args.n_seqs)
        row = {"run": point.name, **point.values, **run_row(scores, point.config.train.clamp_layer)}
        rows.append(row)
        print(f"{point.name}: ih onset {row['induction_onset']:.0f}, icl onset {row['icl_onset']:.0f}")
    runs = pd.DataFrame(rows)
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
