"""Per-run head ablations for claim 5 (``analyses/claim5_mechanism.py``): each run's best
induction head (highest ``ih`` on the icl suite at the last checkpoint), its mean ablation, the
joint ablation of every head with ``ih >= threshold``, and a control head; and, for claim 4's
stage-2 runs, the stage-1 run's heads ablated inside the stage-2 model; the selections, the
Pearson statistic, the ``--from-results`` reading, the tables and the figure of claim 5.

A mean ablation replaces a head's output by its mean over the suite's sequences; a drop is
clean minus ablated accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from tqdm.auto import tqdm

from mmicl_interp.analyses.ablation import ablate_heads, format_heads, heads_above, parse_heads
from mmicl_interp.analyses.attention import attention_measures
from mmicl_interp.analyses.stats import config_hash
from mmicl_interp.config import load_config
from mmicl_interp.runs import Run, load_run
from mmicl_interp.sweep.claim_script import mean_range
from mmicl_interp.sweep.claims import SubClaim
from mmicl_interp.sweep.figures import panels
from mmicl_interp.sweep.summary import GridsResult, markdown_table

N_SEQS = 500
"""Sequences per suite for the measures and the ablation."""
IH_THRESHOLD = 0.1
"""Heads with induction strength at least this are ablated together (the joint ablation)."""
MM_ARMS = ("stage 2", "unfrozen stage 2")
"""Claim 4's arms whose decoder comes from a stage-1 run (5c)."""


def run_row(run: Run, n_seqs: int = N_SEQS, threshold: float = IH_THRESHOLD) -> dict:
    """One run at its last checkpoint: best induction head, its strength, and its ablation."""
    model = run.model()
    suites = run.suites(n_seqs)
    ih = attention_measures(model, suites["icl"], run.layout)["ih"]
    layer, head = divmod(int(ih.argmax()), ih.shape[1])
    two = {s: suites[s] for s in ("icl", "iwl")}
    ablation = ablate_heads(model, two, [(layer, head)], "mean")
    acc = ablation[ablation["metric"] == "accuracy"].set_index("suite")
    joint_heads = heads_above(ih, threshold)
    joint = ablate_heads(model, two, joint_heads, "mean")
    joint = joint[joint["metric"] == "accuracy"].set_index("suite")
    control = control_head(ih, layer, head)
    return {
        "run": run.name,
        "config_hash": config_hash(run.config),
        "n_heads": run.config.model.n_heads,
        "n_layers": run.config.model.n_layers,
        "step": run.steps[-1],
        "best_head": f"L{layer}H{head}",
        "best_ih": float(ih[layer, head]),
        "icl": float(acc.loc["icl", "clean"]),
        "iwl": float(acc.loc["iwl", "clean"]),
        "icl_ablated": float(acc.loc["icl", "value"]),
        "iwl_ablated": float(acc.loc["iwl", "value"]),
        "icl_drop": float(-acc.loc["icl", "delta"]),
        "iwl_drop": float(-acc.loc["iwl", "delta"]),
        "joint_heads": format_heads(joint_heads),
        "n_joint": len(joint_heads),
        "icl_joint_drop": float(-joint.loc["icl", "delta"]),
        "iwl_joint_drop": float(-joint.loc["iwl", "delta"]),
        "control_head": "" if control is None else format_heads([control]),
    }


def control_head(ih, layer: int, head: int) -> tuple[int, int] | None:
    """The control for ablating induction head ``(layer, head)``: the head of the same layer with
    the lowest induction strength (a non-induction head), None when the layer has one head."""
    others = [(float(ih[layer, h]), h) for h in range(ih.shape[1]) if h != head]
    return None if not others else (layer, min(others)[1])


def _ablated(model, suites: dict, heads: list[tuple[int, int]]) -> pd.DataFrame:
    table = ablate_heads(model, suites, heads, "mean")
    return table[table["metric"] == "accuracy"].set_index("suite")


def multimodal_rows(table_csv: Path, runs_dir: Path, n_seqs: int = N_SEQS) -> pd.DataFrame:
    """5c: per stage-2 run of claim 4 (``MM_ARMS``) whose stage-1 run exists, the best induction
    head of both runs and the stage-2 model's multimodal icl / iwl drop when the stage-1 run's
    best head (and jointly its heads with ih >= IH_THRESHOLD) is mean-ablated."""
    if not table_csv.is_file():
        return pd.DataFrame()
    runs = pd.read_csv(table_csv)
    runs = runs[runs["arm"].isin(MM_ARMS)]
    stage1: dict[int, tuple[dict, list[tuple[int, int]]]] = {}
    rows = []
    for r in tqdm(list(runs.itertuples()), desc="5c: stage-1 induction heads in stage 2", unit="run"):
        s1_dir, s2_dir = runs_dir / f"mm_stage1_seed{r.seed}", runs_dir / r.run
        if not ((s1_dir / "manifest.json").is_file() and (s2_dir / "manifest.json").is_file()):
            continue
        if r.seed not in stage1:
            s1_row = run_row(load_run(s1_dir), n_seqs)  # its joint heads are heads_above(ih, IH_THRESHOLD)
            stage1[r.seed] = (s1_row, parse_heads(s1_row["joint_heads"]))
        s1_row, s1_joint = stage1[r.seed]
        s2 = load_run(s2_dir)
        s2_row = run_row(s2, n_seqs)
        model, suites = s2.model(), s2.suites(n_seqs)
        two = {s: suites[s] for s in ("icl", "iwl")}
        one = _ablated(model, two, parse_heads(s1_row["best_head"]))
        joint = _ablated(model, two, s1_joint)
        # a non-induction head of the same layer, ablated the same way: the control (multi-head only)
        control = (
            _ablated(model, two, parse_heads(s1_row["control_head"])) if s1_row["control_head"] else None
        )
        rows.append(
            {
                "run": r.run,
                "arm": r.arm,
                "K2": int(r.K2),
                "seed": int(r.seed),
                "steps": int(r.steps),
                "stage1_best_head": s1_row["best_head"],
                "stage1_best_ih": s1_row["best_ih"],
                "stage1_icl": s1_row["icl"],
                "stage1_icl_drop": s1_row["icl_drop"],
                "best_head": s2_row["best_head"],
                "best_ih": s2_row["best_ih"],
                "same_head": s2_row["best_head"] == s1_row["best_head"],
                "icl": float(one.loc["icl", "clean"]),
                "iwl": float(one.loc["iwl", "clean"]),
                "icl_drop": float(-one.loc["icl", "delta"]),
                "iwl_drop": float(-one.loc["iwl", "delta"]),
                "joint_heads": format_heads(s1_joint),
                "icl_joint_drop": float(-joint.loc["icl", "delta"]),
                "iwl_joint_drop": float(-joint.loc["iwl", "delta"]),
                "stage1_n_heads": int(s1_row["n_heads"]),
                "control_head": s1_row["control_head"],
                "icl_control_drop": math.nan if control is None else float(-control.loc["icl", "delta"]),
                "iwl_control_drop": math.nan if control is None else float(-control.loc["iwl", "delta"]),
            }
        )
    return pd.DataFrame(rows)


def ablation_tables(
    runs: pd.DataFrame,
    icl_runs: pd.DataFrame,
    iwl_runs: pd.DataFrame,
    many: pd.DataFrame,
    mm: pd.DataFrame,
    learned: float,
    source: str,
) -> list[str]:
    """Claim 5's ablation tables: the best head's drop per group of runs (learned ICL, IWL only,
    each sweep), the joint ablation of every head with ``ih >= IH_THRESHOLD`` (also in ``many``,
    the multi-head or deeper learners), and the stage-1 head inside the stage-2 models (``mm``,
    from claim 4's table ``source``). Cells: mean [min, max] over runs (a range)."""
    lines: list[str] = []
    lines += [
        "",
        "## Mean-ablating the best induction head: accuracy drop (clean - ablated)",
        "",
        "Cells: mean [min, max] over the runs of the row (a range, not a confidence interval).",
        "",
    ]
    groups = [
        (f"learned ICL (icl >= {learned})", icl_runs),
        (f"IWL only (iwl >= {learned}, icl < {learned})", iwl_runs),
    ]
    groups += [(f"sweep {name}", part) for name, part in runs.groupby("sweep", sort=False)]
    lines += markdown_table(
        ["runs", "n", "icl clean", "icl drop", "iwl clean", "iwl drop"],
        [
            [
                label,
                len(part),
                mean_range(part["icl"]),
                mean_range(part["icl_drop"]),
                mean_range(part["iwl"]),
                mean_range(part["iwl_drop"]),
            ]
            for label, part in groups
        ],
    )
    if len(icl_runs):
        larger = int((icl_runs["icl_drop"] > icl_runs["iwl_drop"]).sum())
        lines += [
            "",
            f"In {larger} of the {len(icl_runs)} runs that learned ICL, ablating the best induction head "
            "costs more icl than iwl accuracy.",
        ]
    lines += [
        "",
        f"## Mean-ablating every head with ih >= {IH_THRESHOLD} together: accuracy drop (clean - ablated)",
        "",
    ]
    lines += markdown_table(
        ["runs", "n", "heads per run", "icl drop (joint)", "icl drop (best head)", "iwl drop (joint)"],
        [
            [
                label,
                len(part),
                f"{part['n_joint'].mean():.1f}" if len(part) else "-",
                mean_range(part["icl_joint_drop"]),
                mean_range(part["icl_drop"]),
                mean_range(part["iwl_joint_drop"]),
            ]
            for label, part in [*groups, ("multi-head or deeper, learned ICL", many)]
        ],
    )
    lines += ["", "## 5c: the stage-1 induction head inside the stage-2 (multimodal) model", ""]
    if mm.empty:
        lines.append(
            f"Not run: no claim-4 stage-2 runs found ({source}); run "
            "`analyses/multimodal_asymmetry.py` first."
        )
    else:
        lines += [
            "Per stage-2 run of claim 4 (frozen or unfrozen decoder from its seed's stage-1 run): the "
            "multimodal accuracy drop when the stage-1 run's best induction head (and, jointly, its heads "
            f"with ih >= {IH_THRESHOLD}) is mean-ablated in the stage-2 model, and, as a control, a "
            "non-induction head of the same layer ('-' when the stage-1 decoder has one head per layer: "
            "then the joint ablation is the single-head one too); 'same head': the stage-2 "
            "model's own best induction head on the multimodal icl suite is that head. Cells: mean "
            "[min, max] over the runs (a range, not a confidence interval).",
            "",
        ]
        lines += markdown_table(
            [
                "arm",
                "K2",
                "n",
                "same head",
                "icl clean",
                "icl drop",
                "icl drop (joint)",
                "icl drop (control head)",
                "iwl drop",
                "stage-1 icl drop",
            ],
            [
                [
                    arm,
                    k2,
                    len(part),
                    f"{int(part['same_head'].sum())}/{len(part)}",
                    mean_range(part["icl"]),
                    mean_range(part["icl_drop"]),
                    mean_range(part["icl_joint_drop"]),
                    mean_range(part["icl_control_drop"].dropna()),
                    mean_range(part["iwl_drop"]),
                    mean_range(part["stage1_icl_drop"]),
                ]
                for (arm, k2), part in mm.groupby(["arm", "K2"], sort=True)
            ],
        )
    return lines


def sweep_rows(done: GridsResult) -> pd.DataFrame:
    """:func:`run_row` of every run of the finished sweeps ``done``, in sweep order, with the
    sweep's name in column ``sweep`` (a run in two sweeps gives two rows)."""
    todo = [(g.name, pr.run_dir) for g, r in zip(done.grids, done.results, strict=True) for pr in r.results]
    rows = []
    for sweep, run_dir in tqdm(todo, desc="best induction head per run", unit="run"):
        rows.append({"sweep": sweep, **run_row(load_run(run_dir))})
    return pd.DataFrame(rows)


def many_heads(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose model has more heads than the 2-layer, 1-head default (n_heads > 1 or
    n_layers > 2): where the circuit can spread over several heads (claim 5d)."""
    return runs[runs["n_heads"] * runs["n_layers"] > 2]


def mm_learners(mm: pd.DataFrame, learned: float) -> pd.DataFrame:
    """The rows of :func:`multimodal_rows` whose stage-2 run learned multimodal ICL (``icl >=
    learned``) from a stage-1 run that learned ICL (``stage1_icl >= learned``)."""
    return mm[(mm["icl"] >= learned) & (mm["stage1_icl"] >= learned)] if len(mm) else mm


def mm_evidence(mm: pd.DataFrame, command: str, wall: float | None) -> dict:
    """The evidence fields of a sub-claim judged on the stage-2 rows ``mm``: each row is its own
    run and config, its seeds, the largest stage-2 budget (None without a ``steps`` column)."""
    return dict(
        n_runs=len(mm),
        n_unique_configs=len(mm),
        n_seeds=int(mm["seed"].nunique()),
        steps=int(mm["steps"].max()) if "steps" in mm else None,
        command=command,
        wall_time_s=wall,
    )


def stage1_heads(mm: pd.DataFrame) -> pd.Series:
    """Heads per layer of each row's stage-1 decoder: the ``stage1_n_heads`` column, or for a table
    written before it, the shipped ``mm_stage1`` config's (its runs ``mm_stage1_seed<s>`` are
    trained from that config by ``analyses/multimodal_asymmetry.py``)."""
    if "stage1_n_heads" in mm:
        return mm["stage1_n_heads"]
    return pd.Series(load_config("mm_stage1").model.n_heads, index=mm.index)


def pearson_r(x, y, axis: int = -1):
    """Pearson r along ``axis``, vectorised for :func:`~mmicl_interp.analyses.stats.bca_interval`:
    ``r = sum(xc * yc) / sqrt(sum(xc**2) * sum(yc**2))`` with ``xc = x - mean(x)``, ``yc = y -
    mean(y)``. No guard: a constant sample gives NaN (0/0), which the bootstrap reports. Unlike
    :mod:`~mmicl_interp.analyses.correlation`'s statistic it neither clips to [-1, 1] nor flags
    near-constant rows, so claim 5a's committed intervals stay as computed."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    return (xc * yc).sum(axis=axis) / np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))


def read_tables(csv: Path, mm_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claim 5's per-run tables for ``--from-results``: the runs' table ``csv`` and the stage-2
    table ``mm_name`` beside it (empty when absent). Only empty cells are missing values (a
    head named e.g. ``NA`` stays a string); an empty ``control_head`` reads as ``""``, as
    :func:`run_row` writes it."""
    runs = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    mm_csv = csv.parent / mm_name
    mm = pd.read_csv(mm_csv, keep_default_na=False, na_values=[""]) if mm_csv.is_file() else pd.DataFrame()
    for frame in (runs, mm):
        if "control_head" in frame:
            # object first: an all-empty column reads as float, which pandas will not fill with ""
            frame["control_head"] = frame["control_head"].astype(object).fillna("")
    return runs, mm


def carry_steps(subs: Sequence[SubClaim], old: dict) -> None:
    """Set each sub-claim's ``steps`` to those of the same id in ``old`` (the section as the full
    run wrote it, from claims.json), where it has them: the steps of the runs behind a sub-claim,
    which a re-judgement from the CSVs alone may not know."""
    for sub in subs:
        sub.steps = next(
            (o.get("steps") for o in old.get("subclaims", []) if o.get("id") == sub.id), sub.steps
        )


def mechanism_figure(runs: pd.DataFrame) -> go.Figure:
    """Claim 5's figure: per run (one colour per sweep), final icl vs its best head's induction
    strength, and the icl vs iwl drop when that head is mean-ablated; hover text: run (head)."""
    fig = panels(["final icl vs best induction strength", "ablating the best induction head"])
    for i, (sweep, part) in enumerate(runs.groupby("sweep", sort=False)):
        text = part["run"] + " (" + part["best_head"] + ")"
        colour = qualitative.D3[i % len(qualitative.D3)]
        for col, x, y in ((1, "best_ih", "icl"), (2, "iwl_drop", "icl_drop")):
            fig.add_scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                name=sweep,
                legendgroup=sweep,
                marker=dict(color=colour),
                showlegend=col == 1,
                text=text,
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="best-head induction strength (ih)", row=1, col=1)
    fig.update_yaxes(title_text="final icl accuracy", row=1, col=1)
    fig.update_xaxes(title_text="iwl accuracy drop", row=1, col=2)
    fig.update_yaxes(title_text="icl accuracy drop", row=1, col=2)
    return fig


__all__ = [
    "IH_THRESHOLD",
    "ablation_tables",
    "carry_steps",
    "MM_ARMS",
    "N_SEQS",
    "control_head",
    "many_heads",
    "mechanism_figure",
    "mm_evidence",
    "mm_learners",
    "multimodal_rows",
    "pearson_r",
    "read_tables",
    "run_row",
    "stage1_heads",
    "sweep_rows",
]
