"""The multimodal asymmetry (SCIENCE.md section 4, claim 4), measured with one command.

Per seed (``--seeds``, default 0 1 2; each sets task, model and training seeds together) it
trains stage 1 (``mmicl_interp/configs/mm_stage1.toml``, ``--stage1-steps``) once, then per K2
one run of each arm (``--arms``), all multimodal runs ``--steps`` long unless said otherwise:

- ``stage2``: the stage-1 decoder of that seed, frozen (projector, final norm, read-out train);
- ``early``: early fusion, the same multimodal training from scratch;
- ``random``: stage 2 with the same freezing but a freshly initialised decoder;
- ``unfrozen``: stage 2 from the stage-1 decoder with nothing frozen;
- ``matched``: early fusion for stage-1 + stage-2 steps (the pipeline's total budget);
- ``highk1``: ``matched`` on high-K1 M1 data (``task.m1_pool = "all"``: each exemplar's M1
  item from any of the K1 M1 classes of its label, not the M2 class's fixed partner);

and two sweeps at ``--low-k2`` (default the smallest K2), both through stage 1 -> stage 2:

- ``size``: decoders of ``--sizes`` (``d_embed x n_layers x n_heads``; d_embed 0: no input
  embedding, as shipped), each with its own stage 1 (the shipped size reuses the runs above); a
  size whose stage 1 did not learn ICL is left out of the verdict and named;
- ``encoder``: M2 encoders (``mm_encoder``) pretrained for each of ``--encoder-steps`` steps
  (so to several accuracies), loaded frozen in front of the projector of a stage-2 run.

It writes the final accuracies as Markdown (``multimodal_asymmetry.md``), per run as CSV
(``multimodal_asymmetry_runs.csv``), a plotly figure, and the verdicts to section "4" of
``claims.json`` (4a, 4d-4g: differences at the smallest K2; 4b: size at the shipped width, more
layers and heads; 4h: size at a growing width, the ``dE`` decoders; 4c: encoder strength;
every difference paired by seed, since a seed's arms share its task seed and stage-1 run: the
paired t interval of the per-seed differences). ``--from-results`` re-judges section 4 from
``multimodal_asymmetry_runs.csv`` alone (no training, no run folders). Runs land in ``--runs``
(default ``checkpoints/``) and are reused when complete (``mmicl train`` skips them); an
interrupted one is resumed. ``--workers N`` trains N runs at once, in two waves (stage-1 and
encoder runs, and every run that loads none; then the runs that load them). The wall time in
``claims.json`` is the runs' recorded training time plus the analysis, the same whether runs
were trained now or reused.

    .venv/bin/python analyses/multimodal_asymmetry.py [--k2 32 128 512 2048 8192] [--steps 1000]
        [--stage1-steps 1000] [--seeds 0 1 2] [--arms stage2 early random ...]
        [--sizes 0x2x1 0x3x2 0x4x4 32x2x1 64x3x2 128x4x4] [--encoder-steps 10 40 150 500] [--eval-size 1000]
        [--device cuda] [--workers 2]
    .venv/bin/python analyses/multimodal_asymmetry.py --from-results [CSV]

``--merge [CSV]`` reruns part of the runs into the committed table: this command's rows replace
the rows of the same run and role in ``multimodal_asymmetry_runs.csv`` (every other row kept),
and the Markdown, figure and section 4 come from the merged table, e.g. the learned-embedding
size points alone::

    .venv/bin/python analyses/multimodal_asymmetry.py --arms size --sizes 32x2x1 64x3x2 128x4x4 --merge
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mmicl_interp.checkpoints import read_manifest, read_metrics
from mmicl_interp.config import ConfigError, RunConfig, load_config
from mmicl_interp.sweep import LocalExecutor, train_runs
from mmicl_interp.sweep.claims import (
    Section,
    SubClaim,
    command_line,
    judge_difference,
    write_section,
)
from mmicl_interp.sweep.executors import available_cores
from mmicl_interp.sweep.summary import add_from_results, rejudge_from_results, save_figure

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("icl", "icl_m2_only", "icl_m1_only", "iwl", "test")
ARMS: dict[str, str] = {
    "stage2": "stage 2",
    "early": "early fusion",
    "random": "frozen random decoder",
    "unfrozen": "unfrozen stage 2",
    "matched": "early fusion, matched budget",
    "highk1": "early fusion, high-K1 M1",
}
"""The K2 arms: option name -> label in the table, the CSV and the figure."""
SWEEPS: tuple[str, ...] = ("size", "encoder")
ALL_ARMS: tuple[str, ...] = (*ARMS, *SWEEPS)
COLOURS = dict(zip(ARMS, ("#1f77b4", "#d62728", "#7f7f7f", "#17becf", "#ff7f0e", "#9467bd"), strict=True))
SIZES = ("0x2x1", "0x3x2", "0x4x4", "32x2x1", "64x3x2", "128x4x4")
"""Default decoder sizes: the shipped one (no input embedding, d_model 65 with the one-hot block;
its runs are reused), deeper and more heads at that width, and wider through a learned input
embedding (d_embed 32, 64, 128)."""
TITLE = "Multimodal asymmetry"
RUNS_CSV = "multimodal_asymmetry_runs.csv"
MIN_EFFECT_K2 = 0.2
"""Smallest icl difference at the smallest K2 that counts as more than weak (4a, 4d-4g)."""
MIN_EFFECT_SWEEP = 0.1
"""Smallest icl difference between the ends of the size / encoder sweeps that counts (4b, 4c)."""


# --------------------------------------------------------------------------- runs
def _final(run_dir: Path) -> dict[str, float]:
    rows = read_metrics(run_dir)
    last = max(r["step"] for r in rows)
    return {r["suite"]: r["accuracy"] for r in rows if r["step"] == last}


def parse_size(text: str) -> tuple[int, int, int]:
    """``"64x3x2"`` -> (d_embed 64, n_layers 3, n_heads 2); d_embed 0: no input embedding (the
    shipped model: the D-wide input itself is the residual stream beside the one-hot block)."""
    parts = text.lower().split("x")
    ok = len(parts) == 3 and all(p.isdigit() for p in parts) and int(parts[1]) > 0 and int(parts[2]) > 0
    if not ok:
        raise ConfigError(
            "--sizes",
            f"each size is d_embed x n_layers x n_heads (d_embed 0: no embedding), e.g. 0x3x2; got {text!r}",
        )
    d, layers, heads = (int(p) for p in parts)
    return d, layers, heads


def size_tag(size: tuple[int, int, int]) -> str:
    """Run-name tag of a decoder size: ``l3_h2`` without an embedding, ``d64_l3_h2`` with one."""
    d, layers, heads = size
    return f"l{layers}_h{heads}" if d == 0 else f"d{d}_l{layers}_h{heads}"


@functools.cache
def shipped_size() -> tuple[int, int, int]:
    """The size of the shipped ``mm_stage1`` decoder: its runs serve that point of the size sweep."""
    model = load_config("mm_stage1").model
    return model.d_embed or 0, model.n_layers, model.n_heads


class Runner:
    """Plans the runs of one invocation, trains them in waves, keeps one row per run and role.

    A wave is a set of runs that do not depend on each other: they train in parallel on
    ``workers`` processes (:func:`~mmicl_interp.sweep.train_runs`; complete runs are reused,
    killed ones resumed). Stage 2 loads its stage-1 run, so the stage-1 and encoder runs go in
    the first wave and the runs that load them in the second. A run planned twice (the shipped
    decoder's runs are also the size sweep's smallest point) trains once and gets a row per role.
    """

    def __init__(self, runs: Path, seeded_extra: list[str], workers: int = 1):
        self.runs = runs
        self.extra = seeded_extra  # overrides every run gets (e.g. task.eval_size)
        self.workers = workers
        self.rows: list[dict] = []
        self._planned: list[tuple[str, RunConfig, dict]] = []

    def plan(self, config_name: str, run_name: str, seed: int, overrides: list[str], **labels) -> Path:
        """Plan ``config_name`` with ``overrides`` into ``runs/run_name`` for the next :meth:`train`."""
        seeded = [f"{field}={seed}" for field in ("task.seed", "model.seed", "train.seed")]
        config = load_config(config_name, [*overrides, *seeded, *self.extra, f'name="{run_name}"'])
        self._planned.append((run_name, config, {**labels, "seed": seed}))
        return self.runs / run_name

    def train(self) -> None:
        """Train (or reuse) every planned run in parallel; one row per run, in plan order."""
        planned, self._planned = self._planned, []
        if not planned:
            return
        unique = {name: config for name, config, _ in planned}  # a run in two roles trains once
        for name, config, _ in planned:
            if config != unique[name]:
                raise ValueError(f"run {name} is planned with two different configs")
        results = dict(
            zip(
                unique,
                train_runs(
                    [(name, config, self.runs / name) for name, config in unique.items()],
                    executor=LocalExecutor(self.workers),
                    label=f"claim 4, wave of {len(unique)}",
                ),
                strict=True,
            )
        )
        for name, config, labels in planned:
            result = results[name]
            manifest = read_manifest(self.runs / name)
            final = _final(self.runs / name)
            row = {
                **labels,
                "run": name,
                "steps": config.train.steps,
                **{s: final.get(s, math.nan) for s in SUITES},
                "n_params": manifest.get("n_params"),
                "wall_s": round(float(manifest.get("wall_time_s") or 0.0), 1),
                "reused": result.already_complete,
            }
            self.rows.append(row)
            shown = "  ".join(f"{s} {final[s]:.3f}" for s in SUITES if s in final)
            print(f"seed {labels['seed']} {name:44s} {shown}", flush=True)


def _own_size(size: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    """``size``, or None where it is the shipped decoder's (whose runs it then shares)."""
    return None if size == shipped_size() else size


def stage1_name(seed: int, size: tuple[int, int, int] | None = None) -> str:
    """Run name of the stage-1 run of ``seed`` and decoder ``size`` (None: the shipped one)."""
    size = _own_size(size)
    return f"mm_stage1_seed{seed}" if size is None else f"mm_stage1_{size_tag(size)}_seed{seed}"


def stage1(runner: Runner, seed: int, steps: int, size: tuple[int, int, int] | None = None) -> Path:
    """Plan the stage-1 run of ``seed`` (and decoder ``size``; None: the shipped model)."""
    overrides = [f"train.steps={steps}", *_size_overrides(_own_size(size))]
    tag = size_tag(size) if size else ""
    return runner.plan("mm_stage1", stage1_name(seed, size), seed, overrides, arm="stage 1", size=tag)


def _size_overrides(size: tuple[int, int, int] | None) -> list[str]:
    if size is None:
        return []
    d, layers, heads = size
    embed = [f"model.d_embed={d}"] if d else []
    return [*embed, f"model.n_layers={layers}", f"model.n_heads={heads}"]


NEEDS_STAGE1 = ("stage2", "unfrozen")
"""The K2 arms that load a stage-1 run (second wave)."""


def k2_arm(runner: Runner, arm: str, k2: int, seed: int, steps: int, stage1_steps: int, s1: Path | None):
    """Plan one run of a K2 arm (see the module docstring)."""
    base = [f"task.K2={k2}"]
    init = [f'pipeline.init_from="{s1}"']
    spec = {
        "stage2": ("mm_stage2", "mm_stage2", [*init], steps),
        "early": ("mm_early_fusion", "mm_early_fusion", [], steps),
        "random": ("mm_stage2", "mm_stage2_random", ['pipeline.init_from=""'], steps),
        "unfrozen": ("mm_stage2", "mm_stage2_unfrozen", [*init, "pipeline.freeze=[]"], steps),
        "matched": ("mm_early_fusion", "mm_early_fusion_matched", [], stage1_steps + steps),
        "highk1": ("mm_early_fusion", "mm_early_fusion_highK1", ['task.m1_pool="all"'], stage1_steps + steps),
    }
    config_name, prefix, extra, n = spec[arm]
    overrides = [*base, *extra, f"train.steps={n}"]
    runner.plan(config_name, f"{prefix}_K2_{k2}_seed{seed}", seed, overrides, arm=ARMS[arm], K2=k2)


def size_run(runner: Runner, size, k2: int, seed: int, steps: int) -> None:
    """Plan the stage-2 run of decoder ``size`` (its stage 1 trained in the first wave); the
    shipped size is the ``stage2`` arm's run."""
    own = _own_size(size)
    s1 = runner.runs / stage1_name(seed, size)
    overrides = [f"task.K2={k2}", f'pipeline.init_from="{s1}"', f"train.steps={steps}", *_size_overrides(own)]
    name = f"mm_stage2_K2_{k2}_seed{seed}" if own is None else f"mm_stage2_{size_tag(own)}_K2_{k2}_seed{seed}"
    runner.plan("mm_stage2", name, seed, overrides, arm="size", size=size_tag(size), K2=k2)


def encoder_name(enc_steps: int, k2: int, seed: int) -> str:
    return f"mm_encoder_K2_{k2}_steps{enc_steps}_seed{seed}"


def encoder_pretraining(runner: Runner, enc_steps: int, k2: int, seed: int) -> None:
    """Plan an M2 encoder pretrained for ``enc_steps`` steps (first wave)."""
    overrides = [f"task.K2={k2}", f"train.steps={enc_steps}"]
    runner.plan("mm_encoder", encoder_name(enc_steps, k2, seed), seed, overrides, arm="encoder pretraining")


def encoder_run(runner: Runner, enc_steps: int, k2: int, seed: int, steps: int, s1: Path) -> None:
    """Plan the stage-2 run behind that encoder, frozen (second wave)."""
    enc_dir = runner.runs / encoder_name(enc_steps, k2, seed)
    overrides = [
        f"task.K2={k2}",
        f"train.steps={steps}",
        f'pipeline.init_from="{s1}"',
        'model.encoder="mlp"',
        f'pipeline.encoder_from="{enc_dir}"',
        'pipeline.freeze=["embed", "blocks", "encoder"]',
    ]
    name = f"mm_stage2_enc{enc_steps}_K2_{k2}_seed{seed}"
    runner.plan("mm_stage2", name, seed, overrides, arm="encoder", K2=k2, encoder_steps=enc_steps)


# --------------------------------------------------------------------------- verdicts
def crossing(k2s: list[int], values: list[float], level: float = 0.5) -> str:
    """The smallest K2 whose accuracy reaches ``level`` ('none' if none does)."""
    for k2, value in zip(k2s, values, strict=True):
        if value >= level:
            return str(k2)
    return f"none up to {max(k2s)}"


def _not_run(sid: str, text: str, command: str, what: str) -> SubClaim:
    return SubClaim(sid, text, "not tested", command=command, notes=f"{what} not run by this command")


def _difference(
    sid: str,
    text: str,
    base: pd.Series,
    other: pd.Series,
    label: str,
    min_effect: float,
    common: dict,
    notes: str = "",
) -> SubClaim:
    """``other - base`` of final accuracies, one per seed (Series indexed by seed): every arm of a
    seed shares its task seed and stage-1 run, so the arms are compared seed by seed, by the
    paired t interval of the per-seed differences (:func:`~mmicl_interp.sweep.claims.judge_difference`)."""
    judged = judge_difference(base, other, min_effect=min_effect)
    seeds = len(set(base.index) & set(other.index))
    return judged.subclaim(
        sid,
        text,
        label,
        notes,
        n_runs=len(base) + len(other),
        n_unique_configs=len(base) + len(other),
        n_seeds=seeds,
        **common,
    )


def _by_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    """``column`` of ``rows`` indexed by seed (one run per seed)."""
    return rows.set_index("seed")[column] if len(rows) else pd.Series(dtype=float)


def k2_subclaims(table: pd.DataFrame, k2s: list[int], common: dict, command: str) -> list[SubClaim]:
    """4a and the controls 4d-4g: icl differences at the smallest K2."""
    k2 = min(k2s)
    at = table[table["K2"] == k2] if len(table) else table

    def arm(name: str, column: str = "icl") -> pd.Series:
        return _by_seed(at[at["arm"] == ARMS[name]], column) if len(at) else pd.Series(dtype=float)

    means = table.groupby(["arm", "K2"])["icl"].mean() if len(table) else pd.Series(dtype=float)

    def cross(name: str) -> str:
        part = [means.get((ARMS[name], k), math.nan) for k in sorted(k2s)]
        return crossing(sorted(k2s), [0.0 if math.isnan(v) else v for v in part])

    where = f"multimodal icl at K2 = {k2}"
    suffices = {"4a", "4g"}  # "a low K2 suffices": the arm itself must reach icl 0.5 there
    specs = [
        (
            "4a",
            "after stage 1, a low K2 suffices for multimodal ICL; from scratch it does not",
            "early",
            "stage2",
            f"{where}, stage 2 minus early fusion",
            "stage 2 gets a pretrained decoder plus the same steps as early fusion from scratch; the "
            "controls are 4d-4g",
        ),
        (
            "4d",
            "the stage-1 decoder, not the frozen architecture, makes stage 2 work",
            "random",
            "stage2",
            f"{where}, stage 2 minus a frozen random decoder",
            "same freezing and steps; the decoder from a fresh init instead of stage 1",
        ),
        (
            "4e",
            "stage 2 beats early fusion given the same total budget",
            "matched",
            "stage2",
            f"{where}, stage 2 minus early fusion for stage-1 + stage-2 steps",
            "",
        ),
        (
            "4f",
            "stage 2 beats early fusion on high-K1 M1 data (same total budget)",
            "highk1",
            "stage2",
            f"{where}, stage 2 minus early fusion with M1 from all K1 classes",
            "early fusion's M1 items from any M1 class of the label (task.m1_pool = all), not the "
            "M2 class's fixed partner",
        ),
        (
            "4g",
            "after stage 1, a low K2 suffices without freezing the decoder",
            "matched",
            "unfrozen",
            f"{where}, unfrozen stage 2 minus early fusion for the same total budget",
            "",
        ),
    ]
    out = []
    for sid, text, base, other, label, note in specs:
        a, b = arm(base), arm(other)
        if a.empty or b.empty:
            out.append(_not_run(sid, text, command, f"arm {base if a.empty else other}"))
            continue
        crossings = f"icl >= 0.5 from K2 = {cross(other)} ({ARMS[other]}), {cross(base)} ({ARMS[base]})"
        m2 = float((arm(other, "icl_m2_only") - arm(base, "icl_m2_only")).mean())
        short = (
            f"{ARMS[other]} itself stays below icl 0.5 at K2 = {k2} ({b.mean():.3f}): better than "
            f"{ARMS[base]}, but K2 = {k2} does not suffice"
            if sid in suffices and b.mean() < 0.5
            else ""
        )
        notes = "; ".join(
            p for p in (short, note, crossings, f"the same difference on icl_m2_only: {m2:.3f}") if p
        )
        sub = _difference(sid, text, a, b, label, MIN_EFFECT_K2, common, notes)
        if short and sub.verdict == "supported":
            sub.verdict = "weak"
        out.append(sub)
    return out


def size_subclaim(sizes: pd.DataFrame, common: dict, command: str, sid: str = "4b") -> SubClaim:
    """4b (and 4h): stage-2 icl at low K2, largest decoder minus smallest; 'weak' at best if not
    monotone."""
    text = "model scaling consistently helps multimodal ICL"
    if sizes.empty or sizes["size"].nunique() < 2:
        named = sorted(set(sizes["size"])) if len(sizes) else []
        sub = _not_run(sid, text, command, "the size sweep (two or more --sizes)")
        if named:
            s1 = sizes.groupby("size")["stage1_icl"].mean()
            sub.notes = "one size only (mean stage-1 icl): " + ", ".join(f"{z} ({s1[z]:.3f})" for z in named)
        return sub
    # a decoder that did not learn ICL in stage 1 has no circuit to hand on: it tests nothing
    s1_icl = sizes.groupby("size")["stage1_icl"].mean()
    dropped = [z for z, v in s1_icl.items() if not v >= 0.5]
    dropped_text = (
        "left out, stage 1 never learned ICL (mean stage-1 icl < 0.5): "
        + ", ".join(f"{z} ({s1_icl[z]:.3f})" for z in dropped)
        if dropped
        else ""
    )
    sizes = sizes[~sizes["size"].isin(dropped)]
    if sizes["size"].nunique() < 2:
        return SubClaim(
            sid,
            text,
            "not tested",
            command=command,
            notes=f"fewer than two sizes whose stage 1 learned ICL; {dropped_text}",
        )
    order = sizes.groupby("size")["n_params"].first().sort_values().index.tolist()
    small, large = sizes[sizes["size"] == order[0]], sizes[sizes["size"] == order[-1]]
    k2 = int(sizes["K2"].iloc[0])
    per = sizes.groupby("size")[["icl", "icl_m2_only", "n_params"]].mean().loc[order]
    monotone = bool((per["icl"].diff().dropna() >= 0).all())
    notes = (
        "mean stage-2 icl / icl_m2_only by size (decoder parameters): "
        + ", ".join(f"{s} ({int(r.n_params)}) {r.icl:.3f} / {r.icl_m2_only:.3f}" for s, r in per.iterrows())
        + f"; {'monotone' if monotone else 'not monotone'} in size"
        + (f"; {dropped_text}" if dropped else "")
    )
    sub = _difference(
        sid,
        text,
        _by_seed(small, "icl"),
        _by_seed(large, "icl"),
        f"stage-2 multimodal icl at K2 = {k2}, {order[-1]} minus {order[0]}",
        MIN_EFFECT_SWEEP,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(sizes)  # each stage-2 run has its own stage 1
    if sub.verdict == "supported" and not monotone:
        sub.verdict = "weak"
    return sub


def encoder_subclaim(enc: pd.DataFrame, common: dict, command: str) -> SubClaim:
    """4c: stage-2 icl_m2_only with the strongest pretrained encoder minus the weakest."""
    text = "a weak M2 encoder caps multimodal ICL"
    if enc.empty or enc["encoder_steps"].nunique() < 2:
        return _not_run("4c", text, command, "the encoder sweep (two or more --encoder-steps)")
    per = (
        enc.groupby("encoder_steps")[["encoder_acc", "icl", "icl_m2_only"]].mean().sort_values("encoder_acc")
    )
    weak, strong = per.index[0], per.index[-1]
    k2 = int(enc["K2"].iloc[0])
    rho = enc["encoder_acc"].rank().corr(enc["icl_m2_only"].rank()) if len(enc) > 2 else math.nan  # Spearman
    notes = (
        "the frozen encoder changes only the M2 route, so the effect is on icl_m2_only; mean encoder "
        "accuracy -> stage-2 icl / icl_m2_only by pretraining steps: "
        + ", ".join(
            f"{s}: {r.encoder_acc:.3f} -> {r.icl:.3f} / {r.icl_m2_only:.3f}" for s, r in per.iterrows()
        )
        + f"; Spearman over runs, encoder accuracy vs icl_m2_only: {rho:.3f}"
    )
    span = float(per["encoder_acc"].iloc[-1] - per["encoder_acc"].iloc[0])
    sub = _difference(
        "4c",
        text,
        _by_seed(enc[enc["encoder_steps"] == weak], "icl_m2_only"),
        _by_seed(enc[enc["encoder_steps"] == strong], "icl_m2_only"),
        f"stage-2 icl_m2_only at K2 = {k2}, encoder of {strong} minus {weak} pretraining steps",
        MIN_EFFECT_SWEEP,
        common,
        notes,
    )
    sub.n_runs = sub.n_unique_configs = 2 * len(enc[enc["encoder_steps"].isin([weak, strong])])
    if span < 0.2:
        sub.verdict = "not tested"
        lo, hi = per["encoder_acc"].iloc[0], per["encoder_acc"].iloc[-1]
        sub.notes = f"encoder accuracies span only {lo:.3f} to {hi:.3f}, too narrow to test; " + notes
    return sub


def split_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The per-run table (as written to ``multimodal_asymmetry_runs.csv``) split into the K2 arms,
    the size sweep (with each size's stage-1 parameter count ``n_params`` and that seed's stage-1
    icl ``stage1_icl``) and the encoder sweep."""
    if "size" in table:
        table = table.assign(size=table["size"].fillna("").astype(str))
    k2_table = table[table["arm"].isin(list(ARMS.values()))].copy()
    size_table = table[table["arm"] == "size"].copy()
    enc_table = table[table["arm"] == "encoder"].copy()
    if not size_table.empty:  # decoder size = the stage-1 run's parameter count (all trainable there)
        s1 = table[(table["arm"] == "stage 1") & (table["size"] != "")]
        size_table["n_params"] = size_table["size"].map(s1.groupby("size")["n_params"].first())
        s1_icl = s1.set_index(["size", "seed"])["icl"]  # did that decoder learn ICL in stage 1?
        size_table["stage1_icl"] = [
            s1_icl.get((z, sd), math.nan)
            for z, sd in zip(size_table["size"], size_table["seed"], strict=True)
        ]
    return k2_table, size_table, enc_table


def varied_width(sizes: pd.Series) -> pd.Series:
    """True for the decoder sizes widened through a learned input embedding (``dE_lL_hH``), False
    for those at the shipped width (``lL_hH``: no embedding, d_model 65)."""
    return sizes.fillna("").astype(str).str.startswith("d")


def subclaims(table: pd.DataFrame, k2s: list[int], common: dict, command: str) -> list[SubClaim]:
    """Section 4's sub-claims (4a-4h) from the per-run table. The size sweep is judged per family:
    4b at the shipped width (more layers and heads), 4h at a growing width (a learned input
    embedding, with more layers and heads)."""
    k2_table, size_table, enc_table = split_tables(table)
    subs = k2_subclaims(k2_table, list(k2s), common, command)
    varied = varied_width(size_table["size"]) if len(size_table) else pd.Series(dtype=bool)
    fixed = size_subclaim(size_table[~varied] if len(size_table) else size_table, common, command)
    wide = size_subclaim(size_table[varied] if len(size_table) else size_table, common, command, sid="4h")
    fixed.text += ", at a fixed width (more layers and heads)"
    wide.text += (
        ", at a growing width (a learned input embedding, d_embed 32 -> 128, with more layers and heads)"
    )
    family = [
        (fixed, "the shipped width (no input embedding, d_model 65); the widened decoders are 4h"),
        (wide, "widened through a learned input embedding (d_model d_embed + 33); the shipped width is 4b"),
    ]
    for sub, note in family:
        sub.notes = "; ".join(p for p in (note, sub.notes) if p)
    subs.insert(1, fixed)
    subs.insert(2, encoder_subclaim(enc_table, common, command))
    subs.append(wide)
    return subs


def merge_rows(committed: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``committed`` (a per-run table) with the rows of ``new`` merged in: a row of ``new`` replaces
    the committed row of the same run and role (``run``, ``arm``) in place, one with no such row is
    appended; every other committed row is kept as it was."""
    key = ["run", "arm"]
    if new.duplicated(key).any():
        raise ValueError("merge_rows: the new table has two rows of one run and role")
    replace = new.set_index(key)
    columns = [*committed.columns, *(c for c in new.columns if c not in committed.columns)]
    rows = []
    for row in committed.to_dict("records"):
        k = (row["run"], row["arm"])
        if k in replace.index:  # the new row whole: no stale value of the old one survives
            row = {**dict.fromkeys(row, math.nan), **replace.loc[k].to_dict(), "run": k[0], "arm": k[1]}
        rows.append(row)
    seen = set(zip(committed["run"], committed["arm"], strict=True))
    rows += [r for r in new.to_dict("records") if (r["run"], r["arm"]) not in seen]
    merged = pd.DataFrame(rows, columns=columns)
    for column in ("K2", "encoder_steps", "n_params"):  # integers with gaps (rows of other arms)
        if column in merged:
            merged[column] = pd.to_numeric(merged[column]).astype("Int64")
    return merged


def from_results(args: argparse.Namespace) -> None:
    """``--from-results``: section 4 of claims.json re-judged from ``multimodal_asymmetry_runs.csv``
    alone (no training, no run folders)."""
    rejudge_from_results(args, RUNS_CSV, "4", TITLE, "multimodal_asymmetry", judged_runs, read=read_runs)


def read_runs(csv: Path) -> pd.DataFrame:
    """The per-run table, its integer columns kept integer where a row has none."""
    table = pd.read_csv(csv)
    for column in ("K2", "encoder_steps", "n_params"):
        if column in table:
            table[column] = table[column].astype("Int64")
    return table


def judged_runs(table: pd.DataFrame, _csv: Path) -> list[SubClaim]:
    """Section 4's sub-claims from the per-run table."""
    k2s = sorted(int(k) for k in table["K2"].dropna().unique())
    stage2 = table[table["arm"] == ARMS["stage2"]]
    common = dict(steps=int(stage2["steps"].max()) if len(stage2) else None)
    return subclaims(table, k2s, common, command_line("multimodal_asymmetry"))


# --------------------------------------------------------------------------- output
def _mean_range(values: pd.Series) -> str:
    return f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]"


def _summary(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean [min, max] over seeds of icl and icl_m2_only, means of the other suites."""
    grouped = table.groupby(keys, sort=False)
    out = grouped[["icl", "icl_m2_only"]].agg(_mean_range)
    out = out.join(grouped[["icl_m1_only", "iwl", "test"]].mean()).join(
        grouped["seed"].count().rename("seeds")
    )
    return out.reset_index()


def figure(k2: pd.DataFrame, sizes: pd.DataFrame, enc: pd.DataFrame, low_k2: int) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "multimodal icl vs K2 (dotted: icl_m2_only)",
            f"stage 2 vs decoder size (K2 = {low_k2})",
            f"stage 2 vs M2 encoder accuracy (K2 = {low_k2})",
        ),
    )
    if len(k2):
        means = k2.groupby(["arm", "K2"], sort=False)[["icl", "icl_m2_only"]].mean().reset_index()
        for key, label in ARMS.items():
            part = means[means["arm"] == label].sort_values("K2")
            if part.empty:
                continue
            for suite, dash in (("icl", "solid"), ("icl_m2_only", "dot")):
                fig.add_trace(
                    go.Scatter(
                        x=part["K2"],
                        y=part[suite],
                        name=label,
                        legendgroup=key,
                        showlegend=suite == "icl",
                        line=dict(dash=dash, color=COLOURS[key]),
                        mode="lines+markers",
                    ),
                    row=1,
                    col=1,
                )
    # one line per decoder family: the shipped width (size lL_hH) and a learned embedding (dE_...)
    families = (
        [
            (2, sizes[~sizes["size"].str.startswith("d")], "n_params", "size", "size", "solid"),
            (
                2,
                sizes[sizes["size"].str.startswith("d")],
                "n_params",
                "size, learned embedding",
                "size",
                "dash",
            ),
            (3, enc, "encoder_acc", "encoder", "encoder_steps", "solid"),
        ]
        if len(sizes)
        else [(3, enc, "encoder_acc", "encoder", "encoder_steps", "solid")]
    )
    for panel, table, x, name, key, dash in families:
        if table.empty:
            continue
        per = (
            table.groupby(key)[[x, "icl", "icl_m2_only"]].agg(["mean", "min", "max"]).sort_values((x, "mean"))
        )
        for suite, colour in (("icl", "#1f77b4"), ("icl_m2_only", "#2ca02c")):
            fig.add_trace(
                go.Scatter(
                    x=per[(x, "mean")],
                    y=per[(suite, "mean")],
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=per[(suite, "max")] - per[(suite, "mean")],
                        arrayminus=per[(suite, "mean")] - per[(suite, "min")],
                    ),
                    text=[str(i) for i in per.index],
                    name=f"{name}: {suite}",
                    line=dict(color=colour, dash=dash),
                    mode="lines+markers",
                ),
                row=1,
                col=panel,
            )
    fig.add_hline(y=0.5, line=dict(color="grey", dash="dot"))
    fig.update_xaxes(title_text="K2", type="log", row=1, col=1)
    fig.update_xaxes(title_text="decoder parameters", type="log", row=1, col=2)
    fig.update_xaxes(title_text="encoder test accuracy (K2-way)", row=1, col=3)
    fig.update_yaxes(title_text="final accuracy", row=1, col=1)
    fig.update_layout(
        title="Multimodal asymmetry: arms, decoder size, encoder strength", template="plotly_white"
    )
    fig.update_layout(width=1500, height=480)
    return fig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k2", type=int, nargs="+", default=[32, 128, 512, 2048, 8192])
    parser.add_argument("--steps", type=int, default=1000, help="steps of each stage-2 / early-fusion run")
    parser.add_argument("--stage1-steps", type=int, default=None, help="stage-1 steps (default: --steps)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="task+model+train seeds")
    parser.add_argument("--arms", nargs="+", choices=ALL_ARMS, default=list(ALL_ARMS), help="what to run")
    parser.add_argument("--low-k2", type=int, default=None, help="K2 of the size and encoder sweeps")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="DxLxH (D 0: no embedding)")
    parser.add_argument("--encoder-steps", type=int, nargs="+", default=[10, 40, 150, 500])
    parser.add_argument("--eval-size", type=int, default=None, help="eval sequences per suite")
    parser.add_argument("--device", default=None, help="train.device of every run (e.g. cuda)")
    parser.add_argument("--out", default=str(ROOT / "analyses" / "results"))
    parser.add_argument("--runs", default=str(ROOT / "checkpoints"))
    parser.add_argument("--no-png", action="store_true", help="skip the PNG copy of the figure")
    parser.add_argument(
        "--workers", type=int, default=available_cores(), help="runs trained at once (default: all cores)"
    )
    add_from_results(parser, RUNS_CSV, "section 4")
    parser.add_argument(
        "--merge",
        nargs="?",
        const="",
        default=None,
        metavar="CSV",
        help=f"merge this command's runs into a per-run CSV (default: --out/{RUNS_CSV}): each replaces "
        "the row of the same run and role, every other row is kept; the Markdown, the figure and section "
        "4 of claims.json then come from the merged table (section 4 re-judged as by --from-results)",
    )
    return parser


def run_count(args: argparse.Namespace) -> int:
    """How many runs the command trains or reuses (stage-1 and encoder runs included)."""
    k2_arms = [a for a in args.arms if a in ARMS]
    seeds = len(args.seeds)
    needs_s1 = bool({"stage2", "unfrozen", "encoder"} & set(args.arms))
    low_k2 = min(args.k2) if args.low_k2 is None else args.low_k2
    n = seeds * len(k2_arms) * len(args.k2)
    if needs_s1:
        n += seeds  # the shipped-size stage 1
    if "size" in args.arms:
        for size in (parse_size(s) for s in args.sizes):  # the shipped size reuses those runs
            shipped = _own_size(size) is None
            n += seeds * (not (shipped and needs_s1))
            n += seeds * (not (shipped and "stage2" in args.arms and low_k2 in args.k2))
    if "encoder" in args.arms:
        n += seeds * len(args.encoder_steps) * 2
    return n


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.from_results is not None:
        from_results(args)
        return
    stage1_steps = args.steps if args.stage1_steps is None else args.stage1_steps
    low_k2 = min(args.k2) if args.low_k2 is None else args.low_k2
    try:  # bad input: one line naming the option, exit 2, before anything is written
        for field, values in (
            ("--steps", [args.steps, stage1_steps]),
            ("--encoder-steps", args.encoder_steps),
        ):
            if any(v < 1 for v in values):
                raise ConfigError(field, f"must be positive step counts, got {values}")
        sizes = [parse_size(s) for s in args.sizes]
        merge_csv = None
        if args.merge is not None:
            merge_csv = Path(args.merge) if args.merge else Path(args.out) / RUNS_CSV
            if not merge_csv.is_file():
                raise ConfigError("--merge", f"no per-run table at {merge_csv}")
    except ConfigError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = [] if args.eval_size is None else [f"task.eval_size={args.eval_size}"]
    extra += [] if args.device is None else [f'train.device="{args.device}"']  # not part of a run's identity
    runner = Runner(runs, extra, args.workers)
    print(f"claim 4: {run_count(args)} runs (complete ones are reused), {args.workers} at a time", flush=True)
    t0 = time.perf_counter()
    k2_arms = [a for a in ARMS if a in args.arms]
    needs_s1 = bool({"stage2", "unfrozen", "encoder"} & set(args.arms))
    for seed in args.seeds:  # first wave: everything that loads no other run
        if needs_s1:
            stage1(runner, seed, stage1_steps)
        for k2 in args.k2:
            for arm in (a for a in k2_arms if a not in NEEDS_STAGE1):
                k2_arm(runner, arm, k2, seed, args.steps, stage1_steps, None)
        if "size" in args.arms:
            for size in sizes:
                stage1(runner, seed, stage1_steps, size)
        if "encoder" in args.arms:
            for n in args.encoder_steps:
                encoder_pretraining(runner, n, low_k2, seed)
    runner.train()
    for seed in args.seeds:  # second wave: stage 2 from those stage-1 and encoder runs
        s1 = runs / stage1_name(seed)
        for k2 in args.k2:
            for arm in (a for a in k2_arms if a in NEEDS_STAGE1):
                k2_arm(runner, arm, k2, seed, args.steps, stage1_steps, s1)
        if "size" in args.arms:
            for size in sizes:
                size_run(runner, size, low_k2, seed, args.steps)
        if "encoder" in args.arms:
            for n in args.encoder_steps:
                encoder_run(runner, n, low_k2, seed, args.steps, s1)
    runner.train()
    trained_s = time.perf_counter() - t0
    table = pd.DataFrame(runner.rows)
    if "encoder_steps" in table:  # each encoder-arm run gets its encoder's test accuracy
        enc_acc = {r["run"]: r["test"] for r in runner.rows if r["arm"] == "encoder pretraining"}
        enc_rows = table["arm"] == "encoder"
        table.loc[enc_rows, "encoder_acc"] = [
            enc_acc[encoder_name(int(n), int(k), int(sd))]
            for n, k, sd in table.loc[enc_rows, ["encoder_steps", "K2", "seed"]].itertuples(index=False)
        ]
    for column in ("K2", "encoder_steps", "n_params"):  # integers with gaps (rows of other arms)
        if column in table:
            table[column] = table[column].astype("Int64")
    this_command = command_line("multimodal_asymmetry", argv)
    n_now = table["run"].nunique()
    if merge_csv is not None:  # the runs of this command replace theirs in the committed table
        table = merge_rows(pd.read_csv(merge_csv), table)
        argv = []  # the merged table is what the full command (every arm, default options) gives
    k2_table, size_table, enc_table = split_tables(table)
    wall = time.perf_counter() - t0
    table.to_csv(out / RUNS_CSV, index=False)

    once = table.drop_duplicates("run")  # a run in two roles (shipped size) counts once
    reused = int(once["reused"].sum())
    trained_wall = float(once.loc[~once["reused"], "wall_s"].sum())
    recorded_s = float(once["wall_s"].sum())  # every run's own training time, reused or not
    command = command_line("multimodal_asymmetry", argv)
    k2s = sorted(args.k2)
    lines = [
        "# Multimodal asymmetry: stage 2, early fusion and their controls",
        "",
        f"Final accuracies (chance 1/32 = 0.031). Stage 1: `mm_stage1` (unimodal, K = 8192, "
        f"{stage1_steps} steps); multimodal runs {args.steps} steps, the matched-budget arms "
        f"{stage1_steps + args.steps}. Command: `{command}`; {len(once)} runs ({reused} reused), "
        f"wall time {wall / 60:.1f} min on this machine with {args.workers} worker(s) (training wall of "
        f"the runs trained now: {trained_wall / 60:.1f} min; of all runs: {recorded_s / 60:.1f} min). "
        "Each seed sets task, model and training seeds and has its own "
        "stage-1 run. icl and icl_m2_only: mean [min, max] over seeds."
        + (
            f" Merged: `{this_command}` trained or reused {n_now} runs and replaced their rows in "
            f"{merge_csv.name}; every other row is kept from that table."
            if merge_csv is not None
            else ""
        ),
        "",
        "Arms: "
        + "; ".join(f"**{label}**" for label in ARMS.values() if label in set(k2_table.get("arm", []))),
        "",
    ]
    if not k2_table.empty:
        summary = _summary(k2_table.sort_values(["K2"], kind="stable"), ["K2", "arm"])
        k2_means = k2_table.groupby(["arm", "K2"])["icl"].mean()
        lines += [
            "## Multimodal icl vs K2, per arm",
            "",
            summary.to_markdown(index=False, floatfmt=".3f"),
            "",
            "Smallest K2 where the mean multimodal icl reaches 0.5: "
            + ", ".join(
                f"{label} {crossing(k2s, [k2_means.get((label, k), 0.0) for k in k2s])}"
                for label in ARMS.values()
                if label in set(k2_table["arm"])
            )
            + ". `icl_m2_only` (M1 items carry no class information) shows whether the M2 route itself "
            "works; `icl_m1_only` the reverse.",
            "",
        ]
    if not size_table.empty:
        summ = (
            _summary(size_table, ["size"])
            .merge(size_table.groupby("size")["n_params"].first().reset_index(), on="size")
            .merge(size_table.groupby("size")["stage1_icl"].agg(_mean_range).reset_index(), on="size")
        )
        lines += [
            f"## Decoder size (stage 1 -> stage 2 at K2 = {low_k2})",
            "",
            "Size `lL_hH`: the shipped input width (no embedding; d_model = D + 33 one-hot = 65), L "
            "layers, H heads; `dE_lL_hH`: a learned input embedding of width E (d_model E + 33). "
            "`n_params`: the decoder's parameters (stage 1); `stage1_icl`: that stage-1 run's final "
            "unimodal icl (a decoder that did not learn ICL in stage 1 is left out of 4b and 4h; 4b "
            "compares the `lL_hH` sizes, 4h the `dE_lL_hH` ones).",
            "",
            summ.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    if not enc_table.empty:
        summ = _summary(enc_table, ["encoder_steps"]).merge(
            enc_table.groupby("encoder_steps")["encoder_acc"].agg(_mean_range).reset_index(),
            on="encoder_steps",
        )
        lines += [
            f"## M2 encoder strength (stage 2 at K2 = {low_k2}, encoder frozen)",
            "",
            f"`encoder_acc`: the pretrained encoder's K2-way test accuracy (chance 1/{low_k2}).",
            "",
            summ.to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    lines += ["Per run (`wall_s`: the run's own training wall time): `multimodal_asymmetry_runs.csv`.", ""]
    (out / "multimodal_asymmetry.md").write_text("\n".join(lines))
    written = save_figure(
        figure(k2_table, size_table, enc_table, low_k2), out, "multimodal_asymmetry", png=not args.no_png
    )

    # compute time: every run's recorded training time plus this invocation's time outside
    # training (the same figure whether the runs were trained now or reused)
    wall = recorded_s + time.perf_counter() - t0 - trained_s
    common = dict(steps=args.steps, command=command, wall_time_s=wall)
    subs = subclaims(table, list(args.k2), common, command)
    write_section(out / "claims.json", Section("4", TITLE, subs, command, wall))
    if merge_csv is not None:  # and judged from the merged CSV alone, as --from-results does
        from_results(argparse.Namespace(from_results=str(out / RUNS_CSV), out=str(out)))
    print(
        f"wrote {out / 'multimodal_asymmetry.md'}, "
        + ", ".join(p.name for p in written)
        + f" ({wall / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
