"""The summary table of ``analyses/published_reference.py``: each run folder's state (complete
with these settings and code, to train, or in conflict), the CSV of every eval step of every run
(``published_reference.csv``: K, seed, step, suite, accuracy, loss; rows of other commands kept)
and its Markdown summary (icl / iwl per run at the report steps, mean and range over seeds per K).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from mmicl_interp.sweep.published_code import PINNED_COMMIT, SUITES, UsageError

REPORT_STEPS = (500, 1000, 1500, 2000)
CSV_NAME = "published_reference.csv"
MD_NAME = "published_reference.md"
CSV_COLUMNS = ("K", "seed", "step", "suite", "accuracy", "loss")
MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
STEP_CONVENTION = (
    "step s = after s optimizer updates (step 0 = init); the published loop's 'Iteration n' is step n + 1"
)


def expected_steps(s: dict[str, Any]) -> list[int]:
    return sorted({0, s["steps"], *range(s["eval_every"], s["steps"] + 1, s["eval_every"])})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_rows(run_dir: Path) -> list[dict[str, Any]] | None:
    try:
        return [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def finished(run_dir: Path, s: dict[str, Any], K: int, seed: int, code: dict[str, Any]) -> bool | str:
    """True: a complete run of these settings to reuse; False: train it; a string: why it conflicts."""
    manifest = _read_json(run_dir / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        return False
    want = {**s, "K": K, "seed": seed}
    have = manifest.get("settings", {})
    diff = [f"{k} {have.get(k)!r}, not {v!r}" for k, v in want.items() if have.get(k) != v]
    if manifest.get("code", {}).get("sha256") != code["sha256"]:
        diff.append("other published code (sha256 of model.py / dataset.py)")
    if diff:
        return "; ".join(diff)
    rows = read_rows(run_dir)
    got = {(r.get("step"), r.get("suite")) for r in rows or []}
    return got >= {(st, su) for st in expected_steps(s) for su in SUITES}


def metrics_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of an existing summary CSV (typed); a malformed file is a UsageError naming --results."""
    if not path.is_file():
        return []
    try:
        reader = csv.DictReader(io.StringIO(path.read_text()))
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"columns {reader.fieldnames}, not {list(CSV_COLUMNS)}")
        rows = []
        for r in reader:
            if r["suite"] not in SUITES:
                raise ValueError(f"suite {r['suite']!r}")
            rows.append(
                {
                    "K": int(r["K"]),
                    "seed": int(r["seed"]),
                    "step": int(r["step"]),
                    "suite": r["suite"],
                    "accuracy": float(r["accuracy"]),
                    "loss": float(r["loss"]),
                }
            )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(
            "--results", f"{path} is not a {CSV_NAME} table ({err}); move it away or fix it"
        ) from None
    return rows


def merge_table(old: list[dict[str, Any]], runs: dict[tuple[int, int], list[dict[str, Any]]]) -> list[dict]:
    """``old`` rows of other runs, plus the rows of ``runs`` (replacing theirs), sorted."""
    kept = [r for r in old if (r["K"], r["seed"]) not in runs]
    new = [
        {
            "K": K,
            "seed": seed,
            "step": r["step"],
            "suite": r["suite"],
            "accuracy": r["accuracy"],
            "loss": r["loss"],
        }
        for (K, seed), rows in runs.items()
        for r in rows
    ]
    return sorted(kept + new, key=lambda r: (r["K"], r["seed"], r["step"], SUITES.index(r["suite"])))


def table_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table_markdown(
    rows: list[dict[str, Any]], command: str, code: dict[str, Any], out: Path, this_runs: set[tuple[int, int]]
) -> str:
    """The Markdown summary of the whole CSV: per run icl / iwl at the report steps, per K mean and range."""
    value = {(r["K"], r["seed"], r["step"], r["suite"]): r["accuracy"] for r in rows}
    runs = sorted({(r["K"], r["seed"]) for r in rows})
    present = sorted({r["step"] for r in rows})
    steps = [st for st in REPORT_STEPS if st in present] or present[-1:]
    commit = code["head"] or PINNED_COMMIT
    check = (
        "matches the pinned commit"
        if code["matches_pinned"]
        else f"NOT the pinned commit ({code['mismatch']})"
    )
    lines = [
        "# The published code's stage-1 trajectories, rerun here",
        "",
        f"Written by `analyses/published_reference.py`; do not edit by hand. Every eval step: `{CSV_NAME}`.",
        "",
        f"- command: `{command}`",
        f"- published code: github YiranHuangIrene/multimodal-icl, commit `{commit}` "
        f"(checked by {code['checked_by']}: {check})",
        "- settings: the paper's point unless the command changes it (N 8, D 64, L 32, alpha 0, B 2, p_B 1, "
        "p_C 0, eps 0.1, no_repeats 0, 1 head, 2 layers, one-hot APE, RMSNorm, batch 128, Adam lr 1e-3, "
        "weight decay 1e-6); eval suites of the published construction (test, icl = IC, icl_flip = IC2, "
        "iwl = IW), drawn once per run; CPU, one thread, one process",
        f"- {STEP_CONVENTION}",
        "- chance = 1/L",
        "",
        "## icl / iwl accuracy per run",
        "",
        "| K | seed | " + " | ".join(f"step {st}" for st in steps) + " | wall time | code |",
        "|---|---|" + "---|" * len(steps) + "---|---|",
    ]
    for K, seed in runs:
        cells = [
            f"{_fmt(value.get((K, seed, st, 'icl')))} / {_fmt(value.get((K, seed, st, 'iwl')))}"
            for st in steps
        ]
        manifest = _read_json(out / f"K{K}_seed{seed}" / MANIFEST)
        wall, src = "-", "-"
        if isinstance(manifest, dict) and manifest.get("status") == "complete":
            wall = f"{manifest.get('wall_time_s') or float('nan'):.0f} s"
            src = (
                "pinned" if manifest.get("code", {}).get("matches_pinned") else "other (--allow-other-commit)"
            )
        lines.append(f"| {K} | {seed} | " + " | ".join(cells) + f" | {wall} | {src} |")
    older = [f"K {K} seed {seed}" for K, seed in runs if (K, seed) not in this_runs]
    if older:
        lines += ["", f"Rows kept from earlier commands: {', '.join(older)}."]
    lines += [
        "",
        "## Mean over seeds per K (range = min-max over seeds)",
        "",
        "| K | step | seeds | icl mean | icl range | iwl mean | iwl range |",
        "|---|---|---|---|---|---|---|",
    ]
    for K in sorted({k for k, _ in runs}):
        seeds = [sd for k, sd in runs if k == K]
        for st in steps:
            cells = [str(K), str(st)]
            icl = [value[(K, sd, st, "icl")] for sd in seeds if (K, sd, st, "icl") in value]
            iwl = [value[(K, sd, st, "iwl")] for sd in seeds if (K, sd, st, "iwl") in value]
            cells.append(str(len(icl)))
            for vals in (icl, iwl):
                if vals:
                    cells += [f"{sum(vals) / len(vals):.3f}", f"{min(vals):.3f}-{max(vals):.3f}"]
                else:
                    cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "CSV_NAME",
    "MD_NAME",
    "STEP_CONVENTION",
    "finished",
    "merge_table",
    "metrics_text",
    "read_rows",
    "read_table",
    "table_csv",
    "table_markdown",
]
