"""The documentation site builds strictly (a broken cross-reference, a missing page or a
docstring role naming something gone fails), offline, and its generated pages are complete:
the CLI reference holds every ``mmicl`` subcommand, the API reference every listed module, and
the walkthrough notebook's page the outputs of executing it against the shipped run (a cell
that raises fails the build)."""

from __future__ import annotations

import argparse
import json
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


def _hooks():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks  # docs/hooks.py: the pages it generates

        return hooks
    finally:
        sys.path.remove(str(ROOT / "docs"))


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


@pytest.mark.slow
def test_cli_reference_lists_every_subcommand_with_its_help(site):
    page = (site / "cli.html").read_text(encoding="utf-8")
    names = _subcommands()
    assert {"train", "analyze", "ablate", "patch", "report", "sweep", "heads", "knockout"} <= set(names)
    for name in names:
        assert f'id="mmicl-{name}"' in page, f"no section for mmicl {name}"
        assert f"usage: mmicl {name}" in page, f"no --help of mmicl {name}"


@pytest.mark.slow
def test_api_reference_has_a_page_per_module_in_the_nav_and_the_notebook_is_rendered(site):
    hooks = _hooks()
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


@pytest.mark.slow
def test_the_notebook_page_shows_the_outputs_of_executing_it(site):
    page = (site / "01_walkthrough.html").read_text(encoding="utf-8")
    # the first cell prints the shipped run's checkpoint count: count the files independently
    n_ckpt = len(list((ROOT / "checkpoints" / "example" / "ckpt").glob("step_*.safetensors")))
    assert f"example checkpoints: {n_ckpt}" in page
    # plotly.js inlined once (the figures draw offline), then one newPlot per figure cell
    assert page.count("window.Plotly = Plotly") == 1
    nb = json.loads((ROOT / "analyses" / "notebooks" / "01_walkthrough.ipynb").read_text())
    # cells whose last line is a figure: a plots.* call, or `fig`
    lasts = ["".join(c["source"]).rstrip().splitlines()[-1] for c in nb["cells"] if c["cell_type"] == "code"]
    figures = [last for last in lasts if last.startswith("plots.") or last == "fig"]
    assert page.count("Plotly.newPlot(") >= len(figures) >= 3
    # the executed notebook is copied beside the page: every code cell ran, none raised or warned
    executed = json.loads((site / "01_walkthrough.ipynb").read_text(encoding="utf-8"))
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] is not None and c["outputs"] for c in code)
    kinds = [(o["output_type"], o.get("name")) for c in code for o in c["outputs"]]
    assert ("error", None) not in kinds and ("stream", "stderr") not in kinds


def test_a_notebook_cell_that_raises_fails_the_build_naming_the_notebook(tmp_path):
    import nbformat
    from mkdocs.exceptions import PluginError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1 + 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PluginError, match=r"^broken\.ipynb: cell 1 raised ValueError: boom "):
        _hooks().execute_notebook(path, out)
    assert not (out / "broken.ipynb").exists()


def test_an_executed_notebook_keeps_its_outputs_and_runs_in_its_folder(tmp_path):
    import nbformat

    (tmp_path / "here.txt").write_text("found")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(open('here.txt').read(), 6 * 7)")]
    path = tmp_path / "ok.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    out.mkdir()
    done = nbformat.read(_hooks().execute_notebook(path, out), as_version=4)
    assert done.cells[0].outputs[0]["text"] == "found 42\n"
    assert nbformat.read(path, as_version=4).cells[0].outputs == []  # the source is left as it was
