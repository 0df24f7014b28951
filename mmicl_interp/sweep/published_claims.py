"""The fidelity claim (``analyses/published_ablation.py``, section ``published`` of claims.json):
is the `published` config the published code's model, and which of its differences from the old
paper model (`paper_arch`) move the ICL/IWL boundary? Its sub-claims with their "not tested" /
few-seed guards, and the report around them.

Method:

- A run's *side* at its last step (:func:`~mmicl_interp.sweep.published_compare.side`): ``ICL``
  when icl >= 0.8, ``IWL`` when iwl >= 0.6 and icl is below the context-label plateau B/N (0.25),
  else ``neither``. The published code (analyses/results/published_reference.md, PUBLISHED.md)
  memorises at K 2048 and learns in context at K 4096 for every seed by step 2000.
- F1 / F2 (:func:`side_subclaim`): `published` ends on the published code's side at one K. Of
  ``n`` seeds, ``hits`` on that side (:func:`side_verdict`): every seed and n >= 3, supported;
  none, not supported; else weak; no run, not tested. The effect is the mean final icl with the
  seeds' range (min-max), not a confidence interval: few seeds, and the two codes draw different
  random streams.
- F3 - F5 (:func:`undone_subclaim`): the effect of undoing one difference is the change in final
  icl at K 2048, variant minus `published`, paired by seed (a seed fixes task, init and data stream
  in both arms), judged on the 95% paired t interval of the per-seed differences ``d_s = v_s - p_s``
  (:func:`~mmicl_interp.sweep.claims.judge_difference`, with the script's ``min_effect``).
- P1 (:func:`boundary_subclaims`, :func:`cell_verdict`): each seed's own crossing of icl 0.5 and
  the grid cell ``(lo, hi]`` it lies in (:func:`~mmicl_interp.sweep.summary.seed_crossings`).
  An interpolated crossing is only known to lie in its cell, so the cells are compared with the
  published code's (2048, 4096]: every seed's cell equal to it, supported (weak under 3 seeds);
  every cell disjoint from it, not supported; else weak.
- P2: RoPE / one-hot crossing ratio, paired by seed, widened to the cells
  (:func:`~mmicl_interp.sweep.claims.judge_crossing_ratio`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep.claim_script import by_seed
from mmicl_interp.sweep.published_compare import PLATEAU, mean_min_max
from mmicl_interp.sweep.summary import seed_crossings

PUBLISHED_CELL = (2048.0, 4096.0)
"""The published code's boundary at 2000 steps: memorises at K 2048, learns in context at K 4096."""
VERBS = {"IWL": "memorises", "ICL": "learns in context"}
"""How a side reads in a sub-claim's text."""


def variant(runs: pd.DataFrame, mlp_init: str = "torch_default", readout_bias: bool = False) -> pd.DataFrame:
    """The rows of one variant (default: `published`, MLP init as published, no read-out bias)."""
    return runs[
        (runs["model.mlp_init"] == mlp_init) & (runs["model.readout_bias"].astype(bool) == readout_bias)
    ]


def run_evidence(runs: pd.DataFrame, command: str) -> dict:
    """The evidence fields of the section from the per-run table (one row per run, each its own
    config): runs, unique configs, seeds, the longest run's steps and the command."""
    return dict(
        n_runs=len(runs),
        n_unique_configs=len(runs),
        n_seeds=int(runs["seed"].nunique()),
        steps=int(runs["last_step"].max()),
        command=command,
    )


def side_verdict(hits: int, n: int, min_seeds: int = 3) -> str:
    """F1 / F2's rule: ``hits`` of ``n`` seeds on the expected side. All of at least
    ``min_seeds``: supported; none: not supported; no seed: not tested; else weak."""
    if n == 0:
        return "not tested"
    if hits == 0:
        return "not supported"
    return "supported" if hits == n >= min_seeds else "weak"


def side_subclaim(
    sid: str, rows: pd.DataFrame, K: int, want: str, common: dict, step: int = 2000
) -> C.SubClaim:
    """Sub-claim ``sid``: the runs ``rows`` (one config at ``K``, one row per seed, from
    :func:`~mmicl_interp.sweep.published_compare.step_rows`) end on side ``want`` at ``step``, as
    the published code does (:func:`side_verdict`); effect: mean final icl, the seeds' range."""
    hits = int((rows["side"] == want).sum())
    icl_col, iwl_col = f"icl_{step}", f"iwl_{step}"
    icl = rows[icl_col] if icl_col in rows else rows.filter(like="icl_").iloc[:, -1]
    n = len(rows)
    return C.SubClaim(
        sid,
        f"`published` {VERBS[want]} at K = {K} by step {step}, as the published code does",
        side_verdict(hits, n),
        float(icl.mean()) if n else None,
        "final icl, mean over seeds",
        [float(icl.min()), float(icl.max())] if n else None,
        f"range over {n} seeds (min-max), not a confidence interval",
        notes=f"{hits} of {n} seeds {want}; final iwl {mean_min_max(rows[iwl_col])}"
        if iwl_col in rows and n
        else "",
        **common,
    )


def undone_subclaim(
    sid: str, text: str, base: pd.Series, arm: pd.Series, common: dict, min_effect: float, K: int = 2048
) -> C.SubClaim:
    """Sub-claim ``sid``: final icl ``arm`` minus ``base`` (Series indexed by seed, at ``K``),
    paired by seed and judged by :func:`~mmicl_interp.sweep.claims.judge_difference` with
    ``min_effect``; the per-seed differences go in the notes."""
    seeds = sorted(set(arm.index) & set(base.index))
    diffs = (arm[seeds] - base[seeds]).to_numpy()
    return C.judge_difference(base, arm, min_effect=min_effect).subclaim(
        sid,
        text,
        f"final icl at K = {K}, variant minus `published`, paired by seed",
        "per-seed differences " + ", ".join(f"{d:+.3f}" for d in diffs),
        **common,
    )


def final_icl(rows: pd.DataFrame, K: int, column: str = "icl_2000") -> pd.Series:
    """``column`` of the ``rows`` at ``K``, indexed by seed (the arm of a paired comparison)."""
    return by_seed(rows[rows["task.K"] == K], column)


def cell_verdict(
    cells: set[tuple[float, float]], ref: Sequence[float], n_seeds: int, min_seeds: int = 3
) -> str:
    """P1's rule on the seeds' grid ``cells`` ``(lo, hi]`` against the reference cell ``ref``:
    all equal to it, supported (weak under ``min_seeds`` seeds); all disjoint from it (half-open
    cells: touching is disjoint), not supported; else weak."""
    ref = (float(ref[0]), float(ref[1]))
    if cells == {ref}:
        return "supported" if n_seeds >= min_seeds else "weak"
    if all(hi <= ref[0] or lo >= ref[1] for lo, hi in cells):
        return "not supported"
    return "weak"


def boundary_subclaims(
    onehot: pd.DataFrame, rope: pd.DataFrame, common: dict, ref: Sequence[float] = PUBLISHED_CELL
) -> list[C.SubClaim]:
    """P1 and P2 on `published`: P1, every seed's one-hot cell against the published code's
    ``ref`` (:func:`cell_verdict`); P2, RoPE / one-hot by
    :func:`~mmicl_interp.sweep.claims.judge_crossing_ratio` (paired by seed, widened to the
    cells), left out when ``rope`` is empty. ``onehot`` / ``rope``: one row per run with
    ``task.K``, ``seed`` and final ``icl``."""
    one = seed_crossings(onehot, value="icl", seed="seed")
    cells = {(float(lo), float(hi)) for lo, hi in zip(one["cell_lo"], one["cell_hi"], strict=True)}
    subs = [
        C.SubClaim(
            "P1-pub",
            "on `published`, one-hot icl crosses between K = 2048 and 4096, as in the published code",
            cell_verdict(cells, ref, len(one)),
            C.crossing_estimate(one)[0].estimate,
            "crossing K, one-hot (geometric mean over seeds, log-interpolated inside the cell)",
            [min(c[0] for c in cells), max(c[1] for c in cells)],
            "the seeds' grid cells (lo, hi], where the crossing is known to lie; not a confidence interval",
            notes=f"one-hot: {C.crossing_text(one)}; every seed's cell: "
            + ", ".join(C.cell_text(c) for c in sorted(cells))
            + "; published code at 2000 steps: memorises at K 2048, learns in context at K 4096 "
            "(published_reference.md)",
            **common,
        )
    ]
    if rope.empty:
        return subs
    rx = seed_crossings(rope, value="icl", seed="seed")
    n = common["n_runs"] + len(rope)
    subs.append(
        C.judge_crossing_ratio(rx, one).subclaim(
            "P2-pub",
            "on `published`, RoPE raises the data-complexity threshold",
            "crossing K, RoPE / one-hot",
            notes=f"RoPE: {C.crossing_text(rx)}; one-hot: {C.crossing_text(one)}; RoPE final icl by K: "
            + ", ".join(f"{int(k)}: {mean_min_max(g['icl'])}" for k, g in rope.groupby("task.K")),
            **{**common, "n_runs": n, "n_unique_configs": n},
        )
    )
    return subs


def verdict_lines(subs: Sequence[C.SubClaim]) -> list[str]:
    """One Markdown bullet per sub-claim: id, verdict, text, effect with its interval, notes."""
    return [f"- {s.id} (**{s.verdict}**): {s.text}; {C.effect_text(s.to_dict())}. {s.notes}" for s in subs]


def report_lines(
    command: str,
    timing: str,
    table: list[str],
    reference: list[str],
    subs: Sequence[C.SubClaim],
    embed: list[str],
) -> list[str]:
    """The report: the per-variant ``table`` (:func:`~mmicl_interp.sweep.published_compare.step_table`),
    the ``reference`` beside it, the verdicts of ``subs`` and the ``embed`` init section."""
    return [
        "# Fidelity: the `published` config against the published code",
        "",
        f"Command: `{command}` ({timing}).",
        "",
        "Mean over 3 seeds with the range (min-max); side per seed at step 2000: ICL (icl >= 0.8),",
        f"IWL (iwl >= 0.6 and icl < the plateau {PLATEAU}), else neither.",
        "",
        *table,
        "",
        *reference,
        "",
        "### Verdicts",
        "",
        *verdict_lines(subs),
        "",
        "## The input embedding's init (default config, d_embed 32)",
        "",
        *embed,
    ]


__all__ = [
    "PUBLISHED_CELL",
    "VERBS",
    "boundary_subclaims",
    "cell_verdict",
    "final_icl",
    "report_lines",
    "run_evidence",
    "side_subclaim",
    "side_verdict",
    "undone_subclaim",
    "variant",
    "verdict_lines",
]
