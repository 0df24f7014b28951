"""The runs of claim 4 (the multimodal asymmetry, ``analyses/multimodal_asymmetry.py``): stage 1,
the K2 arms (stage 2, early fusion and their controls), the decoder-size and M2-encoder sweeps,
planned as named runs of the shipped ``mm_*`` configs and trained in two waves, and the per-run
table they give (one row per run and role).

A seed sets task, model and training seeds together and has its own stage-1 run
(``mm_stage1``), which its stage-2 runs load: the arms of one seed are compared seed by seed.
The K2 arms (:data:`ARMS`), one run per seed and K2:

- ``stage2``: the stage-1 decoder of that seed, frozen (projector, final norm, read-out train);
- ``early``: early fusion, the same multimodal training from scratch;
- ``random``: stage 2 with the same freezing but a freshly initialised decoder;
- ``unfrozen``: stage 2 from the stage-1 decoder with nothing frozen;
- ``matched``: early fusion for stage-1 + stage-2 steps (the pipeline's total budget);
- ``highk1``: ``matched`` on high-K1 M1 data (``task.m1_pool = "all"``: each exemplar's M1
  item from any of the K1 M1 classes of its label, not the M2 class's fixed partner);

and two sweeps at one low K2, both through stage 1 -> stage 2:

- ``size``: decoders ``d_embed x n_layers x n_heads`` (:func:`parse_size`; d_embed 0: no input
  embedding, as shipped), each with its own stage 1 (the shipped size reuses the runs above);
- ``encoder``: M2 encoders (``mm_encoder``) pretrained for several step counts (so to several
  accuracies), loaded frozen in front of the projector of a stage-2 run.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import pandas as pd

from mmicl_interp.checkpoints import read_manifest, read_metrics
from mmicl_interp.config import ConfigError, RunConfig, load_config
from mmicl_interp.sweep.claim_script import mean_range
from mmicl_interp.sweep.executors import LocalExecutor
from mmicl_interp.sweep.runner import train_runs

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
SIZES = ("0x2x1", "0x3x2", "0x4x4", "32x2x1", "64x3x2", "128x4x4")
"""Default decoder sizes: the shipped one (no input embedding, d_model 65 with the one-hot block;
its runs are reused), deeper and more heads at that width, and wider through a learned input
embedding (d_embed 32, 64, 128)."""
INT_COLUMNS = ("K2", "encoder_steps", "n_params")
"""Integer columns with gaps (rows of other arms have none)."""


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
                    stack="off",  # as run_grids: each run alone, so the committed runs reproduce exactly
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


def train_all(
    args: argparse.Namespace, runner: Runner, sizes: list, stage1_steps: int, low_k2: int
) -> pd.DataFrame:
    """Plan and train every run ``args`` asks for (``--arms``, ``--k2``, ``--seeds``, ``--steps``,
    ``--encoder-steps``) in two waves: first everything that loads no other run (stage 1, the
    arms from scratch, the encoders), then the runs that load them. Returns the per-run table,
    each encoder-arm run with its encoder's test accuracy ``encoder_acc``."""
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
        s1 = runner.runs / stage1_name(seed)
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
    table = pd.DataFrame(runner.rows)
    if "encoder_steps" in table:  # each encoder-arm run gets its encoder's test accuracy
        enc_acc = {r["run"]: r["test"] for r in runner.rows if r["arm"] == "encoder pretraining"}
        enc_rows = table["arm"] == "encoder"
        table.loc[enc_rows, "encoder_acc"] = [
            enc_acc[encoder_name(int(n), int(k), int(sd))]
            for n, k, sd in table.loc[enc_rows, ["encoder_steps", "K2", "seed"]].itertuples(index=False)
        ]
    return integer_columns(table)


def integer_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its :data:`INT_COLUMNS` as nullable integers."""
    for column in INT_COLUMNS:
        if column in table:
            table[column] = pd.to_numeric(table[column]).astype("Int64")
    return table


def crossing(k2s: list[int], values: list[float], level: float = 0.5) -> str:
    """The smallest K2 whose accuracy reaches ``level`` ('none' if none does)."""
    for k2, value in zip(k2s, values, strict=True):
        if value >= level:
            return str(k2)
    return f"none up to {max(k2s)}"


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
    return integer_columns(merged)


def read_runs(csv: Path) -> pd.DataFrame:
    """The per-run table, its integer columns kept integer where a row has none."""
    return integer_columns(pd.read_csv(csv))


def arm_summary(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean [min, max] over seeds of icl and icl_m2_only, means of the other suites."""
    grouped = table.groupby(keys, sort=False)
    out = grouped[["icl", "icl_m2_only"]].agg(mean_range)
    out = out.join(grouped[["icl_m1_only", "iwl", "test"]].mean()).join(
        grouped["seed"].count().rename("seeds")
    )
    return out.reset_index()


__all__ = [
    "ALL_ARMS",
    "ARMS",
    "SIZES",
    "SUITES",
    "SWEEPS",
    "Runner",
    "arm_summary",
    "crossing",
    "merge_rows",
    "parse_size",
    "read_runs",
    "run_count",
    "shipped_size",
    "size_tag",
    "split_tables",
    "stage1_name",
    "train_all",
    "varied_width",
]
