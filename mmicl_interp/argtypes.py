"""The command line's bounds and argparse types, below :mod:`mmicl_interp.cli` so that the
commands it registers from other packages (``real/series_cli.py``) share them without
importing the CLI back. Each type's error is one line naming the allowed range (exit 2)."""

from __future__ import annotations

import argparse

from mmicl_interp.config import SEED_MAX

N_SEQS_MAX = 100_000
"""Most sequences per suite an analysis takes (memory may allow fewer: :func:`check_n_seqs`)."""
N_PROMPTS_MAX = 100_000
SHOTS_MAX = 64
WAYS_MAX = 64
BATCH_MAX = 1024
N_RANDOM_MAX = 10_000
TOP_K_MAX = 10_000
WORKERS_MAX = 1024


def bounded_int(low: int, high: int):
    """argparse type: an integer in [low, high]; the error names the range (one line, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {value}")
        return value

    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


seed_int = bounded_int(0, SEED_MAX)
"""argparse type of every ``--seed``: [0, 2**63 - 1] (torch generators take a signed 64-bit seed)."""
n_seqs_int = bounded_int(1, N_SEQS_MAX)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into one usage line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value
