"""Loading a config: a TOML path or a shipped name, ``--set section.key=value`` overrides."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mmicl_interp.config.errors import ConfigError
from mmicl_interp.config.run import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The shipped configs (package data, so an installed copy has them too)."""


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a shipped config in ``mmicl_interp/configs``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and not path.parent.parts:
        shipped = CONFIG_DIR / f"{path.name}.toml"
        if shipped.is_file():
            return shipped
    shipped_names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml")) if CONFIG_DIR.is_dir() else []
    raise ConfigError(
        "config",
        f"no such file {str(name_or_path)!r}; give a TOML path or a shipped name "
        f"({', '.join(shipped_names) or 'none found'})",
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value`` (value in TOML syntax, bare words taken as strings)."""
    if "=" not in text:
        raise ConfigError("--set", f"expected section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".") if p.strip()]
    if not parts:
        raise ConfigError("--set", f"expected section.key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def read_toml(path: Path, field: str) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; a syntax error or an unreadable file is a
    :class:`ConfigError` on ``field`` naming the file."""
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(field, f"TOML syntax error in {path}: {err}") from None
    except OSError as err:
        raise ConfigError(field, f"cannot read {path}: {err.strerror}") from None


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML config (path or shipped name), apply ``--set`` overrides, validate."""
    path = resolve_config_path(name_or_path)
    data = read_toml(path, "config")
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(parts), "is not a table")
        node[parts[-1]] = value
    return RunConfig.from_dict(data)
