"""Claim 1 (SCIENCE.md section 6): ICL needs data complexity; small K gives IWL.

Four sweeps of the default config, two seeds of the training data stream each
(``train.seed``): the number of classes K from 2^5 to 2^13 (``grids/claim1_K.toml``);
burstiness B (``grids/claim1_B.toml``) and within-class noise eps (``grids/claim1_eps.toml``)
at K = 128, just below the K transition; and Zipf alpha in {0, 1} at K = 256, 512 and 1024
(``grids/claim1_alpha.toml``). Writes final icl / iwl / icl_flip accuracy per point (mean
[min, max] over seeds) and the smallest K where icl reaches 0.5 to
``analyses/results/claim1_data_complexity.md``, and one figure (HTML; PNG with kaleido).

    .venv/bin/python analyses/claim1_data_complexity.py [--grid FILE ...] [--out DIR] [--workers N]
"""

from __future__ import annotations

from pathlib import Path

from plotly.subplots import make_subplots

from mmicl_interp.sweep.summary import (
    claim_parser,
    final_values,
    format_threshold,
    markdown_table,
    run_grids,
    short,
    spread_trace,
    swept_keys,
    threshold,
    wide,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [ROOT / "analyses" / "grids" / f"claim1_{part}.toml" for part in ("K", "B", "eps", "alpha")]
SUITES = ("icl", "iwl", "icl_flip")
COLOURS = {"icl": "#1f77b4", "iwl": "#d62728"}
DASHES = ("solid", "dash", "dot", "dashdot")


def main(argv: list[str] | None = None) -> None:
    args = claim_parser(__doc__, GRIDS, ROOT / "analyses" / "results").parse_args(argv)
    done = run_grids(args.grid, args.runs, args.workers)
    lines = [
        "# Claim 1: data complexity (K, B, eps, Zipf alpha)",
        "",
        f"Final accuracy after {done.steps()} steps, mean [min, max] over the seeds of each point; "
        "chance 1/L = 0.031. Command: `.venv/bin/python analyses/claim1_data_complexity.py`; wall "
        f"time {done.timing()}.",
    ]
    fig = make_subplots(rows=1, cols=len(done.grids), subplot_titles=[g.name for g in done.grids])
    for col, (grid, result) in enumerate(zip(done.grids, done.results, strict=True), start=1):
        keys = swept_keys(result.table)
        summary = final_values(result.table, keys, suites=SUITES)
        table = wide(summary, keys)
        fixed = ", ".join(f"{short(k)} = {v}" for k, v in grid.fixed.items() if k.startswith("task."))
        lines += ["", f"## {', '.join(short(k) for k in keys)}" + (f" (at {fixed})" if fixed else ""), ""]
        lines += markdown_table(
            [short(k) for k in keys] + list(SUITES),
            [[r[k] for k in keys] + [r.get(s, "-") for s in SUITES] for _, r in table.iterrows()],
        )
        if keys == ["task.K"]:
            largest = summary["task.K"].max()
            k = threshold(summary, "task.K")[None]
            k_log = threshold(summary, "task.K", interpolate=True)[None]
            lines += [
                "",
                f"Smallest K with mean icl >= 0.5: {format_threshold(k, largest)} (log-interpolated "
                f"crossing: K = {format_threshold(k_log, largest)}).",
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


if __name__ == "__main__":
    main()
