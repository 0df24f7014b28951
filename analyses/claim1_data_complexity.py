"""Claim 1 (SCIENCE.md section 6): ICL needs data complexity; small K gives IWL.

Four sweeps of the default config, three seeds each (the grids' ``seed`` axis: task, model
and training seeds together): the number of classes K from 2^5 to 2^13 (``grids/claim1_K.toml``);
burstiness B (``grids/claim1_B.toml``) and within-class noise eps (``grids/claim1_eps.toml``)
at K = 128, just below the K transition; and Zipf alpha in {0, 1} at K = 256, 512 and 1024
(``grids/claim1_alpha.toml``). Writes final icl / iwl / icl_flip accuracy per point, icl
relative to the context-label plateau and each seed's crossing K to
``analyses/results/claim1_data_complexity.md``, one figure (HTML; PNG with kaleido), every run's
row to ``claim1_data_complexity_runs.csv``, and the verdicts to section "1" of
``analyses/results/claims.json``. Each run is scored on its own icl suite (its own B), and the B
and eps runs also on a common B = 2 icl suite (``Run.suites(n, B=2)``: every run faces the same
context-label plateau 1/(N/2)), with the best head's induction strength ``ih`` on it. The method
(pairing by seed, intervals, the plateau): :mod:`mmicl_interp.sweep.unimodal_claims` and
:mod:`mmicl_interp.sweep.unimodal_report`. ``--from-results`` re-judges section 1 from
``claim1_data_complexity_runs.csv`` alone.

    .venv/bin/python analyses/claim1_data_complexity.py [--grid FILE ...] [--out DIR] [--workers N]
    .venv/bin/python analyses/claim1_data_complexity.py --from-results [CSV]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep import unimodal_claims as U
from mmicl_interp.sweep import unimodal_report as R
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.figures import accuracy_axes, panels
from mmicl_interp.sweep.measures import grid_evidence, plateau_runs_table

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / f"claim1_{part}.toml" for part in ("K", "B", "eps", "alpha")]
SUITES = ("icl", "iwl", "icl_flip")
COMMON_B = 2
"""The burstiness of the common icl suite every B and eps run is also scored on."""
N_COMMON = 500
"""Sequences of the common suite per run."""
TASK_KEYS = ("task.K", "task.B", "task.eps", "task.alpha")
"""The data-complexity keys the claim-1 sweeps vary."""
COMMON_SWEEPS = (["task.B"], ["task.eps"])
"""The sweeps (swept keys) whose runs are also scored on the common suite."""
TITLE = "ICL needs data complexity (K, B, eps, Zipf alpha)"


def subclaims(runs: pd.DataFrame, evidence: dict[str, dict] | None = None) -> list[C.SubClaim]:
    """Sub-claims 1a-1f from the per-run table of whichever of the K / B / eps / alpha grids were
    run (``claim1_data_complexity_runs.csv``: a ``grid`` column, the swept keys, the seed, icl,
    iwl, icl_rel, plateau, and for B / eps icl_b2, ih_b2, icl_b2_rel on the common B = 2 suite),
    paired by seed. ``evidence[grid]``: the fields the table cannot give (unique configs, steps,
    command, wall time)."""
    subs, common_suite = [], []
    for name, part in U.sweep_parts(runs, ["task.K", "task.B"]):
        keys = [k for k in TASK_KEYS if k in part.columns]
        common = U.run_counts(part, keys, (evidence or {}).get(name))
        if keys == ["task.K"]:  # 1a: final icl at the largest K minus the smallest
            subs.append(U.k_extremes_subclaim("1a", part, common, min_effect=0.2))
        elif keys in COMMON_SWEEPS:  # 1b / 1c: mean icl_rel at the largest B / best eps; 1e / 1f: B = 2
            ids = ("1b", "1e") if keys == ["task.B"] else ("1c", "1f")
            own, shared = U.cue_subclaims(ids, keys[0], part, common, min_effect=0.1, common_B=COMMON_B)
            subs.append(own)
            common_suite += [shared] if shared else []
        elif set(keys) == {"task.alpha", "task.K"}:  # 1d: iwl, Zipf minus uniform, where Zipf learns ICL
            subs.append(U.zipf_subclaim("1d", part, common, min_effect=0.1))
    return subs + common_suite


def report(done, args, command: str) -> Outcome:
    lines, every, evidence = R.complexity_intro(done), [], {}
    fig = panels([g.name for g in done.grids])
    for col, (grid, result) in enumerate(zip(done.grids, done.results, strict=True), start=1):
        keys = S.swept_keys(result.table, exclude=C.SEED_KEYS)
        runs = plateau_runs_table(grid, result, COMMON_B if keys in COMMON_SWEEPS else None, N_COMMON)
        every.append(runs)
        evidence[grid.name] = grid_evidence(grid, result, command)
        lines += R.complexity_section(grid, result.table, runs, keys, SUITES, fig, col)
    accuracy_axes(fig)
    runs = pd.concat(every, ignore_index=True)
    title = "Claim 1: icl and iwl vs data complexity (error bars: min/max over seeds)"
    return Outcome(lines, fig, title, R.with_wall(subclaims, runs, evidence), csv={SCRIPT.runs_csv: runs})


SCRIPT = ClaimScript(
    "claim1_data_complexity", "1", TITLE, __doc__, GRIDS, report, judge=lambda runs, _csv: subclaims(runs)
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
