"""The package's layers import downward only (issue 21's house: no arrow runs back up).

Every top-level module or subpackage of ``mmicl_interp`` gets a rank; a module may import
modules of its own rank group only inside its own subpackage, and of lower ranks anywhere.
``real/`` and ``sweep/`` sit beside the layers they use, above the report layer and below
the command line. The import graph is the one the cycle test reads (``tests/test_packaging``),
so imports inside functions and ``importlib.import_module`` with a literal name count too.
"""

from __future__ import annotations

from tests.test_packaging import _import_graph

RANKS = {
    "": 0.5,  # mmicl_interp/__init__.py: lazy names only (through _lazy)
    "types": 0,
    "_lazy": 0,
    "config": 1,
    "argtypes": 2,
    "io": 2,
    "device": 2,
    "progress": 2,
    "parallel": 2,
    "checkpoints": 3,
    "data": 4,
    "model": 5,
    "prompts": 5,
    "runs": 6,
    "train": 7,
    "analyses": 8,
    "plots": 9,
    "report": 10,
    "sweep": 11,
    "real": 11,
    "cli": 12,
}
"""The layer of each part: config -> data -> model -> train -> analyses -> plots/report -> cli."""


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_has_a_layer():
    parts = {_part(m) for m in _import_graph()}
    assert parts <= set(RANKS), f"give these parts a layer in RANKS: {sorted(parts - set(RANKS))}"


def test_imports_point_down():
    upward = []
    for module, imported in _import_graph().items():
        for target in imported:
            a, b = _part(module), _part(target)
            if a == b:
                continue
            if RANKS[b] >= RANKS[a]:
                upward.append(f"{module} (layer {RANKS[a]}) -> {target} (layer {RANKS[b]})")
    assert not upward, "imports that run back up or sideways:\n" + "\n".join(sorted(upward))


def test_the_check_sees_an_upward_import():
    """The rule flags an edge from a lower layer to a higher one (the check can fail)."""
    assert RANKS[_part("mmicl_interp.train.trainer")] < RANKS[_part("mmicl_interp.analyses.stats")]
    assert RANKS[_part("mmicl_interp.config")] < RANKS[_part("mmicl_interp.data.task")]
