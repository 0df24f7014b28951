"""Package names imported on first use (a module ``__getattr__``, PEP 562).

A package lists where each of its public names lives; importing the package then loads
none of those modules (no torch, no pandas), and the first lookup of a name imports its
module and keeps the value in the package, so later lookups are plain attribute reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(
    package: str,
    modules: Mapping[str, Iterable[str]],
    namespace: dict[str, Any],
    computed: Mapping[str, Callable[[], Any]] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, whose names come from ``modules``
    (module -> the names it provides) on first use; ``computed`` maps further names to the
    function that makes their value (e.g. ``__version__``). ``namespace`` is the package's
    ``globals()``, where each value is kept. An unknown name raises AttributeError."""
    where = {name: module for module, names in modules.items() for name in names}
    computed = dict(computed or {})

    def __getattr__(name: str) -> Any:
        if name in where:
            value = namespace[name] = getattr(import_module(where[name]), name)
            return value
        if name in computed:
            value = namespace[name] = computed[name]()
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *where, *computed})

    return __getattr__, __dir__, sorted({*where, *computed})
