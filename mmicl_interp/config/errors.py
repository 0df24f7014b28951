"""The config error and the field checks every section's ``validate`` is built from.

Each check reads ``obj.<name>`` and raises :class:`ConfigError` naming the field
(``section.name``) and what is allowed.
"""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A config value is invalid; ``field`` names it as ``section.key``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _number(
    obj: Any,
    section: str,
    name: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A finite real number (not a bool) in the range; the error names the range."""
    value = getattr(obj, name)
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if ok:
        return
    if math.isinf(high):
        allowed = f"{'>' if low_open else '>='} {low:g}"
    else:
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    raise ConfigError(f"{section}.{name}", f"must be a finite number {allowed}, got {value!r}")


def _choice(obj: Any, section: str, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in allowed:
        raise ConfigError(f"{section}.{name}", f"must be one of {', '.join(allowed)}; got {value!r}")


def _int(obj: Any, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{section}.{name}", f"must be an integer >= 0, got {value!r}")


def _positive_int(obj: Any, section: str, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{section}.{name}", f"must be an integer > 0, got {value!r}")
