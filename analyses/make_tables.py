"""Regenerate the claims tables in README.md and analyses/README.md from ``results/claims.json``.

Each claim script writes its own section of ``analyses/results/claims.json``
(:mod:`mmicl_interp.sweep.claims`); this script adds claim 6 (not runnable offline) when it is
missing, renders one Markdown row per sub-claim (verdict, effect [interval], runs, seeds,
steps, command, wall time, notes) and puts the table between the ``<!-- claims:start -->``
and ``<!-- claims:end -->`` markers of each README, leaving the rest of the file alone.
``make claims`` runs it last.

    .venv/bin/python analyses/make_tables.py [--claims FILE] [--readme FILE ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmicl_interp.io import atomic_write_text
from mmicl_interp.sweep.claims import (
    Section,
    SubClaim,
    read_claims,
    render_table,
    replace_between_markers,
    write_section,
)

ROOT = Path(__file__).resolve().parents[1]
CLAIM6 = Section(
    "6",
    "Real MLLM (Qwen2.5-VL-3B): the same head scores; knocking out induction heads hurts ICL",
    [
        SubClaim(
            "6a",
            "on a real MLLM the head scores find previous-token and induction heads; knocking out the "
            "top induction heads hurts ICL",
            "not tested",
            notes="not run here: no real checkpoint offline; see the real-model commands",
        )
    ],
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", default=str(ROOT / "analyses" / "results" / "claims.json"))
    parser.add_argument(
        "--readme",
        nargs="+",
        default=[str(ROOT / "README.md"), str(ROOT / "analyses" / "README.md")],
        help="files whose claims table is replaced (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    path = Path(args.claims)
    if CLAIM6.key not in read_claims(path)["claims"]:
        write_section(path, CLAIM6)
    table = "\n".join(render_table(read_claims(path)))
    for readme in map(Path, args.readme):
        text = readme.read_text()
        new = replace_between_markers(text, table, str(readme))
        if new != text:
            atomic_write_text(readme, new)
        print(f"{readme}: claims table {'updated' if new != text else 'unchanged'}")


if __name__ == "__main__":
    main()
