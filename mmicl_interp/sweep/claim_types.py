"""The vocabulary of ``claims.json``: a claim's :class:`Section` of :class:`SubClaim` verdicts.

Kept apart from the judging (:mod:`mmicl_interp.sweep.claims`) and the file and table code
(:mod:`mmicl_interp.sweep.claims_file`) so both can import it without importing each other.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mmicl_interp.config import ConfigError

Verdict = Literal["supported", "weak", "not supported", "not tested", "inside noise"]
VERDICTS: tuple[str, ...] = ("supported", "weak", "not supported", "not tested", "inside noise")
VERSION = 1
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
"""The marker comments around the generated table in the READMEs."""
V1_NOTE = "v1 runs: only train.seed varied; rerun pending"
"""Note for verdicts read from the first runs (task and model seeds fixed)."""


@dataclass
class SubClaim:
    """One testable part of a claim, with its verdict and the evidence behind it."""

    id: str
    """``"2a"``: the claim number and a letter."""
    text: str
    """What is claimed, in a few words."""
    verdict: str
    effect: float | None = None
    effect_label: str = ""
    """What ``effect`` measures (e.g. "crossing K, RoPE / one-hot")."""
    interval: list[float] | None = None
    """``[lo, hi]`` around the effect (see ``interval_kind``); None when there is none."""
    interval_kind: str = ""
    """How the interval was made (e.g. "95% bootstrap over 5 seeds", "min-max over 2 seeds")."""
    n_runs: int | None = None
    n_unique_configs: int | None = None
    n_seeds: int | None = None
    steps: int | None = None
    command: str = ""
    wall_time_s: float | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ConfigError("verdict", f"must be one of {', '.join(VERDICTS)}; got {self.verdict!r}")
        if self.interval is not None:
            if len(self.interval) != 2:
                raise ConfigError("interval", f"must be [lo, hi], got {self.interval!r}")
            self.interval = [float(v) for v in self.interval]
        if self.effect is not None:
            self.effect = float(self.effect)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and inf become None / strings JSON can hold)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass
class Section:
    """One claim's part of ``claims.json``."""

    key: str
    """``"1"`` ... ``"6"``, or a name such as ``"paper_arch"``."""
    title: str
    subclaims: list[SubClaim] = field(default_factory=list)
    command: str = ""
    wall_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "command": self.command,
            "wall_time_s": _jsonable(self.wall_time_s),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "subclaims": [s.to_dict() for s in self.subclaims],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _number(value: Any) -> float:
    """A stored number back as a float (None -> NaN, "inf" -> inf)."""
    if value is None:
        return math.nan
    return float(value)


__all__ = ["END", "START", "V1_NOTE", "VERDICTS", "VERSION", "Section", "SubClaim", "Verdict"]
