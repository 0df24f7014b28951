"""Claim 1 (SCIENCE.md section 6): ICL needs data complexity; small K gives IWL.

Four sweeps of the default config, three seeds each (the grids' ``seed`` axis: task, model
and training seeds together): the number of classes K from 2^5 to 2^13 (``grids/claim1_K.toml``);
burstiness B (``grids/claim1_B.toml``) and within-class noise eps (``grids/claim1_eps.toml``)
at K = 128, just below the K transition; and Zipf alpha in {0, 1} at K = 256, 512 and 1024
(``grids/claim1_alpha.toml``). Writes final icl / iwl / icl_flip accuracy per point (mean
[min, max] over seeds), icl relative to the context-label plateau ``(acc - B/N) / (1 - B/N)``
(0 = copying a random context label, :func:`~mmicl_interp.analyses.stats.icl_relative`), and
each seed's crossing K (geometric mean with a t interval, and its grid cell) to
``analyses/results/claim1_data_complexity.md``, one figure (HTML; PNG with kaleido), every run's
row to ``claim1_data_complexity_runs.csv``, and the verdicts to section "1" of
``analyses/results/claims.json`` (:mod:`mmicl_interp.sweep.claims`: values compared across a
key are paired by seed, paired t; a mean over seeds gets a t interval). Each run is scored on
its own icl suite (its own B), and the B and eps runs also on a common B = 2 icl suite
(``Run.suites(n, B=2)``: the same stored task and eval seed, so every run faces the same
context-label plateau 1/(N/2)), with the best head's induction strength ``ih`` on it.
``--from-results`` re-judges section 1 from ``claim1_data_complexity_runs.csv`` alone.

    .venv/bin/python analyses/claim1_data_complexity.py [--grid FILE ...] [--out DIR] [--workers N]
    .venv/bin/python analyses/claim1_data_complexity.py --from-results [CSV]
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.figures import accuracy_axes, add_suites_by_group, panels
from mmicl_interp.sweep.measures import (
    final_table,
    fixed_text,
    grid_evidence,
    plateau_runs_table,
    spread_texts,
    threshold_rows,
)

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
    iwl, icl_rel, plateau, and for B / eps icl_b2, ih_b2, icl_b2_rel on the common B = 2 suite).
    Values compared across a key are paired by seed (the seeds share task and data stream: paired
    t); a mean over seeds gets the t interval. ``evidence[grid]``: the fields the table cannot
    give (unique configs, steps, command, wall time)."""
    subs = []
    common_suite: list[C.SubClaim] = []
    for name, part in runs.groupby("grid", sort=False):
        part = S.whole_numbers(
            part.dropna(axis=1, how="all"), ["task.K", "task.B"]
        )  # the other sweeps' columns
        keys = [k for k in TASK_KEYS if k in part.columns]
        seed = S.seed_key(part)
        common = dict(n_runs=len(part), n_seeds=C.n_seeds(part, keys), **(evidence or {}).get(name, {}))

        def at(column: str, key: str, value, rows: pd.DataFrame = part, seed: str = seed) -> pd.Series:
            """``column`` of the runs at ``key == value``, indexed by seed (for pairing)."""
            return rows[rows[key] == value].set_index(seed)[column]

        if keys == ["task.K"]:
            k = part["task.K"]
            judged = C.judge_difference(
                at("icl", "task.K", k.min()), at("icl", "task.K", k.max()), min_effect=0.2
            )
            crossings = S.seed_crossings(part, "task.K", value="icl")
            small = part[k == k.min()]
            subs.append(
                judged.subclaim(
                    "1a",
                    "small K gives IWL, large K gives ICL",
                    f"final icl, K = {k.max()} minus K = {k.min()}",
                    f"icl crosses 0.5 at K {C.crossing_text(crossings)} per seed; at K = {k.min()} iwl "
                    f"{small['iwl'].mean():.3f}, icl {small['icl'].mean():.3f}",
                    **common,
                )
            )
        elif keys in (["task.B"], ["task.eps"]):
            key = keys[0]
            means = part.groupby(key)["icl_rel"].mean()
            best = means.idxmax() if key == "task.eps" else part[key].max()
            top = part[part[key] == best]
            after_the_fact = key == "task.eps"  # the best of several eps: selection inflates it
            what = "burstiness" if key == "task.B" else "within-class noise"
            chosen = (
                "the largest B" if key == "task.B" else "the eps with the highest mean, chosen after the fact"
            )
            lowest = part[part[key] == part[key].min()]
            judged = C.judge_mean(top["icl_rel"], min_effect=0.1, at_most_weak=after_the_fact)
            subs.append(
                judged.subclaim(
                    "1b" if key == "task.B" else "1c",
                    f"{what} moves a model to ICL",
                    f"icl relative to the context-label plateau at {S.short(key)} = {best} ({chosen})",
                    f"raw icl {lowest['icl'].mean():.3f} -> {top['icl'].mean():.3f} and iwl "
                    f"{lowest['iwl'].mean():.3f} -> {top['iwl'].mean():.3f} from {S.short(key)} = "
                    f"{part[key].min()} to {best}; plateau B/N = {top['plateau'].iloc[0]:.3f}",
                    **common,
                )
            )
            if "icl_b2_rel" not in part:
                continue
            judged = C.judge_mean(top["icl_b2_rel"], min_effect=0.1, at_most_weak=after_the_fact)
            per_value = part.groupby(key)[["icl_b2", "ih_b2"]].mean()
            common_suite.append(
                judged.subclaim(
                    "1e" if key == "task.B" else "1f",
                    f"{what} moves a model to ICL, scored on one common B = {COMMON_B} icl suite",
                    f"icl on the common B = {COMMON_B} suite relative to its context-label plateau "
                    f"({COMMON_B}/N), at {S.short(key)} = {best} ({chosen})",
                    "per value (icl, best ih) on the common suite: "
                    + "; ".join(
                        f"{S.short(key)} = {v}: {r['icl_b2']:.3f}, {r['ih_b2']:.3f}"
                        for v, r in per_value.iterrows()
                    )
                    + f"; its plateau is {COMMON_B}/N",
                    **common,
                )
            )
        elif set(keys) == {"task.alpha", "task.K"}:
            zipf = part[part["task.alpha"] == part["task.alpha"].max()]
            uniform = part[part["task.alpha"] == part["task.alpha"].min()]
            icl_k = zipf.groupby("task.K")["icl"].mean()
            learned = icl_k[icl_k >= 0.5]
            below = ", ".join(
                f"K = {kk}: icl {v:.3f}, iwl {zipf[zipf['task.K'] == kk]['iwl'].mean():.3f}"
                for kk, v in icl_k.items()
                if v < 0.5
            )
            text = "Zipf alpha ~ 1 lets ICL and IWL coexist"
            notes = f"Zipf runs below icl 0.5 are IWL, not coexistence ({below or 'none'})"
            if learned.empty:
                subs.append(
                    C.SubClaim(
                        "1d", text, "not tested", notes=f"no K with Zipf icl >= 0.5; {notes}", **common
                    )
                )
                continue
            kk = learned.index.min()
            judged = C.judge_difference(
                at("iwl", "task.K", kk, uniform), at("iwl", "task.K", kk, zipf), min_effect=0.1
            )
            subs.append(
                judged.subclaim(
                    "1d",
                    text,
                    f"iwl, Zipf minus uniform, at K = {kk}, the smallest K where Zipf icl >= 0.5 "
                    f"({learned[kk]:.3f})",
                    notes,
                    **common,
                )
            )
    return subs + common_suite


def report(done, args, command: str) -> Outcome:
    lines = [
        "# Claim 1: data complexity (K, B, eps, Zipf alpha)",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point; "
        "chance 1/L = 0.031. 'icl rel. to plateau': (icl - B/N) / (1 - B/N), 0 when the model only "
        "copies a random context label, 1 when perfect. Command: "
        f"`.venv/bin/python analyses/claim1_data_complexity.py`; wall time {done.timing()}.",
    ]
    fig = panels([g.name for g in done.grids])
    every, evidence = [], {}
    for col, (grid, result) in enumerate(zip(done.grids, done.results, strict=True), start=1):
        keys = S.swept_keys(result.table, exclude=C.SEED_KEYS)
        summary = S.final_values(result.table, keys, suites=SUITES)
        common = COMMON_B if keys in COMMON_SWEEPS else None
        runs = plateau_runs_table(grid, result, common, N_COMMON)
        every.append(runs)
        evidence[grid.name] = grid_evidence(grid, result, command)
        fixed = fixed_text(grid)
        lines += ["", f"## {', '.join(S.short(k) for k in keys)}" + (f" (at {fixed})" if fixed else ""), ""]
        rel = {"icl rel. to plateau": spread_texts(runs, keys, "icl_rel")}
        lines += final_table(summary, keys, SUITES, rel)
        if keys == ["task.K"]:
            ((k, k_log, crossings),) = threshold_rows(summary, runs, "task.K")
            lines += [
                "",
                f"Smallest K with mean icl >= 0.5: {k} (log-interpolated crossing: K = {k_log}; each "
                f"seed's own crossing: {crossings}).",
            ]
        add_suites_by_group(fig, summary, keys[0], keys[1:], col, legend=col == 1, log_x=keys[0] == "task.K")
    accuracy_axes(fig)
    runs = pd.concat(every, ignore_index=True)

    def judged(wall: float) -> list[C.SubClaim]:
        return subclaims(runs, {name: {**fields, "wall_time_s": wall} for name, fields in evidence.items()})

    return Outcome(
        lines,
        fig,
        "Claim 1: icl and iwl vs data complexity (error bars: min/max over seeds)",
        judged,
        csv={SCRIPT.runs_csv: runs},
    )


SCRIPT = ClaimScript(
    "claim1_data_complexity", "1", TITLE, __doc__, GRIDS, report, judge=lambda runs, _csv: subclaims(runs)
)
main = SCRIPT.main

if __name__ == "__main__":
    main()
