"""The ``mmicl`` command line.

``mmicl train CONFIG [--out DIR] [--set key=value ...] [--resume] [--device D] [--quiet]``
``mmicl analyze RUN [--out FILE] [--force] [--device D]``
``mmicl ablate RUN [--step S] [--heads L1H0,...] [--method zero|mean|resample] [--n-seqs N] [--seed S]
[--device D]``
``mmicl patch RUN [--step S] [--kind heads|resid|path|attribution] [--corruption label|item|item_m1|item_m2]
[--n-seqs N] [--seed S] [--device D]``
``mmicl report RUN|SERIES [--out FILE.html] [--n-seqs N] [--device D]``
``mmicl sweep GRID [--out DIR] [--executor local|ray [--address auto]] [--workers N] [--device D]
[--stack auto|on|off] [--precision auto|fp32|bf16] [--quiet]``
``mmicl heads MODEL --prompts SPEC [--shots N --ways N --n-prompts N --device D --dtype T --seed S
--out DIR]``
``mmicl knockout MODEL --prompts SPEC (--heads L3H5,... | --top-k K) [--method zero|mean] [--out DIR]``
``mmicl series CKPTS... | MODEL --revisions R1,R2 [--out DIR] [--force]`` (see real/series.py)
``mmicl train-lm --out DIR [--recipe FILE] [--set key=value ...]`` (see real/train_lm.py)

CONFIG is a TOML path or the name of a shipped config in ``mmicl_interp/configs`` (e.g.
``default``). Bad input (an invalid value, an unknown key, a TOML syntax error, a missing
file, an output directory that holds another run, an output path that cannot be written,
a corrupt file, an encoder run given to ablate/patch/report) prints one line naming the
field and what is allowed, and exits with status 2, before any work. ``--heads`` is strict:
``L<layer>H<head>`` joined by commas, no spaces, each head of the model at most once.
``ablate``/``patch`` reports go to ``RUN/reports/`` under names that carry step, method or
kind, seed and number of sequences. ``--device`` (auto, cpu, cuda, cuda:N, mps) says where
models run: for train and sweep it sets ``train.device`` (default: the config's, ``auto``), for
the analyses it defaults to the CPU; a device this machine lacks exits with status 2 and one
line naming it and what is available. Ctrl-C prints one line (what was kept, how to resume)
and exits with status 130.

Only argparse and light modules load at start; each command imports torch and pandas
when it runs, so ``mmicl --help`` is instant.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from mmicl_interp.argtypes import (  # the CLI's bounds and argparse types (re-exported)
    BATCH_MAX,
    N_PROMPTS_MAX,
    N_RANDOM_MAX,
    SHOTS_MAX,
    TOP_K_MAX,
    WAYS_MAX,
    WORKERS_MAX,
    bounded_int,
    n_seqs_int,
    positive_int,
    seed_int,
)
from mmicl_interp.config import ConfigError, load_config
from mmicl_interp.io import (
    CorruptFileError,
    Interrupted,
    MmiclWarning,
    WriteFailed,
    check_writable,
    check_writable_dir,
    describe_write_error,
    is_write_error,
    write_remedy,
)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
TRAIN_DEVICE_HELP = (
    "auto | cpu | cuda | cuda:N | mps: where to train; sets train.device (default: the config's, "
    "auto = CUDA if present, else CPU)"
)
ANALYSIS_DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps: where models run (default: cpu)"


def _device(args: argparse.Namespace):
    """``--device`` checked before any work: a torch.device (None when not given)."""
    if args.device is None:
        return None
    from mmicl_interp.device import resolve_device

    return resolve_device(args.device, "--device")


_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=,+-]*")


def safe_folder_name(name: str, field: str, parent: str = "checkpoints") -> str:
    """``name`` if it is one plain folder name (it names ``parent/<name>``), else ConfigError: no
    ``/``, ``..``, leading dot or other characters that would put the output elsewhere."""
    if not _FOLDER_NAME.fullmatch(name or "") or ".." in name:
        raise ConfigError(
            field,
            f"{name!r} is not a plain folder name (letters, digits and . _ - = , +; no / or ..): it names "
            f"the output folder {parent}/<name>; choose another name or give --out",
        )
    return name


def _cmd_train(args: argparse.Namespace) -> int:
    from mmicl_interp.train.trainer import train

    overrides = list(args.set or [])
    if _device(args) is not None:  # a config override, so the manifest records it
        overrides.append(f'train.device="{args.device}"')
    config = load_config(args.config, overrides)
    if args.out:
        out = Path(args.out)
    else:
        out = Path("checkpoints") / safe_folder_name(config.name, "name")
    if args.resume and not out.exists():  # before the folder is made (a typo leaves nothing behind)
        raise ConfigError("--resume", f"nothing to resume in {out} (no run there); drop --resume to start")
    existed = out.exists()
    check_writable_dir(out, "--out")
    try:
        result = train(config, out, resume=args.resume, progress=not args.quiet, log=print)
    except BaseException:
        if not existed:  # a command that wrote nothing leaves no empty folder behind
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    if result.already_complete:
        print(f"{out} already holds this complete run; nothing to train.")
    else:
        print(f"trained {result.steps_trained} steps in {result.wall_time_s:.1f} s -> {out}")
    summary = "  ".join(f"{k} {v:.3f}" for k, v in result.final_metrics.items())
    n_classes = config.task.K2 if config.kind == "encoder" else config.task.L
    print(f"final accuracy: {summary}  (chance {1 / n_classes:.3f})")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from mmicl_interp.analyses.tables import analyze_run
    from mmicl_interp.runs import load_run

    device = _device(args)
    run = load_run(args.run)
    run.device = device  # models and suites of the analysis come there
    _check_has_checkpoints(run)
    check_n_seqs(run, args.n_seqs)
    result = analyze_run(  # checks --out (suffix, writable) before any work
        run, args.out, run_id=args.run_id, force=args.force, n_seqs=args.n_seqs, progress=not args.quiet
    )
    for line in result.summary():
        print(line)
    line = _correlation_line(result.out, result.run_id)
    if line:
        print(line)
    return 0


def _correlation_line(table_path: Path, run_id: str) -> str | None:
    """The best induction head's correlation with icl accuracy across checkpoints, as one line.

    Moving-block bootstrap interval (checkpoints of one run are autocorrelated); None when the
    table has no ``ih`` or icl accuracy rows (e.g. an encoder run) or too few checkpoints.
    """
    from mmicl_interp.analyses.correlation import format_correlation, ih_icl_correlation
    from mmicl_interp.analyses.tables import read_table

    table = read_table(table_path)
    table = table[table["run"] == run_id]
    has = set(table["metric"].unique())
    if "ih" not in has or "accuracy" not in has:
        return None
    corr = ih_icl_correlation(table)
    best = corr[corr["best"]]
    if best.empty:
        return None
    row = best.iloc[0]
    return (
        f"best induction head L{int(row['layer'])}H{int(row['head'])}: ih vs icl accuracy over "
        f"{int(row['n'])} checkpoints: {format_correlation(row)}"
    )


def _open_decoder_run(args: argparse.Namespace):
    """Load RUN for ablate/patch/report, refusing an encoder-pretraining run before any work."""
    from mmicl_interp.report.causal import check_decoder_run
    from mmicl_interp.runs import load_run

    device = _device(args)
    run = load_run(args.run)
    check_decoder_run(run, args.command)
    _check_has_checkpoints(run)
    run.device = device  # models and suites of the analysis come there
    check_n_seqs(run, getattr(args, "n_seqs", None))
    return run


def _check_has_checkpoints(run) -> None:
    if not run.steps:
        raise ConfigError(
            "RUN",
            f"{run.path} has no checkpoint yet (training stopped before its first save, or is starting); "
            f"resume it with `mmicl train CONFIG --out {run.path} --resume`",
        )


def check_n_seqs(run, n: int | None, field: str = "--n-seqs") -> None:
    """Refuse, before any work, more sequences per suite than this machine's memory holds."""
    from mmicl_interp.runs import max_sequences

    if n is None:
        return
    limit, per_seq, avail = max_sequences(run.config)
    if n > limit:
        why = f"about {per_seq / 1e3:.0f} kB per sequence"
        if avail is not None:
            why += f", {avail / 1e9:.1f} GB of memory available"
        raise ConfigError(
            field, f"must be an integer in [1, {limit}] for this run on this machine ({why}); got {n}"
        )


REPORT_BYTES = 8e6
"""About what one ablate/patch report takes on disk (Markdown, JSON, HTML with plotly inlined)."""
RUN_REPORT_BYTES = 16e6
"""About what ``report.html`` takes (plotly and circuitsvis inlined), with its analysis table."""


def _check_reports_folder(run) -> None:
    """``RUN/reports`` writable with room for a report, before any work."""
    folder = run.path / "reports"
    existed = folder.exists()
    check_writable_dir(folder, "RUN")
    try:
        check_writable(folder / ".mmicl-check", "RUN", REPORT_BYTES)
    except ConfigError:
        if not existed:
            folder.rmdir()
        raise


def _report_out(run, table_report, quiet: bool) -> int:
    folder = run.path / "reports"
    try:
        written = table_report.write(folder)
    except OSError as err:
        if not is_write_error(err):
            raise
        raise WriteFailed(
            f"{describe_write_error(err)}; this report's files in {folder} may be missing (earlier reports "
            f"there are unchanged); {write_remedy(err)} and rerun the same command"
        ) from None
    if not quiet:
        table_report.print()
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from mmicl_interp.report import causal

    run = _open_decoder_run(args)
    causal.check_method(args.method)
    causal.resolve_step(run, args.step)
    if args.heads is not None:
        causal.parse_head_list(args.heads, run.config.model.n_layers, run.config.model.n_heads)
    _check_reports_folder(run)
    report = causal.ablation_report(run, args.step, args.heads, args.method, args.n_seqs, args.seed)
    return _report_out(run, report, args.quiet)


def _cmd_patch(args: argparse.Namespace) -> int:
    from mmicl_interp.report import causal

    run = _open_decoder_run(args)
    causal.check_patch_options(run, args.kind, args.corruption)
    causal.resolve_step(run, args.step)
    _check_reports_folder(run)
    report = causal.patching_report(run, args.step, args.kind, args.corruption, args.n_seqs, args.seed)
    return _report_out(run, report, args.quiet)


def _cmd_report(args: argparse.Namespace) -> int:
    """A run's report, or a checkpoint series' (``series.json``; a folder of ``step_*`` HF
    checkpoints is scored first, into itself, with ``mmicl series``'s defaults)."""
    from mmicl_interp.real.report import build_series_report, report_kind
    from mmicl_interp.report.run_report import build_run_report

    kind = report_kind(args.run)
    if kind == "run":
        run = _open_decoder_run(args)
    else:
        from mmicl_interp.real.series import load_series

        run = Path(args.run)
        device = _device(args)
    if args.out is not None and not args.out.endswith(".html"):
        raise ConfigError("--out", f"must end in .html, got {args.out!r}")
    out = check_writable(args.out, "--out", RUN_REPORT_BYTES) if args.out is not None else None
    if out is None:
        check_writable(Path(run.path if kind == "run" else run) / "report.html", "RUN", RUN_REPORT_BYTES)
    if kind == "checkpoints":
        from mmicl_interp.real.series import run_series

        print(f"report: scoring the checkpoints of {run} into it (as `mmicl series {run} --out {run}`)")
        run_series([str(run)], out=run, device=device or "cpu", progress=not args.quiet)
    if kind != "run":
        run = load_series(run)
        run.device = device or "cpu"
    try:
        if kind == "run":
            path = build_run_report(run, out, n_seqs=args.n_seqs, progress=not args.quiet)
        else:
            path = build_series_report(run, out, progress=not args.quiet)
    except OSError as err:
        if not is_write_error(err):
            raise
        target = out or run.path / "report.html"
        kept = "analysis.parquet" if kind == "run" else "series.parquet"
        raise WriteFailed(
            f"{describe_write_error(err)}; {target} was not written (an earlier one is unchanged; "
            f"{run.path / kept} keeps what it held at its last save); {write_remedy(err)} "
            "and rerun"
        ) from None
    print(f"wrote {path}  (open it in a browser; it needs no network)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mmicl_interp.parallel import LocalExecutor, threads_per_worker
    from mmicl_interp.sweep import load_grid, make_executor, run_sweep
    from mmicl_interp.sweep.precision import check_precision_option, choose_precision
    from mmicl_interp.sweep.runner import check_stack_mode

    device = _device(args)
    check_stack_mode(args.stack)
    check_precision_option(args.precision)
    executor = make_executor(args.executor, args.workers, args.address)
    grid = load_grid(args.grid)
    if device is not None:  # every point trains there; like train.device, not part of a run's identity
        if "train.device" in grid.axes:
            raise ConfigError("--device", "the grid sweeps train.device; drop --device")
        grid.fixed["train.device"] = args.device
    first = grid.points()[0].config  # every point's config is valid (cheap), before the folder is made
    out = Path(args.out) if args.out else Path("checkpoints") / grid.name
    check_writable_dir(out, "--out")
    if args.precision != "auto" and "train.precision" in grid.axes:
        raise ConfigError("--precision", "the grid sweeps train.precision; drop --precision")
    named = "train.precision" in grid.fixed or "train.precision" in grid.axes
    sets_it = named or first.train.precision != "fp32"
    threads = threads_per_worker(executor.workers) if isinstance(executor, LocalExecutor) else 1
    choice = choose_precision(args.precision, first, out, grid_sets_it=sets_it, threads=threads)
    print(choice.line())
    if not sets_it or args.precision != "auto":
        grid.fixed["train.precision"] = choice.precision
    result = run_sweep(grid, out, executor=executor, progress=not args.quiet, stack=args.stack, log=print)
    skipped = len(result.results) - result.n_trained
    print(
        f"{len(result.results)} runs ({result.n_trained} trained, {skipped} already complete): "
        f"{len(result.table)} rows -> {out / 'sweep.parquet'}"
    )
    return 0


def _cmd_heads(args: argparse.Namespace) -> int:
    from mmicl_interp.real.commands import run_heads

    return run_heads(args, _device(args))


def _cmd_knockout(args: argparse.Namespace) -> int:
    from mmicl_interp.real.commands import run_knockout

    return run_knockout(args, _device(args))


def _cmd_series(args: argparse.Namespace) -> int:
    from mmicl_interp.real.series_cli import run_series_command

    return run_series_command(args, _device(args))


def _cmd_train_lm(args: argparse.Namespace) -> int:
    from mmicl_interp.real.series_cli import run_train_lm_command

    return run_train_lm_command(args)


def _real_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``heads`` and ``knockout`` (a Hugging Face model and its prompts)."""
    p.add_argument("model", help="Hugging Face model name or local folder (TransformerLens bridge)")
    p.add_argument(
        "--prompts",
        required=True,
        help="text | text:flipped | text:[flipped:]FILE (.json/.jsonl/.csv, columns item,label) | "
        "images:DIR (one subfolder per class) | open_mi:DIR (VL-ICL Bench)",
    )
    for flag, low, high, default, what in (
        ("--shots", 1, SHOTS_MAX, 2, "examples per label in context (default: 2)"),
        ("--ways", 2, WAYS_MAX, 2, "candidate labels per prompt (default: 2)"),
        (
            "--n-prompts",
            1,
            N_PROMPTS_MAX,
            50,
            "prompts (default: 50; capped, with a note, at the queries a fixed set such as open_mi has)",
        ),
        ("--batch-size", 1, BATCH_MAX, 4, "prompts per forward (default: 4)"),
        ("--n-random", 10, N_RANDOM_MAX, 10, "random k-head draws, >= 10 (default: 10)"),
    ):
        p.add_argument(flag, type=bounded_int(low, high), default=default, help=what)
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the prompts and random heads")
    p.add_argument(
        "--force", action="store_true", help="replace results of other settings already in --out"
    )
    p.add_argument("--dtype", default="float32", help="float32 | float16 | bfloat16 (default: float32)")
    p.add_argument("--out", default=None, help="output folder (default: real/<model>_<prompt set>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help=ANALYSIS_DEVICE_HELP)


def _checkpoint_command(sub: argparse._SubParsersAction, name: str, what: str) -> argparse.ArgumentParser:
    """The parser of a command on one checkpoint of a run: ``run`` and ``--step``."""
    p = sub.add_parser(name, help=what)
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the last)")
    return p


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``mmicl CMD: error: --opt: why`` and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mmicl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a config into a run directory of checkpoints")
    p.add_argument("config", help="TOML file, or a shipped config name (e.g. default, iwl)")
    p.add_argument("--out", help="run directory (default: checkpoints/<name>)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set task.K=512 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")
    p.add_argument("--device", default=None, help=TRAIN_DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("analyze", help="score every checkpoint of a run into a tidy table")
    p.add_argument("run", help="run directory")
    p.add_argument(
        "--out",
        help="table file, .parquet or .csv (default: RUN/analysis.parquet); it may hold other runs, "
        "whose rows are kept",
    )
    p.add_argument(
        "--run-id",
        default=None,
        help="the run's name in the table (default: the manifest's run_id, else the run folder's name)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute this run's checkpoints already in --out (or replace an unreadable --out)",
    )
    p.add_argument(
        "--n-seqs", type=n_seqs_int, default=None, help="sequences per suite (default: the run's)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help=ANALYSIS_DEVICE_HELP)
    p.set_defaults(func=_cmd_analyze)

    p = _checkpoint_command(sub, "ablate", "ablate heads at one checkpoint; report on every suite")
    p.add_argument(
        "--heads",
        default=None,
        help="heads ablated together, comma-separated without spaces, e.g. L1H0,L0H0 "
        "(default: each head alone)",
    )
    p.add_argument("--method", default="mean", help="zero | mean | resample (default: mean)")
    p.add_argument(
        "--n-seqs", type=n_seqs_int, default=None, help="sequences per suite (default: the run's)"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the resample permutation")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    p.add_argument("--device", default="cpu", help=ANALYSIS_DEVICE_HELP)
    p.set_defaults(func=_cmd_ablate)

    p = _checkpoint_command(sub, "patch", "activation / path / attribution patching at one checkpoint")
    p.add_argument("--kind", default="heads", help="heads | resid | path | attribution (default: heads)")
    p.add_argument(
        "--corruption",
        default=None,
        help="label | item | item_m1 | item_m2 (default: label; for --kind path the items the "
        "previous-token head reads at offset 1: item (= item_m1) on unimodal runs, item_m2 on "
        "multimodal ones)",
    )
    p.add_argument("--n-seqs", type=n_seqs_int, default=200, help="icl sequences (default: 200)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the corruption")
    p.add_argument("--quiet", action="store_true", help="do not print the table")
    p.add_argument("--device", default="cpu", help=ANALYSIS_DEVICE_HELP)
    p.set_defaults(func=_cmd_patch)

    p = sub.add_parser("report", help="write the one-page HTML report of a run or a checkpoint series")
    p.add_argument(
        "run", help="run directory, or a series folder of `mmicl series` (or of step_* checkpoints)"
    )
    p.add_argument("--out", default=None, help="HTML file (default: RUN/report.html)")
    p.add_argument(
        "--n-seqs", type=n_seqs_int, default=200, help="icl sequences for ablation and patching (runs only)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", default="cpu", help=ANALYSIS_DEVICE_HELP)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("sweep", help="train every point of a TOML grid; collect one tidy table")
    p.add_argument("grid", help="grid TOML file (base, [set], [grid])")
    p.add_argument("--out", help="sweep folder (default: checkpoints/<grid name>)")
    p.add_argument("--executor", default="local", help="where points run: local | ray (default: local)")
    p.add_argument(
        "--workers",
        type=bounded_int(1, WORKERS_MAX),
        default=None,
        help="parallel runs (local) or CPUs of a local Ray (default: all)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. auto (--executor ray)")
    p.add_argument("--device", default=None, help=TRAIN_DEVICE_HELP)
    p.add_argument(
        "--stack",
        default="auto",
        help="auto | on | off: train the points that differ only in seeds and sampling (task.K, B, "
        "eps, ...; same model shapes and training) as one stacked model, each still its own run "
        "folder (default auto: on with the local executor); prints one line per stack",
    )
    p.add_argument(
        "--precision",
        default="auto",
        help="auto | fp32 | bf16: the points' train.precision (part of each run's identity). auto "
        "(default) keeps what the grid sets (claim grids pin fp32) or what runs already in --out "
        "used, else times 20 updates of the first point in each and takes bf16 when it is >= 10%% "
        "faster; prints which it picked and why",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("heads", help="score every head of a Hugging Face model on few-shot prompts")
    _real_model_options(p)
    p.add_argument(
        "--top-k",
        type=bounded_int(0, TOP_K_MAX),
        default=5,
        help="knock out the top-k induction and previous-token heads vs random k-head draws (0: skip)",
    )
    p.add_argument(
        "--patch", action="store_true", help="patch each head under label corruption (layers x heads runs)"
    )
    p.set_defaults(func=_cmd_heads)

    p = sub.add_parser("knockout", help="knock out heads of a Hugging Face model vs random heads")
    _real_model_options(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--heads", default=None, help="heads knocked out together, e.g. L3H5,L2H1")
    which.add_argument(
        "--top-k",
        type=bounded_int(1, TOP_K_MAX),
        default=None,
        help="the top-k induction and previous-token heads",
    )
    p.add_argument("--method", default="mean", help="zero | mean (default: mean)")
    p.set_defaults(func=_cmd_knockout)

    from mmicl_interp.real.series_cli import add_series_parsers  # argparse only: light

    add_series_parsers(sub, _cmd_series, _cmd_train_lm, positive_int, ANALYSIS_DEVICE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmicl`` console script: the exit status (0, 2 bad input, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a one-line usage error (2)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings():
            show = warnings.showwarning

            def one_line(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, MmiclWarning):  # ours: one line, no source
                    print(f"mmicl: warning: {message}", file=sys.stderr)
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = one_line
            return args.func(args)
    except ConfigError as err:
        print(f"mmicl: error: {err}", file=sys.stderr)
    except CorruptFileError as err:
        print(f"mmicl: error: {err}", file=sys.stderr)
    except WriteFailed as err:
        print(f"mmicl: error: {err.message}", file=sys.stderr)
    except FileNotFoundError as err:
        print(f"mmicl: error: {err}", file=sys.stderr)
    except OSError as err:  # a write that failed during the work, not caught where it happened
        if not is_write_error(err):
            raise
        print(
            f"mmicl: error: {describe_write_error(err)}; rerun the same command once it can write",
            file=sys.stderr,
        )
    except Interrupted as err:
        print(f"mmicl: interrupted: {err.message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("mmicl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
