"""Sweep grids: a TOML file naming a base config, fixed overrides and the values to cross.

::

    base = "default"            # a shipped config name, or a path (relative to this file)
    name = "positions-vs-K"     # optional; default: the grid file's stem
    [set]                       # optional: overrides every point shares
    "train.steps" = 200
    [grid]                      # crossed in file order, the last key varying fastest
    "task.K" = [64, 512]
    "model.positions" = ["onehot", "rope"]
    seed = [0, 1, 2]            # one seed for task, model and training data together

Keys are dotted config fields (``section.key``); unquoted dotted keys (``task.K = [...]``)
mean the same. :func:`load_grid` parses and checks the file; :meth:`Grid.points` expands
it into :class:`Point` s, each with its validated :class:`~mmicl_interp.config.RunConfig`
and a readable, filesystem-safe name built from its swept values
(``K=64_positions=rope_seed=0``). Every problem raises :class:`ConfigError` naming the
field (``base``, ``grid.task.K``, ``set.train.steps``, ...).

The bare key ``seed`` (in ``[grid]`` or ``[set]``) is a seed axis that varies everything a
run's randomness comes from: it sets ``task.seed``, ``model.seed`` and ``train.seed`` to the
same value, so a "seed" is an independent task, initialisation and data stream. The
evaluation suites' ``task.eval_seed`` stays fixed, so every seed is scored on the same
held-out sequences. Sweeping ``train.seed`` alone varies only the data stream.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError, RunConfig, load_config, read_toml

TOP_KEYS: tuple[str, ...] = ("base", "name", "set", "grid")
RESERVED: tuple[str, ...] = ("name",)
SEED_KEY = "seed"
SEED_FIELDS: tuple[str, ...] = ("task.seed", "model.seed", "train.seed")
"""What the bare ``seed`` key sets (see the module docstring)."""
SEED_KEYS: tuple[str, ...] = (SEED_KEY, "train.seed")
"""Swept keys that make repeats of one point: the ``seed`` axis (task, model and data seeds
together) and the older ``train.seed`` (data stream only)."""
"""Keys a grid may not set: each point's run is named by the sweep."""


@dataclass(frozen=True)
class Point:
    """One grid point: its name, its swept values (grid key -> value) and its config."""

    name: str
    values: dict[str, Any]
    config: RunConfig


@dataclass
class Grid:
    """A parsed sweep grid; :meth:`points` expands and validates it."""

    base: str
    """The base config: a shipped name or a path (already resolved against the grid's folder)."""
    name: str
    fixed: dict[str, Any] = field(default_factory=dict)
    """``[set]``: dotted key -> value, applied to every point."""
    axes: dict[str, list[Any]] = field(default_factory=dict)
    """``[grid]``: dotted key -> values, in file order."""

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, root: Path | None = None, default_name: str = "sweep"
    ) -> Grid:
        """Build from parsed TOML; ``root`` is the folder relative ``base`` paths start from."""
        for key in data:
            if key not in TOP_KEYS:
                raise ConfigError(
                    key, f"unknown top-level key of a sweep grid; allowed: {', '.join(TOP_KEYS)}"
                )
        if "base" not in data:
            raise ConfigError("base", 'missing: name the base config, e.g. base = "default"')
        base = data["base"]
        if not isinstance(base, str) or not base:
            raise ConfigError("base", f"must be a config name or path, got {base!r}")
        name = data.get("name", default_name)
        if not isinstance(name, str) or not _safe(name) or name != _safe(name):
            raise ConfigError("name", f"must be a non-empty name of letters, digits, '._=+-', got {name!r}")
        fixed = _flatten("set", data.get("set", {}))
        axes = _flatten("grid", data.get("grid"))
        if not axes:
            raise ConfigError(
                "grid", 'needs at least one key with a list of values, e.g. "task.K" = [64, 512]'
            )
        for key, values in axes.items():
            if not isinstance(values, list):
                raise ConfigError(f"grid.{key}", f"must be a list of values, got {values!r}")
            if not values:
                raise ConfigError(f"grid.{key}", "is an empty list; give at least one value")
            names = [_value_text(v) for v in values]
            dups = sorted({n for n in names if names.count(n) > 1})
            if dups:
                raise ConfigError(f"grid.{key}", f"repeats a value: {', '.join(dups)}")
        for key in axes:
            if key in fixed:
                raise ConfigError(f"set.{key}", "is also swept in [grid]; keep it in one of them")
        for section, table, other in (("grid", axes, fixed), ("set", fixed, axes)):
            if SEED_KEY in table:
                both = [k for k in SEED_FIELDS if k in table or k in other]
                if both:
                    raise ConfigError(
                        f"{section}.{SEED_KEY}",
                        f"sets {', '.join(SEED_FIELDS)} together; drop {', '.join(both)}",
                    )
        return cls(base=_resolve_base(base, root), name=name, fixed=fixed, axes=axes)

    def labels(self) -> dict[str, str]:
        """Grid key -> its short label in point names: the shortest unique dotted suffix."""
        keys = list(self.axes)
        labels = {}
        for key in keys:
            parts = key.split(".")
            for n in range(1, len(parts) + 1):
                label = ".".join(parts[-n:])
                if not any(other != key and other.split(".")[-n:] == parts[-n:] for other in keys):
                    break
            labels[key] = _safe(label)
        return labels

    def points(self) -> list[Point]:
        """Every combination, the first key varying slowest; each config loaded and validated."""
        labels = self.labels()
        keys = list(self.axes)
        points: list[Point] = []
        seen: dict[str, dict[str, Any]] = {}
        fixed_overrides = [o for k, v in self.fixed.items() for o in _overrides("set", k, v)]
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            values = dict(zip(keys, combo, strict=True))
            name = "_".join(f"{labels[k]}={_safe(_value_text(v))}" for k, v in values.items())
            if name in seen:
                raise ConfigError("grid", f"points {seen[name]} and {values} get the same name {name!r}")
            seen[name] = values
            overrides = fixed_overrides + [o for k, v in values.items() for o in _overrides("grid", k, v)]
            config = self._load(overrides, name)
            config.name = name
            points.append(Point(name=name, values=values, config=config))
        return points

    def _load(self, overrides: list[str], point: str) -> RunConfig:
        try:
            return load_config(self.base, overrides)
        except ConfigError as err:
            if err.field == "config":
                raise ConfigError("base", err.message) from None
            for section, table in (("grid", self.axes), ("set", self.fixed)):
                for key in table:
                    if key == err.field or key.startswith(err.field + "."):
                        raise ConfigError(f"{section}.{key}", err.message) from None
            raise ConfigError(err.field, f"{err.message} (at grid point {point})") from None


def _overrides(section: str, key: str, value: Any) -> list[str]:
    """``key=value`` overrides for one grid or set entry; ``seed`` expands to its fields."""
    text = toml_value(f"{section}.{key}", value)
    if key == SEED_KEY:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{section}.{key}", f"must be a non-negative integer, got {value!r}")
        return [f"{field}={text}" for field in SEED_FIELDS]
    return [f"{key}={text}"]


def load_grid(path: str | Path) -> Grid:
    """Read and check a sweep grid TOML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("grid", f"no such file {str(path)!r}")
    data = read_toml(path, "grid")
    return Grid.from_dict(data, root=path.resolve().parent, default_name=_safe(path.stem) or "sweep")


def _resolve_base(base: str, root: Path | None) -> str:
    """A path relative to the grid's folder, else the text as given (a shipped name)."""
    path = Path(base)
    if root is None or path.is_absolute():
        return base
    candidate = root / path
    if candidate.is_file() or path.suffix or len(path.parts) > 1:
        return str(candidate)
    return base


def _flatten(section: str, table: Any) -> dict[str, Any]:
    """``{"task": {"K": [..]}, "model.positions": [..]}`` -> dotted key -> value."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(section, "must be a table ([section]) of dotted keys")
    out: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            parts = [p.strip() for p in key.split(".")]
            if not all(parts):
                raise ConfigError(f"{section}.{prefix}{key}", "is not a dotted key section.key")
            dotted = prefix + ".".join(parts)
            if isinstance(value, dict):
                walk(dotted + ".", value)
                continue
            if dotted in RESERVED:
                raise ConfigError(
                    f"{section}.{dotted}", "is set by the sweep (each run is named by its point)"
                )
            if dotted in out:
                raise ConfigError(f"{section}.{dotted}", "is given twice")
            out[dotted] = value

    walk("", table)
    return out


def _value_text(value: Any) -> str:
    """How a value reads in a point name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "-".join(_value_text(v) for v in value) or "none"
    return str(value)


def _safe(text: str) -> str:
    """Keep letters, digits and ``._=+-``; anything else becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9._=+\-]", "-", text).strip(".")


def toml_value(where: str, value: Any) -> str:
    """``value`` in TOML syntax, for :func:`~mmicl_interp.config.parse_override`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(where, v) for v in value) + "]"
    raise ConfigError(where, f"values must be numbers, strings, booleans or lists, got {value!r}")
