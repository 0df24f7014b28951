"""The ``mmicl series`` and ``mmicl train-lm`` subcommands: their options and entry points.

Only argparse is imported at module level (``mmicl --help`` stays instant); torch,
transformers and pandas load when a command runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from mmicl_interp.config import ConfigError

REP_LEN_MAX = 4096
SEQS_MAX = 100_000
CONTEXT_MAX = 131_072


def add_series_parsers(
    sub: Any, cmd_series: Callable, cmd_train_lm: Callable, positive_int: Callable, device_help: str
) -> None:
    from mmicl_interp import argtypes as cli  # the shared bounds

    bounded = cli.bounded_int
    p = sub.add_parser("series", help="induction / previous-token heads and ICL over a checkpoint series")
    p.add_argument(
        "sources",
        nargs="+",
        help="checkpoint folders (e.g. ckpts/step_*, quoted or expanded), a folder of step_* folders, "
        "or one hub name with --revisions",
    )
    p.add_argument("--revisions", default=None, help="hub revisions, comma-separated, e.g. step1000,step2000")
    p.add_argument("--out", default=None, help="output folder (default: real/series_<name>)")
    p.add_argument("--run-id", default=None, help="the run column (default: the series' name)")
    p.add_argument(
        "--rep-len", type=bounded(2, REP_LEN_MAX), default=50, help="repeated random tokens: half length n"
    )
    p.add_argument(
        "--rep-seqs", type=bounded(1, SEQS_MAX), default=32, help="repeated random sequences (default: 32)"
    )
    p.add_argument(
        "--text",
        default="stdlib-held-out",
        help="held-out text: a file, a folder, or stdlib-held-out (default)",
    )
    p.add_argument(
        "--context",
        type=bounded(8, CONTEXT_MAX),
        default=512,
        help="text context cap in tokens (default: 512)",
    )
    p.add_argument("--text-seqs", type=bounded(1, SEQS_MAX), default=64, help="text sequences (default: 64)")
    p.add_argument(
        "--prompts", default="text", help="few-shot prompt set (text specs of `mmicl heads`; none: skip)"
    )
    p.add_argument("--shots", type=bounded(1, cli.SHOTS_MAX), default=2)
    p.add_argument("--ways", type=bounded(2, cli.WAYS_MAX), default=2)
    p.add_argument("--n-prompts", type=bounded(1, cli.N_PROMPTS_MAX), default=50)
    p.add_argument(
        "--batch-size", type=bounded(1, cli.BATCH_MAX), default=8, help="sequences per forward (default: 8)"
    )
    p.add_argument("--seed", type=cli.seed_int, default=0)
    p.add_argument("--dtype", default="float32", help="float32 | float16 | bfloat16 (default: float32)")
    p.add_argument(
        "--top-k", type=bounded(1, cli.TOP_K_MAX), default=3, help="induction heads printed (layers >= 1)"
    )
    p.add_argument(
        "--force", action="store_true", help="recompute every checkpoint (and replace another series)"
    )
    p.add_argument("--quiet", action="store_true", help="no per-checkpoint lines")
    p.add_argument("--device", default="cpu", help=device_help)
    p.set_defaults(func=cmd_series)

    p = sub.add_parser("train-lm", help="train a small HF LM on the Python stdlib into a step_* series")
    p.add_argument("--out", required=True, help="output folder (step_<n> folders, recipe.json, log.jsonl)")
    p.add_argument("--recipe", default=None, help="recipe file, .json or .toml (default: the built-in one)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a recipe value (JSON value), repeatable"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_lm)


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError("--set", f"must be KEY=VALUE; got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


def run_series_command(args: argparse.Namespace, device: Any) -> int:
    from transformers.utils import logging as hf_logging

    from mmicl_interp.real.series import SeriesOptions, print_summary, run_series

    hf_logging.disable_progress_bar()
    revisions = None
    if args.revisions is not None:
        revisions = [r.strip() for r in args.revisions.split(",") if r.strip()]
        if not revisions:
            raise ConfigError("--revisions", f"give revisions separated by commas; got {args.revisions!r}")
    options = SeriesOptions(
        rep_len=args.rep_len, rep_seqs=args.rep_seqs, context=args.context, text_seqs=args.text_seqs,
        text=args.text, prompts=None if args.prompts in ("", "none") else args.prompts, shots=args.shots,
        ways=args.ways, n_prompts=args.n_prompts, seed=args.seed, dtype=args.dtype,
    )  # fmt: skip
    result = run_series(
        args.sources, revisions=revisions, out=args.out, run_id=args.run_id, options=options,
        device=device or "cpu", batch_size=args.batch_size, force=args.force, progress=not args.quiet,
    )  # fmt: skip
    print_summary(result.table, args.top_k)
    print(
        f"{len(result.computed)} checkpoints scored, {len(result.reused)} reused -> "
        f"{result.out / 'series.parquet'}"
    )
    return 0


def run_train_lm_command(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from mmicl_interp.real.train_lm import load_recipe, series_size_bytes, train_lm

    hf_logging.disable_progress_bar()
    recipe = load_recipe(args.recipe, parse_sets(args.set))
    result = train_lm(recipe, args.out, progress=not args.quiet)
    if result.already_complete:
        print(f"{result.out} already holds this recipe's complete series; nothing to train.")
    else:
        print(f"trained {recipe.steps} steps in {result.wall_time_s:.0f} s -> {result.out}")
    size = series_size_bytes(result.out) / 1e6
    print(
        f"{len(result.steps)} checkpoints (steps {result.steps[0]}..{result.steps[-1]}), "
        f"{size:.1f} MB of weights"
    )
    return 0


__all__ = ["add_series_parsers", "parse_sets", "run_series_command", "run_train_lm_command"]
