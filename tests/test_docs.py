"""The documentation site builds strictly (a broken cross-reference, a missing page or a
docstring role naming something gone fails), offline, and its generated pages are complete:
the CLI reference holds every ``mmicl`` subcommand, the API reference every listed module."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmicl_interp.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise AssertionError("mmicl has no subcommands")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_cli_reference_lists_every_subcommand_with_its_help(site):
    page = (site / "cli.html").read_text(encoding="utf-8")
    names = _subcommands()
    assert {"train", "analyze", "ablate", "patch", "report", "sweep", "heads", "knockout"} <= set(names)
    for name in names:
        assert f'id="mmicl-{name}"' in page, f"no section for mmicl {name}"
        assert f"usage: mmicl {name}" in page, f"no --help of mmicl {name}"


def test_api_reference_has_a_page_per_module_in_the_nav_and_the_notebook_is_rendered(site):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks  # docs/hooks.py: the pages it generates
    finally:
        sys.path.remove(str(ROOT / "docs"))
    nav = (site / "index.html").read_text(encoding="utf-8")  # the sidebar lists every page
    for name in hooks.api_pages():
        assert f'href="api/{name}.html"' in nav, f"api/{name} is generated but not in the nav"
        page = (site / "api" / f"{name}.html").read_text(encoding="utf-8")
        assert f'id="mmicl_interp.{name}' in page, f"api/{name}: no rendered object"
    # a package page documents each of its modules
    analyses = (site / "api" / "analyses.html").read_text(encoding="utf-8")
    assert 'id="mmicl_interp.analyses.attention.attention_measures"' in analyses
    notebook = (site / "01_walkthrough.html").read_text(encoding="utf-8")
    assert "circuit_formation" in notebook
    assert (site / "design.html").exists() and (site / "formation.png").exists()
