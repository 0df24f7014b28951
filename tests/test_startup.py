"""The ``mmicl`` command starts without loading torch or pandas (``mmicl --help`` is instant)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "pandas", "numpy", "transformer_lens", "plotly")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED:"), done.stdout
    return [m for m in last.removeprefix("LOADED:").split(",") if m]


def test_importing_the_cli_loads_no_heavy_module():
    assert _loaded_after("import mmicl_interp.cli") == []


def test_parsing_help_loads_no_heavy_module():
    code = "from mmicl_interp.cli import main\nassert main(['ablate', '--help']) == 0"
    assert _loaded_after(code) == []


def test_package_and_config_imports_are_light_and_names_still_resolve():
    assert _loaded_after("import mmicl_interp, mmicl_interp.config, mmicl_interp.analyses") == []
    loaded = _loaded_after(
        "import mmicl_interp, mmicl_interp.analyses as A\n"
        "assert callable(mmicl_interp.load_run) and callable(A.circuit_scores)"
    )
    assert "torch" in loaded and "pandas" in loaded  # the names load their modules on first use


def test_unknown_package_attributes_still_raise_attribute_error():
    import mmicl_interp
    import mmicl_interp.analyses

    for module in (mmicl_interp, mmicl_interp.analyses):
        try:
            module.no_such_name  # noqa: B018
        except AttributeError:
            continue
        raise AssertionError(f"{module.__name__}.no_such_name did not raise AttributeError")


def test_every_public_analysis_is_reachable_from_the_analyses_package():
    import inspect

    import mmicl_interp.analyses as analyses

    for name in analyses.__all__:
        value = getattr(analyses, name)
        assert callable(value), name
        assert inspect.getmodule(value).__name__.startswith("mmicl_interp"), name
