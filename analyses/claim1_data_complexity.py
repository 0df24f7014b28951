"""Claim 1 (SCIENCE.md section 6): ICL needs data complexity; small K gives IWL.

Four sweeps of the default config, three seeds each (the grids' ``seed`` axis: task, model
and training seeds together): the number of classes K from 2^5 to 2^13 (``grids/claim1_K.toml``);
burstiness B (``grids/claim1_B.toml``) and within-class noise eps (``grids/claim1_eps.toml``)
at K = 128, just below the K transition; and Zipf alpha in {0, 1} at K = 256, 512 and 1024
(``grids/claim1_alpha.toml``). Writes final icl / iwl / icl_flip accuracy per point (mean
[min, max] over seeds), icl relative to the context-label plateau ``(acc - B/N) / (1 - B/N)``
(0 = copying a random context label, :func:`~mmicl_interp.analyses.stats.icl_relative`), and
the crossing K with a seed-bootstrap interval to ``analyses/results/claim1_data_complexity.md``,
one figure (HTML; PNG with kaleido), and the verdicts to section "1" of
``analyses/results/claims.json`` (:mod:`mmicl_interp.sweep.claims`). Each run is scored on
its own icl suite (its own B), and the B and eps runs also on a common B = 2 icl suite
(``Run.suites(n, B=2)``: the same stored task and eval seed, so every run faces the same
context-label plateau 1/(N/2)), with the best head's induction strength ``ih`` on it.

    .venv/bin/python analyses/claim1_data_complexity.py [--grid FILE ...] [--out DIR] [--workers N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
from plotly.subplots import make_subplots

from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.stats import icl_relative
from mmicl_interp.runs import load_run
from mmicl_interp.sweep import Grid, SweepResult
from mmicl_interp.sweep.claims import (
    SEED_KEYS,
    Section,
    SubClaim,
    bootstrap_difference,
    command_line,
    final_per_run,
    n_seeds,
    n_unique_configs,
    verdict,
    write_section,
)
from mmicl_interp.sweep.summary import (
    claim_parser,
    final_values,
    format_threshold,
    format_threshold_interval,
    markdown_table,
    run_grids,
    short,
    spread,
    spread_trace,
    swept_keys,
    threshold,
    threshold_bootstrap,
    wide,
    write_results,
)
from mmicl_interp.train.evaluate import accuracy_and_loss, suite_logits

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / f"claim1_{part}.toml" for part in ("K", "B", "eps", "alpha")]
SUITES = ("icl", "iwl", "icl_flip")
COLOURS = {"icl": "#1f77b4", "iwl": "#d62728"}
DASHES = ("solid", "dash", "dot", "dashdot")
COMMON_B = 2
"""The burstiness of the common icl suite every B and eps run is also scored on."""
N_COMMON = 500
"""Sequences of the common suite per run."""


def common_suite_scores(run_dir: Path, n_seqs: int = N_COMMON) -> dict[str, float]:
    """A run's last checkpoint on the common B = 2 icl suite: accuracy, and the best head's
    induction strength on that suite."""
    run = load_run(run_dir)
    icl = run.suites(n_seqs, B=COMMON_B)["icl"]
    model = run.model()
    acc, _ = accuracy_and_loss(suite_logits(model, icl), icl.targets)
    ih = attention_measures(model, icl, run.layout)["ih"]
    return {"icl_b2": float(acc), "ih_b2": float(ih.max())}


def with_common_suite(grid: Grid, result: SweepResult, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (one row per point name) plus icl_b2 and ih_b2 from :func:`common_suite_scores`."""
    dirs = {p.name: r.run_dir for p, r in zip(grid.points(), result.results, strict=True)}
    scores = pd.DataFrame([common_suite_scores(dirs[name]) for name in runs["run"]], index=runs.index)
    return pd.concat([runs, scores], axis=1)


def per_run(grid: Grid, result: SweepResult) -> pd.DataFrame:
    """Each run's final icl and iwl, and icl relative to its context-label plateau (its own N, B)."""
    configs = {p.name: p.config.task for p in grid.points()}
    runs = final_per_run(result.table, "icl").rename(columns={"value": "icl"})
    iwl = final_per_run(result.table, "iwl").set_index("run")["value"]
    runs["iwl"] = runs["run"].map(iwl)
    runs["icl_rel"] = [
        icl_relative(v, configs[r].N, configs[r].B) for r, v in zip(runs["run"], runs["icl"], strict=True)
    ]
    runs["plateau"] = [configs[r].B / configs[r].N for r in runs["run"]]
    return runs


def _mean_interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean of the seeds' values with its seed-bootstrap interval."""
    return bootstrap_difference([0.0], values.to_numpy(float))


def subclaims(grids: list[Grid], results: list[SweepResult], command: str, wall: float) -> list[SubClaim]:
    """Sub-claims 1a-1f from whichever of the K / B / eps / alpha grids were run (1e / 1f: the
    B / eps runs on the common B = 2 icl suite)."""
    subs = []
    common_suite: list[SubClaim] = []
    for grid, result in zip(grids, results, strict=True):
        keys = swept_keys(result.table, exclude=SEED_KEYS)
        runs = per_run(grid, result)
        common = dict(
            n_runs=len(runs),
            n_unique_configs=n_unique_configs([r.run_dir for r in result.results]),
            n_seeds=n_seeds(result.table),
            steps=grid.points()[0].config.train.steps,
            command=command,
            wall_time_s=wall,
        )
        kind = f"95% bootstrap over {common['n_seeds']} seeds"
        if keys == ["task.K"]:
            k = runs["task.K"]
            effect, lo, hi = bootstrap_difference(runs[k == k.min()]["icl"], runs[k == k.max()]["icl"])
            boot = threshold_bootstrap(result.table, "task.K").iloc[0]
            small = runs[k == k.min()]
            subs.append(
                SubClaim(
                    "1a",
                    "small K gives IWL, large K gives ICL",
                    verdict(effect, [lo, hi], min_effect=0.2, n_seeds=common["n_seeds"]),
                    effect,
                    f"final icl, K = {k.max()} minus K = {k.min()}",
                    [lo, hi],
                    kind,
                    notes=f"icl crosses 0.5 at K {format_threshold_interval(boot, k.max())} (seed "
                    f"bootstrap); at K = {k.min()} iwl {small['iwl'].mean():.3f}, "
                    f"icl {small['icl'].mean():.3f}",
                    **common,
                )
            )
        elif keys in (["task.B"], ["task.eps"]):
            key = keys[0]
            means = runs.groupby(key)["icl_rel"].mean()
            best = means.idxmax() if key == "task.eps" else runs[key].max()
            at = runs[runs[key] == best]
            effect, lo, hi = _mean_interval(at["icl_rel"])
            after_the_fact = key == "task.eps"  # the best of several eps: selection inflates it
            seeds = common["n_seeds"]
            name = "burstiness" if key == "task.B" else "within-class noise"
            chosen = (
                "the largest B" if key == "task.B" else "the eps with the highest mean, chosen after the fact"
            )
            lowest = runs[runs[key] == runs[key].min()]
            subs.append(
                SubClaim(
                    "1b" if key == "task.B" else "1c",
                    f"{name} moves a model to ICL",
                    verdict(effect, [lo, hi], min_effect=0.1, n_seeds=seeds, at_most_weak=after_the_fact),
                    effect,
                    f"icl relative to the context-label plateau at {short(key)} = {best} ({chosen})",
                    [lo, hi],
                    kind,
                    notes=f"raw icl {lowest['icl'].mean():.3f} -> {at['icl'].mean():.3f} and iwl "
                    f"{lowest['iwl'].mean():.3f} -> {at['iwl'].mean():.3f} from {short(key)} = "
                    f"{runs[key].min()} to {best}; plateau B/N = {at['plateau'].iloc[0]:.3f}",
                    **common,
                )
            )
            both = with_common_suite(grid, result, runs)
            both["icl_b2_rel"] = icl_relative(both["icl_b2"], grid.points()[0].config.task.N, COMMON_B)
            top = both[both[key] == best]
            effect, lo, hi = _mean_interval(top["icl_b2_rel"])
            per_value = both.groupby(key)[["icl_b2", "ih_b2"]].mean()
            common_suite.append(
                SubClaim(
                    "1e" if key == "task.B" else "1f",
                    f"{name} moves a model to ICL, scored on one common B = {COMMON_B} icl suite",
                    verdict(effect, [lo, hi], min_effect=0.1, n_seeds=seeds, at_most_weak=after_the_fact),
                    effect,
                    f"icl on the common B = {COMMON_B} suite relative to its context-label plateau "
                    f"({COMMON_B}/N), at {short(key)} = {best} ({chosen})",
                    [lo, hi],
                    kind,
                    notes="per value (icl, best ih) on the common suite: "
                    + "; ".join(
                        f"{short(key)} = {v}: {r['icl_b2']:.3f}, {r['ih_b2']:.3f}"
                        for v, r in per_value.iterrows()
                    )
                    + f"; its plateau is {COMMON_B}/N",
                    **common,
                )
            )
        elif set(keys) == {"task.alpha", "task.K"}:
            zipf = runs[runs["task.alpha"] == runs["task.alpha"].max()]
            uniform = runs[runs["task.alpha"] == runs["task.alpha"].min()]
            icl_k = zipf.groupby("task.K")["icl"].mean()
            learned = icl_k[icl_k >= 0.5]
            if learned.empty:
                effect, lo, hi, where = float("nan"), float("nan"), float("nan"), "no K with Zipf icl >= 0.5"
            else:
                kk = learned.index.min()
                effect, lo, hi = bootstrap_difference(
                    uniform[uniform["task.K"] == kk]["iwl"], zipf[zipf["task.K"] == kk]["iwl"]
                )
                where = f"K = {kk}, the smallest K where Zipf icl >= 0.5 ({learned[kk]:.3f})"
            below = ", ".join(
                f"K = {kk}: icl {v:.3f}, iwl {zipf[zipf['task.K'] == kk]['iwl'].mean():.3f}"
                for kk, v in icl_k.items()
                if v < 0.5
            )
            subs.append(
                SubClaim(
                    "1d",
                    "Zipf alpha ~ 1 lets ICL and IWL coexist",
                    verdict(effect, [lo, hi], min_effect=0.1, n_seeds=common["n_seeds"]),
                    effect,
                    f"iwl, Zipf minus uniform, at {where}",
                    [lo, hi],
                    kind,
                    notes=f"Zipf runs below icl 0.5 are IWL, not coexistence ({below or 'none'})",
                    **common,
                )
            )
    return subs + common_suite


def main(argv: list[str] | None = None) -> None:
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results").parse_args(argv)
    done = run_grids(args.grid, args.runs, args.workers)
    lines = [
        "# Claim 1: data complexity (K, B, eps, Zipf alpha)",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point; "
        "chance 1/L = 0.031. 'icl rel. to plateau': (icl - B/N) / (1 - B/N), 0 when the model only "
        "copies a random context label, 1 when perfect. Command: "
        f"`.venv/bin/python analyses/claim1_data_complexity.py`; wall time {done.timing()}.",
    ]
    fig = make_subplots(rows=1, cols=len(done.grids), subplot_titles=[g.name for g in done.grids])
    for col, (grid, result) in enumerate(zip(done.grids, done.results, strict=True), start=1):
        keys = swept_keys(result.table, exclude=SEED_KEYS)
        summary = final_values(result.table, keys, suites=SUITES)
        table = wide(summary, keys)
        rel = per_run(grid, result).groupby(keys)["icl_rel"].agg(["mean", "min", "max", "count"])
        rel_text = {i: spread(r) for i, r in rel.iterrows()}
        fixed = ", ".join(f"{short(k)} = {v}" for k, v in grid.fixed.items() if k.startswith("task."))
        lines += ["", f"## {', '.join(short(k) for k in keys)}" + (f" (at {fixed})" if fixed else ""), ""]
        lines += markdown_table(
            [short(k) for k in keys] + list(SUITES) + ["icl rel. to plateau"],
            [
                [r[k] for k in keys]
                + [r.get(s, "-") for s in SUITES]
                + [rel_text.get(tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]], "-")]
                for _, r in table.iterrows()
            ],
        )
        if keys == ["task.K"]:
            largest = summary["task.K"].max()
            k = threshold(summary, "task.K")[None]
            k_log = threshold(summary, "task.K", interpolate=True)[None]
            boot = threshold_bootstrap(result.table, "task.K").iloc[0]
            lines += [
                "",
                f"Smallest K with mean icl >= 0.5: {format_threshold(k, largest)} (log-interpolated "
                f"crossing: K = {format_threshold(k_log, largest)}; with a 95% seed-bootstrap interval: "
                f"{format_threshold_interval(boot, largest)}).",
            ]
        x, groups = keys[0], keys[1:]
        for gi, (group, part) in enumerate(summary.groupby(groups, sort=True) if groups else [((), summary)]):
            group = group if isinstance(group, tuple) else (group,)
            label = ", ".join(f"{short(k)}={v}" for k, v in zip(groups, group, strict=True))
            for suite, colour in COLOURS.items():
                rows = part[part["suite"] == suite]
                fig.add_trace(
                    spread_trace(
                        rows,
                        x,
                        f"{suite} {label}".strip(),
                        legendgroup=f"{suite} {label}",
                        showlegend=col == 1 or bool(groups),
                        line=dict(color=colour, dash=DASHES[gi % len(DASHES)]),
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text=short(x), type="log" if x == "task.K" else "linear", row=1, col=col)
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot"))
    fig.update_yaxes(range=[0, 1.05])
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)
    write_results(
        args.out,
        "claim1_data_complexity",
        lines,
        fig,
        title="Claim 1: icl and iwl vs data complexity (error bars: min/max over seeds)",
        png=not args.no_png,
    )
    command = command_line("claim1_data_complexity", argv)
    wall = done.compute_s(time.perf_counter() - t0)  # recorded training time + analysis
    write_section(
        Path(args.out) / "claims.json",
        Section(
            "1",
            "ICL needs data complexity (K, B, eps, Zipf alpha)",
            subclaims(done.grids, done.results, command, wall),
            command,
            wall,
        ),
    )


if __name__ == "__main__":
    main()
