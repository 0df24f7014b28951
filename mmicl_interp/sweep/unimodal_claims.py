"""The sub-claims of the single-modality claim scripts (claims 1, 2, 3 and ``paper_arch``), built
from their per-run tables alone, so that ``--from-results`` re-judges them from a committed CSV.

Every comparison pairs runs by seed: the runs of one seed share task, model and data seeds, so
two arms (two values of a key) are compared seed by seed.

- A difference of a per-run value between two arms (claim 1a, 1d; claim 2e/2f): the paired t
  interval of the per-seed differences (:func:`~mmicl_interp.sweep.claims.judge_difference`);
  a mean over seeds (1b, 1c, 1e, 1f: icl relative to the context-label plateau,
  ``(acc - B/N) / (1 - B/N)``, :func:`~mmicl_interp.analyses.stats.icl_relative`) gets the t
  interval of the mean (:func:`~mmicl_interp.sweep.claims.judge_mean`), capped at weak where the
  value compared was chosen after the fact (the best of several eps).
- A threshold (claims 2a/2b, 3, P2): each seed's own crossing of icl 0.5 along K
  (:func:`~mmicl_interp.sweep.summary.seed_crossings`, log-interpolated, with the grid cell
  ``(lo, hi]`` it lies in); two arms are compared by the per-seed log ratio of their crossings,
  ``exp(mean log(K_a / K_b))`` with its paired t interval, widened to the ratio of the grid
  cells (the grid rule of :func:`~mmicl_interp.sweep.claims.judge_crossing_ratio`: an
  interpolated crossing is only known to lie in its cell). A compared run still moving at the
  end (icl not at a plateau) caps the verdict at weak.
- A crossing against a published bracket ``(a, b]`` (P1): the geometric mean of the seeds'
  crossings with its t interval, widened to the seeds' grid cells (:func:`bracket_subclaim`).
- An onset delay (2c/2d): the per-seed difference of the half-rise icl onsets, judged with the
  delay rule (:func:`~mmicl_interp.sweep.claims.judge_delay`: a delay within the checkpoint
  spacing around the onsets does not count), at the largest K where both arms learned ICL.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from mmicl_interp.sweep import claims as C
from mmicl_interp.sweep import summary as S
from mmicl_interp.sweep.claim_script import plateau_note

K = "task.K"
POS = "model.positions"
RATIO_LABEL = "crossing K, RoPE / one-hot (geometric mean of the per-seed ratios)"
"""The effect label of a RoPE / one-hot crossing ratio (claims 2a/2b and P2)."""
Judge = Callable[[pd.DataFrame, Path], list[C.SubClaim]]


# --------------------------------------------------------------------------- rows of a per-run table
def sweep_parts(runs: pd.DataFrame, whole: Sequence[str] = ()) -> Iterator[tuple[str, pd.DataFrame]]:
    """Per sweep of a per-run table of several (a ``grid`` column; in the table's order): its
    name and its rows without the columns only other sweeps fill, with ``whole`` keys back as
    integers (:func:`~mmicl_interp.sweep.summary.whole_numbers`: the concat made them floats)."""
    for name, part in runs.groupby("grid", sort=False):
        yield str(name), S.whole_numbers(part.dropna(axis=1, how="all"), list(whole))


def run_counts(part: pd.DataFrame, keys: Sequence[str], evidence: dict | None = None) -> dict:
    """A sweep's evidence fields: its runs, the seeds behind each point of ``keys``
    (:func:`~mmicl_interp.sweep.claims.n_seeds`) and the ``evidence`` the table cannot give."""
    return dict(n_runs=len(part), n_seeds=C.n_seeds(part, list(keys)), **(evidence or {}))


def at_seed(rows: pd.DataFrame, column: str, key: str, value: Hashable) -> pd.Series:
    """``column`` of the runs at ``key == value``, indexed by seed (to pair arms seed by seed)."""
    return rows[rows[key] == value].set_index(S.seed_key(rows))[column]


def arm_crossings(runs: pd.DataFrame, by: str, value: str = "icl", key: str = K) -> dict:
    """Each seed's crossing of 0.5 by the per-run ``value`` along ``key``
    (:func:`~mmicl_interp.sweep.summary.seed_crossings`), per value of ``by`` (an arm)."""
    crossings = S.seed_crossings(runs, key, by=[by], value=value)
    return {v: part for v, part in crossings.groupby(by)}


def moving_of(runs: pd.DataFrame, moving: Sequence[str] | None, by: str, arms: Iterable) -> list[str] | None:
    """The runs of ``moving`` (still moving at the end; None: not known) whose ``by`` is one of
    ``arms``: the runs that cap a comparison of those arms."""
    if moving is None:
        return None
    arm = dict(zip(runs["run"], runs[by], strict=False))
    arms = set(arms)
    return [r for r in moving if arm.get(r) in arms]


def csv_judge(subclaims: Callable, report: str, keys: Sequence[str]) -> Judge:
    """The ``judge(runs, csv)`` of a script whose ``subclaims(runs, common, moving)`` takes the
    still-moving runs: those come from the per-run table or, for an older CSV, from the Markdown
    ``report`` beside it (:func:`~mmicl_interp.sweep.claims.moving_runs`)."""

    def judge(runs: pd.DataFrame, csv: Path) -> list[C.SubClaim]:
        moving = C.moving_runs(runs, csv.parent / report)
        return subclaims(runs, run_counts(runs, keys), moving)

    return judge


def rejudge_csvs(
    args: argparse.Namespace, key: str, title: str, script: str, judge: Callable, default: str, pattern: str
) -> None:
    """``--from-results`` over several per-run CSVs: ``--from-results CSV`` (or ``--out/default``)
    or, without a CSV, every ``pattern`` file in ``--out``; section ``key`` is re-judged
    (``judge(runs)``) and the sub-claims of sweeps not in the CSVs are kept."""
    if args.from_results:
        csvs = [S.from_results_path(args, default)]
    else:
        csvs = sorted(Path(args.out).glob(pattern))
        if not csvs:
            raise SystemExit(f"--from-results: no {pattern} in {args.out}")
    runs = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True).drop_duplicates(["grid", "run"])
    path = Path(args.out) / "claims.json"
    section = C.Section(key, title, judge(runs), C.command_line(script))
    C.rejudge_section(path, section, " and ".join(c.name for c in csvs), keep=True)
    print(f"re-judged section {key} of {path} from {', '.join(str(c) for c in csvs)}")


# --------------------------------------------------------------------------- claim 1
def k_extremes_subclaim(sid: str, part: pd.DataFrame, common: dict, min_effect: float) -> C.SubClaim:
    """Small K gives IWL, large K ICL: final icl at the largest K minus at the smallest, paired
    by seed; the notes give each seed's crossing K and the smallest K's iwl and icl."""
    k = part[K]
    judged = C.judge_difference(
        at_seed(part, "icl", K, k.min()), at_seed(part, "icl", K, k.max()), min_effect=min_effect
    )
    crossings = S.seed_crossings(part, K, value="icl")
    small = part[k == k.min()]
    return judged.subclaim(
        sid,
        "small K gives IWL, large K gives ICL",
        f"final icl, K = {k.max()} minus K = {k.min()}",
        f"icl crosses 0.5 at K {C.crossing_text(crossings)} per seed; at K = {k.min()} iwl "
        f"{small['iwl'].mean():.3f}, icl {small['icl'].mean():.3f}",
        **common,
    )


def cue_subclaims(
    ids: tuple[str, str], key: str, part: pd.DataFrame, common: dict, min_effect: float, common_B: int
) -> tuple[C.SubClaim, C.SubClaim | None]:
    """Burstiness (``key`` task.B) or within-class noise (task.eps) moves a model to ICL: the mean
    over seeds of icl relative to its context-label plateau at the largest B, or at the eps with
    the highest mean (chosen after the fact: at most weak); ``ids[1]``: the same on the common
    ``common_B`` icl suite (columns ``icl_b<B>_rel``, ``icl_b<B>``, ``ih_b<B>``; None without them)."""
    means = part.groupby(key)["icl_rel"].mean()
    best = means.idxmax() if key == "task.eps" else part[key].max()
    top = part[part[key] == best]
    after_the_fact = key == "task.eps"  # the best of several eps: selection inflates it
    what = "burstiness" if key == "task.B" else "within-class noise"
    chosen = "the largest B" if key == "task.B" else "the eps with the highest mean, chosen after the fact"
    lowest = part[part[key] == part[key].min()]
    judged = C.judge_mean(top["icl_rel"], min_effect=min_effect, at_most_weak=after_the_fact)
    own = judged.subclaim(
        ids[0],
        f"{what} moves a model to ICL",
        f"icl relative to the context-label plateau at {S.short(key)} = {best} ({chosen})",
        f"raw icl {lowest['icl'].mean():.3f} -> {top['icl'].mean():.3f} and iwl "
        f"{lowest['iwl'].mean():.3f} -> {top['iwl'].mean():.3f} from {S.short(key)} = "
        f"{part[key].min()} to {best}; plateau B/N = {top['plateau'].iloc[0]:.3f}",
        **common,
    )
    acc, ih, rel = f"icl_b{common_B}", f"ih_b{common_B}", f"icl_b{common_B}_rel"
    if rel not in part:
        return own, None
    judged = C.judge_mean(top[rel], min_effect=min_effect, at_most_weak=after_the_fact)
    per_value = part.groupby(key)[[acc, ih]].mean()
    shared = judged.subclaim(
        ids[1],
        f"{what} moves a model to ICL, scored on one common B = {common_B} icl suite",
        f"icl on the common B = {common_B} suite relative to its context-label plateau "
        f"({common_B}/N), at {S.short(key)} = {best} ({chosen})",
        "per value (icl, best ih) on the common suite: "
        + "; ".join(f"{S.short(key)} = {v}: {r[acc]:.3f}, {r[ih]:.3f}" for v, r in per_value.iterrows())
        + f"; its plateau is {common_B}/N",
        **common,
    )
    return own, shared


def zipf_subclaim(sid: str, part: pd.DataFrame, common: dict, min_effect: float) -> C.SubClaim:
    """Zipf alpha ~ 1 lets ICL and IWL coexist: iwl of the Zipf runs (largest alpha) minus the
    uniform runs' (smallest), paired by seed, at the smallest K where Zipf's mean icl reaches
    0.5 ("not tested" when none does): below it a Zipf run is IWL, not coexistence."""
    zipf = part[part["task.alpha"] == part["task.alpha"].max()]
    uniform = part[part["task.alpha"] == part["task.alpha"].min()]
    icl_k = zipf.groupby(K)["icl"].mean()
    learned = icl_k[icl_k >= 0.5]
    below = ", ".join(
        f"K = {kk}: icl {v:.3f}, iwl {zipf[zipf[K] == kk]['iwl'].mean():.3f}"
        for kk, v in icl_k.items()
        if v < 0.5
    )
    text = "Zipf alpha ~ 1 lets ICL and IWL coexist"
    notes = f"Zipf runs below icl 0.5 are IWL, not coexistence ({below or 'none'})"
    if learned.empty:
        return C.SubClaim(sid, text, "not tested", notes=f"no K with Zipf icl >= 0.5; {notes}", **common)
    kk = learned.index.min()
    judged = C.judge_difference(
        at_seed(uniform, "iwl", K, kk), at_seed(zipf, "iwl", K, kk), min_effect=min_effect
    )
    return judged.subclaim(
        sid,
        text,
        f"iwl, Zipf minus uniform, at K = {kk}, the smallest K where Zipf icl >= 0.5 ({learned[kk]:.3f})",
        notes,
        **common,
    )


# --------------------------------------------------------------------------- claim 2 and P2
def rope_ratio_subclaim(
    sid: str, text: str, arms: dict, pos: str, name: str, capped: bool, tail: str, common: dict
) -> C.SubClaim:
    """The crossing K of the ``pos`` arm over one-hot's, paired by seed, with the grid rule
    (module docstring), at most weak when ``capped``; ``name`` names the arm in the notes,
    ``tail`` ends them (the plateau check)."""
    judged = C.judge_crossing_ratio(arms[pos], arms["onehot"], at_most_weak=capped)
    return judged.subclaim(
        sid,
        text,
        RATIO_LABEL,
        f"crossing K per seed: {name} {C.crossing_text(arms[pos])} vs one-hot "
        f"{C.crossing_text(arms['onehot'])}{tail}",
        **common,
    )


def shared_learned_k(means: pd.Series, pos: str, base: str = "onehot") -> Hashable | None:
    """The largest K where the mean final icl of both ``pos`` and ``base`` reaches 0.5
    (``means`` indexed by (positions, K)); None when there is none."""
    ks = sorted({k for _, k in means.index})
    both = [k for k in ks if means.get((pos, k), 0) >= 0.5 and means.get((base, k), 0) >= 0.5]
    return both[-1] if both else None


def circuit_subclaims(
    ids: tuple[str, str], label: str, runs: pd.DataFrame, pos: str, common: dict, ih_min_effect: float
) -> list[C.SubClaim]:
    """RoPE arm ``pos`` against one-hot at the largest K where both learned ICL
    (:func:`shared_learned_k` of the mean ``final_icl``), paired by seed: ``ids[0]`` the
    half-rise icl onset delayed (delay rule, the checkpoint spacing ``icl_resolution``: the larger
    of the two arms'), ``ids[1]`` the final best-head ``final_ih`` lower (by ``ih_min_effect``).
    Both "not tested" when there is no such K."""
    final_icl = runs.groupby([POS, K])["final_icl"].mean()
    k = shared_learned_k(final_icl, pos)
    texts = [f"{label} delays the ICL onset", f"{label} weakens the induction pattern"]
    if k is None:
        return [
            C.SubClaim(sid, text, "not tested", notes="no K where both learned ICL", **common)
            for sid, text in zip(ids, texts, strict=True)
        ]
    a = runs[(runs[POS] == "onehot") & (runs[K] == k)].set_index(S.seed_key(runs))
    b = runs[(runs[POS] == pos) & (runs[K] == k)].set_index(S.seed_key(runs))
    res = float(pd.concat([a["icl_resolution"], b["icl_resolution"]]).max())
    per_seed = (b["icl_onset"] - a["icl_onset"]).dropna()
    plateau_d = b["icl_onset_plateau"].mean() - a["icl_onset_plateau"].mean()
    abs_d = b["steps_to_icl_half"].mean() - a["steps_to_icl_half"].mean()
    ph = b["final_prev_token_label"].mean() - a["final_prev_token_label"].mean()
    judged = [
        C.judge_delay(a["icl_onset"], b["icl_onset"], res),
        C.judge_difference(a["final_ih"], b["final_ih"], expected="negative", min_effect=ih_min_effect),
    ]
    labels = [
        f"half-rise icl onset, RoPE minus one-hot, steps (K = {k})",
        f"final best-head ih, RoPE minus one-hot (K = {k})",
    ]
    notes = [
        f"per-seed delays {', '.join(f'{d:+.0f}' for d in per_seed)} steps; checkpoint spacing "
        f"{res:.0f} steps; leaving-the-plateau onset {plateau_d:+.0f} steps; steps to the absolute "
        f"level 0.5 {abs_d:+.0f} (mixes a lower ceiling with lateness)",
        f"final best PH-label {ph:+.3f}; RoPE's icl is also lower "
        f"({final_icl[(pos, k)]:.3f} vs {final_icl[('onehot', k)]:.3f})",
    ]
    return [
        j.subclaim(sid, text, lab, note, **common)
        for j, sid, text, lab, note in zip(judged, ids, texts, labels, notes, strict=True)
    ]


# --------------------------------------------------------------------------- claim 3
def shift_subclaim(
    sid: str, size: str, runs: pd.DataFrame, common: dict, text: str, note: str = "", small_shift: float = 1.5
) -> C.SubClaim:
    """The crossing K of the largest ``size`` over the smallest's, paired by seed, with the grid
    rule (module docstring), from one K sweep's per-run rows (``size``, K, seed, icl,
    still_moving); a compared run still moving caps it at weak. A ratio below ``small_shift`` is
    called a small shift in the notes; ``note`` goes first in them."""
    arms = arm_crossings(runs, size)
    small, big = min(arms), max(arms)
    compared = runs[runs[size].isin([small, big])]
    moving = compared[compared["still_moving"].astype(bool)]["run"].tolist()
    judged = C.judge_crossing_ratio(arms[big], arms[small], at_most_weak=bool(moving))
    cells = "; ".join(f"{S.short(size)} {v}: {C.crossing_text(part)}" for v, part in arms.items())
    icl = runs.groupby([size, K])["icl"].mean().unstack(K).sort_index()
    spread = icl.max() - icl.min()
    k = spread.idxmax()
    trend = " -> ".join(f"{icl.loc[v, k]:.3f}" for v in icl.index)
    effect = judged.effect if judged.effect is not None else math.nan
    notes = (
        (f"{note}; " if note else "")
        + f"crossing K per seed: {cells}; "
        + (
            f"{'a small shift' if effect < small_shift else 'a shift'} ({effect:.2f}x)"
            if not math.isnan(effect)
            else f"no per-seed ratio ({S.short(size)} {big} or {small} never reaches icl 0.5 in some seed)"
        )
        + f"; at K = {k} icl goes {trend} from {S.short(size)} {icl.index[0]} to "
        f"{icl.index[-1]}; {plateau_note(moving)}"
    )
    return judged.subclaim(
        sid,
        text,
        f"crossing K, {S.short(size)} = {big} / {small} (geometric mean of the per-seed ratios)",
        notes,
        **common,
    )


# --------------------------------------------------------------------------- P1
def bracket_verdict(estimate: float, lo: float, hi: float, n: int, bracket: tuple[float, float]) -> str:
    """Where a crossing's interval ``[lo, hi]`` lies against the bracket ``(a, b]``: inside it
    supported (weak under 3 seeds); disjoint (``hi <= a`` or ``lo >= b``) not supported;
    overlapping weak. A NaN ``estimate`` (a seed never crossed): not supported when ``lo >= b``,
    else not tested."""
    a, b = bracket
    if math.isnan(estimate):
        return "not supported" if lo >= b else "not tested"
    if a <= lo and hi <= b:
        return "supported" if n >= 3 else "weak"
    if hi <= a or lo >= b:
        return "not supported"
    return "weak"


def bracket_subclaim(
    sid: str, text: str, rows: pd.DataFrame, bracket: tuple[float, float], common: dict, tail: str = ""
) -> C.SubClaim:
    """Does an arm's crossing lie in the K bracket ``(a, b]``? ``rows``: its per-seed crossings.
    The crossing: the geometric mean over seeds with the t interval of log K, widened to the
    seeds' grid cells (:func:`~mmicl_interp.sweep.claims.widen_to_cells`), judged by
    :func:`bracket_verdict`; ``tail`` ends the notes."""
    est, cell = C.crossing_estimate(rows)
    lo, hi = C.widen_to_cells(est.bounds, cell)
    a, b = bracket
    return C.SubClaim(
        sid,
        text,
        bracket_verdict(est.estimate, lo, hi, est.n, bracket),
        est.estimate,
        "crossing K, one-hot (geometric mean over seeds)",
        [lo, hi],
        f"{est.kind}, widened to the grid cells",
        notes=f"crossing K per seed {C.crossing_text(rows)}; grid rule: the crossing is interpolated "
        f"inside that cell, so the interval is widened to at least it (seeds alone: "
        f"[{est.lo:.0f}, {est.hi:.0f}]); compared with the published bracket ({a}, {b}] as half-open "
        f"cells{tail}",
        **common,
    )


__all__ = [
    "K",
    "POS",
    "RATIO_LABEL",
    "arm_crossings",
    "at_seed",
    "bracket_subclaim",
    "bracket_verdict",
    "circuit_subclaims",
    "csv_judge",
    "cue_subclaims",
    "k_extremes_subclaim",
    "moving_of",
    "rejudge_csvs",
    "rope_ratio_subclaim",
    "run_counts",
    "shared_learned_k",
    "shift_subclaim",
    "sweep_parts",
    "zipf_subclaim",
]
