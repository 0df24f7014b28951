"""Claim 4's command (``analyses/multimodal_asymmetry.py``): its options, input checks, training,
``--merge`` and outputs, so that the script holds only its verdict rules.

Claim 4 plans and trains its own runs (stage 1, the K2 arms, the size and encoder sweeps:
:mod:`mmicl_interp.sweep.multimodal`) instead of reading grid files: :class:`MultimodalScript` is
a :class:`~mmicl_interp.sweep.claim_script.ClaimScript` with its own options and ``main`` (no
grids, no report step), which keeps ClaimScript's per-run CSV name and ``--from-results``. The
script declares one (its docstring, the ``judge`` of the per-run CSV that ``--from-results``
uses, as for any claim script, and the ``verdicts`` of the table it trains) and calls
:meth:`MultimodalScript.main`, which

1. parses the options; ``--from-results [CSV]`` re-judges the section from the per-run CSV alone;
2. checks the input (bad input: one line naming the option, exit 2, before anything is written);
3. trains or reuses the runs (:func:`~mmicl_interp.sweep.multimodal.train_all`), merges them into
   the committed table under ``--merge``, and writes ``<name>.md``, the figure, ``<name>_runs.csv``
   and the claims.json section with its compute time (every run's recorded training time plus
   this invocation's time outside training, the same whether runs were trained now or reused).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmicl_interp.config import ConfigError
from mmicl_interp.io import atomic_write_text
from mmicl_interp.sweep.claim_script import ClaimScript, Outcome
from mmicl_interp.sweep.claims import Section, SubClaim, command_line, write_section
from mmicl_interp.sweep.executors import available_cores
from mmicl_interp.sweep.multimodal import (
    ALL_ARMS,
    SIZES,
    Runner,
    merge_rows,
    parse_size,
    read_runs,
    run_count,
    split_tables,
    train_all,
)
from mmicl_interp.sweep.multimodal_report import figure, markdown
from mmicl_interp.sweep.summary import GridsResult, add_from_results, save_figure

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Inputs:
    """The checked input of a training run: the stage-1 steps and the K2 of the sweeps (their
    defaults filled in), the parsed ``--sizes``, and the per-run CSV ``--merge`` names (None
    without ``--merge``)."""

    stage1_steps: int
    low_k2: int
    sizes: list[tuple[int, int, int]]
    merge_csv: Path | None


@dataclass
class MultimodalScript(ClaimScript):
    """Claim 4's script, declared: see the module docstring.

    ``judge(table, csv)`` gives the sub-claims of the per-run table read from ``csv`` (with
    :func:`~mmicl_interp.sweep.multimodal.read_runs`) for ``--from-results``, as
    :meth:`~mmicl_interp.sweep.claim_script.ClaimScript.from_results` does; ``verdicts(table, k2s,
    common, command)`` gives them for the table this command trained (``common``: evidence fields
    every sub-claim carries); ``runs``: ``--runs``' default."""

    grids: Sequence[str | Path] = ()
    report: Callable[[GridsResult, argparse.Namespace, str], Outcome] | None = None
    read: Callable[[Path], pd.DataFrame] = read_runs
    verdicts: Callable[[pd.DataFrame, list[int], dict, str], list[SubClaim]] | None = None
    runs: Path = ROOT / "checkpoints"

    def parser(self) -> argparse.ArgumentParser:
        """The script's options; ``doc``'s first paragraph is its help."""
        parser = argparse.ArgumentParser(description=self.doc.split("\n\n")[0])
        add = parser.add_argument
        add("--k2", type=int, nargs="+", default=[32, 128, 512, 2048, 8192])
        add("--steps", type=int, default=1000, help="steps of each stage-2 / early-fusion run")
        add("--stage1-steps", type=int, default=None, help="stage-1 steps (default: --steps)")
        add("--seeds", type=int, nargs="+", default=[0, 1, 2], help="task+model+train seeds")
        add("--arms", nargs="+", choices=ALL_ARMS, default=list(ALL_ARMS), help="what to run")
        add("--low-k2", type=int, default=None, help="K2 of the size and encoder sweeps")
        add("--sizes", nargs="+", default=list(SIZES), help="DxLxH (D 0: no embedding)")
        add("--encoder-steps", type=int, nargs="+", default=[10, 40, 150, 500])
        add("--eval-size", type=int, default=None, help="eval sequences per suite")
        add("--device", default=None, help="train.device of every run (e.g. cuda)")
        add("--out", default=str(self.out))
        add("--runs", default=str(self.runs))
        add("--no-png", action="store_true", help="skip the PNG copy of the figure")
        add(
            "--workers", type=int, default=available_cores(), help="runs trained at once (default: all cores)"
        )
        add_from_results(parser, self.runs_csv, f"section {self.key}")
        add(
            "--merge",
            nargs="?",
            const="",
            default=None,
            metavar="CSV",
            help=f"merge this command's runs into a per-run CSV (default: --out/{self.runs_csv}): each "
            "replaces the row of the same run and role, every other row is kept; the Markdown, the figure "
            f"and section {self.key} of claims.json then come from the merged table (section {self.key} "
            "re-judged as by --from-results)",
        )
        return parser

    def inputs(self, args: argparse.Namespace) -> Inputs:
        """``args`` checked: ConfigError naming the option on a step count below 1, a size that
        does not parse, or a ``--merge`` CSV that is not there."""
        stage1_steps = args.steps if args.stage1_steps is None else args.stage1_steps
        steps = (("--steps", [args.steps, stage1_steps]), ("--encoder-steps", args.encoder_steps))
        for option, values in steps:
            if any(v < 1 for v in values):
                raise ConfigError(option, f"must be positive step counts, got {values}")
        sizes = [parse_size(s) for s in args.sizes]
        merge_csv = None
        if args.merge is not None:
            merge_csv = Path(args.merge) if args.merge else Path(args.out) / self.runs_csv
            if not merge_csv.is_file():
                raise ConfigError("--merge", f"no per-run table at {merge_csv}")
        low_k2 = min(args.k2) if args.low_k2 is None else args.low_k2
        return Inputs(stage1_steps, low_k2, sizes, merge_csv)

    def main(self, argv: Sequence[str] | None = None) -> None:
        """Run the script (see the module docstring)."""
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = self.parser()
        args = parser.parse_args(argv)
        if args.from_results is not None:
            self.from_results(args)
            return
        if self.verdicts is None:  # a declaration error: say so before hours of training
            raise TypeError(f"{self.name}: MultimodalScript needs verdicts= to judge the runs it trains")
        try:  # bad input: one line naming the option, exit 2, before anything is written
            given = self.inputs(args)
        except ConfigError as err:
            print(f"{parser.prog}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        stage1_steps, low_k2, merge_csv = given.stage1_steps, given.low_k2, given.merge_csv
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        extra = [] if args.eval_size is None else [f"task.eval_size={args.eval_size}"]
        if args.device is not None:  # not part of a run's identity
            extra.append(f'train.device="{args.device}"')
        print(
            f"claim {self.key}: {run_count(args)} runs (complete ones are reused), {args.workers} at a time",
            flush=True,
        )
        t0 = time.perf_counter()
        runner = Runner(Path(args.runs), extra, args.workers)
        table = train_all(args, runner, given.sizes, stage1_steps, low_k2)
        trained_s = time.perf_counter() - t0
        this_command = command_line(self.name, argv)
        n_now = table["run"].nunique()
        if merge_csv is not None:  # the runs of this command replace theirs in the committed table
            table = merge_rows(pd.read_csv(merge_csv), table)
            argv = []  # the merged table is what the full command (every arm, default options) gives
        wall = time.perf_counter() - t0
        atomic_write_text(out / self.runs_csv, table.to_csv(index=False))
        once = table.drop_duplicates("run")  # a run in two roles (shipped size) counts once
        trained_wall = float(once.loc[~once["reused"], "wall_s"].sum())
        recorded_s = float(once["wall_s"].sum())  # every run's own training time, reused or not
        command = command_line(self.name, argv)
        head = (
            f"Final accuracies (chance 1/32 = 0.031). Stage 1: `mm_stage1` (unimodal, K = 8192, "
            f"{stage1_steps} steps); multimodal runs {args.steps} steps, the matched-budget arms "
            f"{stage1_steps + args.steps}. Command: `{command}`; {len(once)} runs "
            f"({int(once['reused'].sum())} reused), wall time {wall / 60:.1f} min on this machine with "
            f"{args.workers} worker(s) (training wall of the runs trained now: {trained_wall / 60:.1f} min; "
            f"of all runs: {recorded_s / 60:.1f} min). Each seed sets task, model and training seeds and "
            "has its own stage-1 run. icl and icl_m2_only: mean [min, max] over seeds."
        )
        if merge_csv is not None:
            head += (
                f" Merged: `{this_command}` trained or reused {n_now} runs and replaced their rows in "
                f"{merge_csv.name}; every other row is kept from that table."
            )
        md = out / f"{self.name}.md"
        atomic_write_text(md, "\n".join(markdown(table, args.k2, head, low_k2)))
        written = save_figure(figure(*split_tables(table), low_k2), out, self.name, png=not args.no_png)
        # compute time: every run's recorded training time plus this invocation's time outside
        # training (the same figure whether the runs were trained now or reused)
        wall = recorded_s + time.perf_counter() - t0 - trained_s
        common = dict(steps=args.steps, command=command, wall_time_s=wall)
        subs = self.verdicts(table, list(args.k2), common, command)
        write_section(out / "claims.json", Section(self.key, self.title, subs, command, wall))
        if merge_csv is not None:  # and judged from the merged CSV alone, as --from-results does
            self.from_results(argparse.Namespace(from_results=str(out / self.runs_csv), out=str(out)))
        print(f"wrote {md}, " + ", ".join(p.name for p in written) + f" ({wall / 60:.1f} min)")


__all__ = ["Inputs", "MultimodalScript"]
