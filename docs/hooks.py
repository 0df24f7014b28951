"""mkdocs hook: pages generated at build time, so they cannot drift from the code.

- ``cli.md``: the ``mmicl`` command and every subcommand's ``--help``, from
  :func:`mmicl_interp.cli.build_parser` (argparse's own ``format_help``);
- ``api/<name>.md``: one page per public module or package, a ``::: mmicl_interp.<name>``
  block for it and, for a package, for each of its submodules (found on disk, so a new
  module gets documented, and added to the nav's API section, without editing anything);
- ``01_walkthrough.ipynb``: the notebook ``analyses/notebooks/01_walkthrough.ipynb``, executed
  against the shipped example run (:func:`execute_notebook`) and handed to mkdocs-jupyter with its
  outputs. A cell that raises fails the build, so the page always shows what the code does today.
  ``MMICL_DOCS_EXECUTE=0`` hands over the notebook as committed (no outputs), for a quick
  ``mkdocs serve``.

Nothing here touches the network: the kernel runs with ``HF_HUB_OFFLINE=1``, and plotly's
``notebook`` renderer puts plotly.js into the page once, so the figures draw offline too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmicl_interp"
NOTEBOOK = ROOT / "analyses" / "notebooks" / "01_walkthrough.ipynb"
HELP_WIDTH = 100
NOTEBOOK_TIMEOUT_S = 600
"""Longest a notebook cell may run while the site is built."""
_TEMP: list[tempfile.TemporaryDirectory] = []
"""The executed notebook's folder of the build under way."""

# the public modules and packages, in the nav's order (mkdocs.yml lists the pages; the
# summaries are on docs/api/index.md, each page opens with its module's own docstring)
API_PAGES = (
    "config",
    "data",
    "model",
    "train",
    "analyses",
    "plots",
    "report",
    "real",
    "sweep",
    "runs",
    "prompts",
    "io",
    "checkpoints",
    "device",
    "types",
    "progress",
    "cli",
)


def api_pages() -> list[str]:
    """:data:`API_PAGES`, then any other public top-level module or package found on disk
    (so a module added or split off later still gets a page, and its references resolve)."""
    found = [name.rsplit(".", 1)[-1] for name in _submodules(PACKAGE, "mmicl_interp")]
    return [*API_PAGES, *sorted(set(found) - set(API_PAGES))]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands, name -> subparser, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_markdown() -> str:
    """The CLI reference page: ``mmicl --help`` and each subcommand's ``--help``."""
    from mmicl_interp.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)  # argparse wraps to the terminal: fix the width
    try:
        parser = build_parser()
        parts = [
            "# CLI reference",
            "",
            "Generated at build time from the argparse parser "
            "(`mmicl_interp.cli.build_parser`): every block is that command's `--help`.",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        for name, sub in subcommands(parser).items():
            parts += ["", f"## `mmicl {name}`", "", "```text", sub.format_help().rstrip(), "```"]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(parts) + "\n"


def _submodules(package_dir: Path, dotted: str) -> list[str]:
    """Public submodules of a package on disk (``_``-prefixed files skipped), sorted."""
    names = []
    for path in sorted(package_dir.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            names.append(f"{dotted}.{path.stem}")
        elif path.is_dir() and (path / "__init__.py").exists():
            names.append(f"{dotted}.{path.name}")
    return names


def api_markdown(name: str) -> str:
    """An API page: the module, or the package's docstring and then each submodule."""
    dotted = f"mmicl_interp.{name}"
    parts = [f"# `{dotted}`", ""]
    package_dir = PACKAGE / name
    if package_dir.is_dir():
        options = ["    options:", "      members: false", "      show_root_heading: false"]
        parts += [f"::: {dotted}", *options, ""]
        for module in _submodules(package_dir, dotted):
            parts += [f"::: {module}", ""]
    else:
        parts += [f"::: {dotted}", "    options:", "      show_root_heading: false", ""]
    return "\n".join(parts)


def on_config(config):
    """Adds the pages of modules that mkdocs.yml's nav does not list to its API section."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "API reference" in entry:
            section = entry["API reference"]
            listed = {page for page in section if isinstance(page, str)}
            section += [f"api/{name}.md" for name in api_pages() if f"api/{name}.md" not in listed]
    return config


def execute_notebook(path: Path, out_dir: Path) -> Path:
    """Runs the notebook at ``path`` top to bottom in a fresh kernel started in its folder and
    writes it, with its outputs, to ``out_dir / path.name``; a cell that raises stops the build
    with a one-line :class:`PluginError` naming the cell."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    # the kernel inherits this process's environment: plotly.js inline (offline figures), no
    # hub, and without tqdm.auto's "IProgress not found" (TransformerLens imports tqdm.auto; no
    # widgets in a static page anyway)
    env = {
        "PLOTLY_RENDERER": "notebook",
        "HF_HUB_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore::Warning:tqdm.auto",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        client = NotebookClient(
            nb,
            timeout=NOTEBOOK_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    except CellExecutionError as err:
        failed = [
            i for i, c in enumerate(nb.cells) if any(o.output_type == "error" for o in c.get("outputs", []))
        ]
        where = f"cell {failed[0]}" if failed else "a cell"
        raise PluginError(
            f"{path.name}: {where} raised {err.ename}: {err.evalue} (executing it for the docs)"
        ) from err
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out = out_dir / path.name
    nbformat.write(nb, out)
    return out


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebook
def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "cli.md", content=cli_markdown()))
    for name in api_pages():
        files.append(File.generated(config, f"api/{name}.md", content=api_markdown(name)))
    # a plain File rooted at the executed notebook's folder (not File.generated: mkdocs-jupyter's
    # wrapper reads the source path through src_dir, which a generated file lacks)
    notebook = NOTEBOOK
    if os.environ.get("MMICL_DOCS_EXECUTE", "1") != "0":
        _TEMP.append(tempfile.TemporaryDirectory(prefix="mmicl-docs-"))
        notebook = execute_notebook(NOTEBOOK, Path(_TEMP[-1].name))
    files.append(File(notebook.name, str(notebook.parent), config["site_dir"], config["use_directory_urls"]))
    return files


def on_post_build(config) -> None:
    """Removes the executed notebook's folder once its page is written."""
    while _TEMP:
        _TEMP.pop().cleanup()
