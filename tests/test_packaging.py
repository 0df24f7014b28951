"""Structure and packaging: no import cycle in the package, the config package's modules in
one-way layers below the rest, the version from the installed
metadata, the git commit only from a git checkout, and a wheel that runs ``mmicl train default``
from a fresh virtual environment, outside the repository."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import mmicl_interp
from mmicl_interp.config import CONFIG_DIR, load_config, resolve_config_path
from mmicl_interp.train import trainer

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mmicl_interp"


# --- import graph -------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules that ``path`` imports anywhere (also inside functions), except under
    ``if TYPE_CHECKING``; ``from pkg import sub`` counts as importing ``pkg.sub``, and so does
    ``importlib.import_module("pkg.sub")`` with a literal name."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            # importing only submodules of a package does not need the package's own names
            if len(subs) < len(node.names) or not subs:
                found.add(node.module)
            found.update(subs)
        elif (  # importlib.import_module("mmicl_interp.x") imports it too
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in modules
        ):
            found.add(node.args[0].value)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, modules) - {name} for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := dfs(start)):
            return found
    return None


def test_cycle_finder_finds_a_cycle_and_the_graph_sees_deferred_imports():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    graph = _import_graph()
    # the stage-2 source-run check imports runs inside a function: still an edge
    assert "mmicl_interp.runs" in graph["mmicl_interp.train.pipeline"]
    assert "mmicl_interp.model.factory" in graph["mmicl_interp.runs"]
    # the VLM loader is reached through importlib.import_module: an edge as well
    assert "mmicl_interp.real.vlm" in graph["mmicl_interp.real.load"]


def test_the_package_has_no_import_cycle_not_even_through_deferred_imports():
    graph = _import_graph()
    assert "mmicl_interp.train.pipeline" not in graph["mmicl_interp.runs"]
    assert _cycle(graph) is None


CONFIG_LAYERS = {
    "errors": 0,
    "task": 1,
    "model": 1,
    "train": 1,
    "multimodal": 2,
    "run": 3,
    "load": 4,
    "resources": 4,
}
"""The config package's modules by layer: each imports only modules of lower layers."""


def test_the_config_package_imports_one_way_and_nothing_above_it():
    graph = _import_graph()
    package = "mmicl_interp.config"
    modules = {m for m in graph if m.startswith(f"{package}.")}
    assert {m.rsplit(".", 1)[1] for m in modules} == set(CONFIG_LAYERS), "give a new module a layer"
    assert graph[package] <= modules
    for module in modules:
        layer = CONFIG_LAYERS[module.rsplit(".", 1)[1]]
        for target in graph[module]:
            if target.startswith(f"{package}."):
                assert CONFIG_LAYERS[target.rsplit(".", 1)[1]] < layer, f"{module} imports {target}"
            else:  # nothing of the toolkit above the config: no data, model, train, analyses
                assert target == "mmicl_interp.types", f"{module} imports {target}"
    # and at run time, importing it loads no other part of the toolkit
    code = "import json, sys, mmicl_interp.config\nprint(json.dumps([*sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = {m for m in json.loads(done.stdout.strip().splitlines()[-1]) if m.startswith("mmicl_interp")}
    assert loaded == {"mmicl_interp", "mmicl_interp._lazy", "mmicl_interp.types", package, *modules}


def test_build_model_is_still_importable_from_the_pipeline():
    from mmicl_interp.model import factory
    from mmicl_interp.train import pipeline

    assert pipeline.build_model is factory.build_model
    assert pipeline.training_task is factory.training_task


# --- version and git commit ---------------------------------------------------------------


def test_version_is_the_installed_distributions():
    assert mmicl_interp.__version__ == metadata.version("mmicl-interp")
    from mmicl_interp import __version__

    assert __version__ == metadata.version("mmicl-interp")


def test_version_falls_back_when_the_package_is_not_installed(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert mmicl_interp._version() == "0+unknown"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _commit(cwd: Path, *args: str) -> None:
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "x", *args, cwd=cwd)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_is_the_checkouts_head_when_the_source_is_tracked():
    try:
        _git("ls-files", "--error-unmatch", "mmicl_interp/train/trainer.py", cwd=REPO)
    except subprocess.CalledProcessError:
        pytest.skip("the source is not a git checkout")
    assert trainer._git_commit() == _git("rev-parse", "HEAD", cwd=REPO)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_ignores_a_git_folder_the_source_is_not_tracked_in(tmp_path, monkeypatch):
    # an installed copy at site/lib/pkg/train/trainer.py, with a '.git' two folders up (where the
    # old code looked) and a real repository around it that does not track the file
    source = tmp_path / "site" / "lib" / "pkg" / "train" / "trainer.py"
    source.parent.mkdir(parents=True)
    source.write_text("# copy\n")
    fake = source.parents[2] / ".git"
    fake.mkdir()
    (fake / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    monkeypatch.setattr(trainer, "__file__", str(source))
    assert trainer._git_commit() is None
    shutil.rmtree(fake)
    _git("init", "-q", cwd=tmp_path)
    _commit(tmp_path, "--allow-empty")
    assert trainer._git_commit() is None  # in a work tree, but untracked (an ignored venv)
    _git("add", str(source), cwd=tmp_path)
    _commit(tmp_path)
    assert trainer._git_commit() == _git("rev-parse", "HEAD", cwd=tmp_path)


def test_git_commit_is_none_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable to find
    assert trainer._git_commit() is None


# --- shipped configs ----------------------------------------------------------------------


def test_shipped_configs_live_in_the_package_and_load_by_name():
    assert CONFIG_DIR.parent == PACKAGE
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    assert {"default", "iwl", "mm_stage1", "mm_stage2", "mm_early_fusion", "mm_encoder"} <= set(names)
    for name in names:
        assert resolve_config_path(name) == CONFIG_DIR / f"{name}.toml"
        assert load_config(name).name == name
    assert not (REPO / "analyses" / "configs").exists()


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    tail = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{cmd} exited {done.returncode}\n{tail}"
    return done


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_trains_the_shipped_default_config(tmp_path):
    """Build the wheel (no network), install it into a fresh venv that borrows the project's
    installed dependencies but not its editable install, and train from a folder outside
    the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    # build from a copy, so the checkout gets no build/ or egg-info
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / "mmicl_interp", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    pip_wheel = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."]
    _run([sys.executable, *pip_wheel], src, env)
    (wheel,) = dist.glob("mmicl_interp-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python, mmicl = venv / "bin" / "python", venv / "bin" / "mmicl"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, env)
    # the dependencies come from this interpreter's site-packages, added as a plain path: its .pth
    # files (the editable install's finder among them) are not run, so only the wheel's copy shows
    fresh_site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
    ).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]
    assert (Path(deps) / "torch").is_dir()
    (Path(fresh_site) / "project_dependencies.pth").write_text(deps + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = (
        "import json, sys, mmicl_interp\n"
        "print(json.dumps({'file': mmicl_interp.__file__, 'version': mmicl_interp.__version__,\n"
        "  'editable': [m for m in sys.modules if '__editable__' in m]}))"
    )
    seen = json.loads(_run([str(python), "-c", probe], work, env).stdout.strip().splitlines()[-1])
    assert Path(seen["file"]).resolve().is_relative_to(venv.resolve()), seen
    assert seen["editable"] == [] and seen["version"] == metadata.version("mmicl-interp")

    _run([str(mmicl), "train", "default", "--set", "train.steps=5", "--out", "x", "--quiet"], work, env)
    manifest = json.loads((work / "x" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["train"]["steps"] == 5
    assert manifest["git_commit"] is None  # an installed copy is no checkout
    assert manifest["package_version"] == seen["version"]
    # the check: the shipped name with its default output folder, under this cwd
    _run([str(mmicl), "train", "default", "--set", "train.steps=20", "--quiet"], work, env)
    default_run = json.loads((work / "checkpoints" / "default" / "manifest.json").read_text())
    assert default_run["status"] == "complete" and default_run["last_step"] == 20
