"""``claims.json``: the verdict on each of the paper's claims, written by the claim scripts.

One file (``analyses/results/claims.json``) holds a *section* per claim (``"1"`` ... ``"6"``,
``"paper_arch"``), each written by the script that measures it:

.. code-block:: json

    {"version": 1,
     "claims": {"2": {"title": "...", "command": "...", "wall_time_s": 980.1, "updated": "...",
                      "subclaims": [{"id": "2a", "text": "...", "verdict": "weak",
                                     "effect": 2.88, "effect_label": "...", "interval": [2.1, 3.4],
                                     "interval_kind": "...", "n_runs": 60, "n_unique_configs": 60,
                                     "n_seeds": 5, "steps": 10000, "command": "...",
                                     "wall_time_s": 980.1, "notes": "..."}]}}}

- :func:`write_section` replaces one section and keeps every other one (read, replace, write
  atomically with :func:`~mmicl_interp.io.write_json`, under a lock file so two scripts
  finishing together do not lose each other's section);
- :func:`verdict` turns an effect and its interval into one of :data:`VERDICTS`;
- :func:`render_table` / :func:`render_claims` make the Markdown claims table that
  ``analyses/make_tables.py`` puts into README.md and analyses/README.md between
  :data:`START` and :data:`END`.

**Verdict rule** (:func:`verdict`), for an effect whose null value is ``null`` (0 for a
difference, 1 for a ratio) and an expected sign:

- no effect measured (None or NaN) -> ``"not tested"``;
- an interval that contains ``null``, or an effect equal to it -> ``"inside noise"``;
- an interval (or, without one, the effect) wholly on the unexpected side -> ``"not supported"``;
- wholly on the expected side -> ``"supported"``, lowered to ``"weak"`` when there is no
  interval, when ``|effect - null| < min_effect`` or when ``n_seeds < min_seeds``.
"""

from __future__ import annotations

import math
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mmicl_interp.config import ConfigError
from mmicl_interp.io import read_json, write_json
from mmicl_interp.sweep.grid import SEED_KEYS

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the write itself stays atomic
    fcntl = None

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


# --------------------------------------------------------------------------- verdict
def verdict(
    effect: float | None,
    interval: Sequence[float] | None = None,
    *,
    expected: Literal["positive", "negative"] = "positive",
    null: float = 0.0,
    min_effect: float = 0.0,
    n_seeds: int | None = None,
    min_seeds: int = 3,
    at_most_weak: bool = False,
) -> Verdict:
    """The verdict on an effect (see the module docstring for the rule).

    ``expected``: the sign of ``effect - null`` the claim predicts. ``interval``: ``[lo, hi]``
    (a bound may be +-inf, e.g. a threshold never reached). ``min_effect``: the smallest
    ``|effect - null|`` that counts as more than weak. ``n_seeds`` below ``min_seeds`` caps
    the verdict at "weak"; so does ``at_most_weak``, for what the numbers cannot show (an
    effect picked after the fact, runs not yet at a plateau).
    """
    if expected not in ("positive", "negative"):
        raise ValueError(f"expected must be 'positive' or 'negative', got {expected!r}")
    if effect is None or math.isnan(float(effect)):
        return "not tested"
    sign = 1.0 if expected == "positive" else -1.0
    d = sign * (float(effect) - null)
    if d == 0:
        return "inside noise"
    if interval is not None:
        lo, hi = (_number(v) for v in interval)
        if math.isnan(lo) or math.isnan(hi):
            interval = None
        else:
            lo, hi = sorted((sign * (lo - null), sign * (hi - null)))
            if lo <= 0 <= hi:
                return "inside noise"
            if hi < 0:
                return "not supported"
    if interval is None and d < 0:
        return "not supported"
    if interval is None or abs(d) < min_effect or (n_seeds is not None and n_seeds < min_seeds):
        return "weak"
    if at_most_weak:
        return "weak"
    return "supported"


# --------------------------------------------------------------------------- file
@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path``'s folder (``flock``; no lock file left behind) for a
    read-modify-write of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_claims(path: str | Path) -> dict[str, Any]:
    """``claims.json`` as a dict (``{"version": 1, "claims": {}}`` when the file is missing).

    A file that is not JSON raises :class:`~mmicl_interp.io.CorruptFileError`; one without
    a ``claims`` table raises ConfigError naming it.
    """
    path = Path(path)
    if not path.exists():
        return {"version": VERSION, "claims": {}}
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("claims"), dict):
        raise ConfigError(str(path), 'is not a claims file: expected {"version": 1, "claims": {...}}')
    return data


def write_section(path: str | Path, section: Section | tuple[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Put one claim's section into ``claims.json`` (created if missing), keeping all others.

    ``section``: a :class:`Section`, or ``(key, already-built dict)``. The file is rewritten
    atomically under a lock; returns the whole file's contents as written.
    """
    path = Path(path)
    key, body = (section.key, section.to_dict()) if isinstance(section, Section) else section
    for sub in body.get("subclaims", []):
        if sub.get("verdict") not in VERDICTS:
            raise ConfigError(f"{key}.{sub.get('id')}.verdict", f"must be one of {', '.join(VERDICTS)}")
    with _locked(path):
        data = read_claims(path)
        data["version"] = VERSION
        data["claims"][str(key)] = dict(body)
        data["claims"] = dict(sorted(data["claims"].items(), key=lambda kv: _order(kv[0])))
        write_json(path, data)
    return data


def _order(key: str) -> tuple[int, float, str]:
    """Numbered claims first, in number order, then named sections alphabetically."""
    try:
        return (0, float(key), "")
    except ValueError:
        return (1, 0.0, key)


# --------------------------------------------------------------------------- rendering
def _fmt(value: Any) -> str:
    v = _number(value)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if abs(v) >= 100 or (v == int(v) and abs(v) >= 10):  # counts, K and steps: no 1.38e+03
        return f"{v:.0f}"
    return f"{v:.3g}" if abs(v) >= 1 else f"{v:.3f}"


def effect_text(sub: Mapping[str, Any]) -> str:
    """``"label: 2.88 [2.1, 3.4] (95% bootstrap)"``, or '-' without an effect."""
    if sub.get("effect") is None:
        return "-"
    text = _fmt(sub["effect"])
    if sub.get("interval"):
        text += f" [{_fmt(sub['interval'][0])}, {_fmt(sub['interval'][1])}]"
        if sub.get("interval_kind"):
            text += f" ({sub['interval_kind']})"
    label = sub.get("effect_label")
    return f"{label}: {text}" if label else text


def _runs_text(sub: Mapping[str, Any]) -> str:
    n, u = sub.get("n_runs"), sub.get("n_unique_configs")
    if n is None:
        return "-"
    return f"{n}" if u is None or u == n else f"{n} ({u} unique)"


def _wall_text(seconds: Any) -> str:
    s = _number(seconds)
    if math.isnan(s):
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(data: Mapping[str, Any]) -> list[str]:
    """The Markdown claims table of a ``claims.json`` dict: one row per sub-claim."""
    header = ["claim", "verdict", "effect [interval]", "runs", "seeds", "steps", "command", "wall time"]
    header.append("notes")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, section in data.get("claims", {}).items():
        for sub in section.get("subclaims", []):
            command = sub.get("command") or section.get("command") or ""
            wall = sub.get("wall_time_s")
            if wall is None and sub["verdict"] != "not tested":
                wall = section.get("wall_time_s")
            cells = [
                f"{sub.get('id', key)}. {sub.get('text', section.get('title', ''))}",
                f"**{sub['verdict']}**",
                effect_text(sub),
                _runs_text(sub),
                "-" if sub.get("n_seeds") is None else sub["n_seeds"],
                "-" if sub.get("steps") is None else sub["steps"],
                f"`{command}`" if command else "-",
                _wall_text(wall),
                sub.get("notes", ""),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def render_claims(path: str | Path) -> str:
    """The claims table of a ``claims.json`` file, as text (with a trailing newline)."""
    return "\n".join(render_table(read_claims(path))) + "\n"


def replace_between_markers(text: str, table: str, where: str = "text") -> str:
    """``text`` with everything between :data:`START` and :data:`END` replaced by ``table``.

    Raises ConfigError naming ``where`` when a marker is missing, repeated or out of order.
    """
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ConfigError(where, f"needs exactly one {START} followed by one {END} around the claims table")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table.rstrip()}\n{END}{tail}"


# --------------------------------------------------------------------------- evidence helpers
def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces a claim script's run: ``.venv/bin/python analyses/<script>.py ...``."""
    return shlex.join([".venv/bin/python", f"analyses/{script}.py", *(argv or [])])


def final_per_run(table: pd.DataFrame, suite: str = "icl", metric: str = "accuracy") -> pd.DataFrame:
    """One row per run of a sweep table: its swept values and its final ``metric`` on ``suite``."""
    from mmicl_interp.sweep.summary import final_rows

    last = final_rows(table, metric)
    return last[last["suite"] == suite].drop(columns=["suite", "metric"]).reset_index(drop=True)


def budget_text(budget: int, min_step: int, last_steps: pd.Series) -> str:
    """The training budget and where the plateau stop (``train.stop_plateau``) ended the runs,
    from each run's last step: "N steps per run" when none stopped early."""
    early = int((last_steps < budget).sum())
    if not early:
        return f"{budget} steps per run"
    return (
        f"up to {budget} steps per run, stopped at the icl plateau from step {min_step} on "
        "(train.stop_plateau): "
        f"{early} of {len(last_steps)} runs stopped early, last step {int(last_steps.min())}-"
        f"{int(last_steps.max())} (median {int(last_steps.median())})"
    )


def n_seeds(table: pd.DataFrame) -> int:
    """Distinct seeds behind each point (the fewest over points): values of the seed axes."""
    keys = [k for k in SEED_KEYS if k in table.columns]
    if not keys:
        return 1
    others = [c for c in table.columns if c not in ("run", "step", "suite", "metric", "value", *keys)]
    runs = table.drop_duplicates("run")
    if not others:
        return int(len(runs.drop_duplicates(keys)))
    return int(runs.drop_duplicates([*others, *keys]).groupby(others, dropna=False).size().min())


def bootstrap_difference(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(b) - mean(a)`` with a percentile interval from resampling each group's runs
    (seeds) with replacement; ``(nan, nan, nan)`` when a group is empty."""
    from mmicl_interp.analyses.stats import percentile_interval

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot_b = b[rng.integers(0, b.size, (n_boot, b.size))].mean(1)
    boot = boot_b - a[rng.integers(0, a.size, (n_boot, a.size))].mean(1)
    lo, hi = percentile_interval(boot, ci)
    return float(b.mean() - a.mean()), lo, hi


def ratio_interval(num: Mapping[str, float], den: Mapping[str, float]) -> tuple[float, float, float]:
    """``num / den`` of two thresholds with bootstrap bounds (rows of
    :func:`~mmicl_interp.sweep.summary.threshold_bootstrap`), and the conservative interval
    ``[num.lo / den.hi, num.hi / den.lo]`` (independent resamples; inf where a bound is)."""

    def div(x: float, y: float) -> float:
        if math.isnan(x) or math.isnan(y) or y == 0 or (math.isinf(x) and math.isinf(y)):
            return math.nan
        return x / y

    return (
        div(float(num["threshold"]), float(den["threshold"])),
        div(float(num["lo"]), float(den["hi"])),
        div(float(num["hi"]), float(den["lo"])),
    )


def still_moving(table: pd.DataFrame, suite: str = "icl", tail: float = 0.2, tol: float = 0.01) -> list[str]:
    """Runs whose ``suite`` accuracy still changed by ``tol`` or more over the last ``tail`` of
    their training: not at a plateau. The change is
    :func:`~mmicl_interp.analyses.stats.trend_change` (the least-squares trend over the window,
    not max - min of noisy evals), the same test as the training stop ``train.stop_plateau``.
    """
    from mmicl_interp.analyses.stats import trend_change

    rows = table[(table["suite"] == suite) & (table["metric"] == "accuracy")]
    moving = []
    for run, part in rows.groupby("run", sort=False):
        change = trend_change(part["step"].to_numpy(float), part["value"].to_numpy(float), tail)
        if change >= tol:  # nan (fewer than 2 evals in the window) is not "moving"
            moving.append(str(run))
    return moving


def n_unique_configs(run_dirs: Sequence[str | Path]) -> int:
    """How many of the runs have distinct configs (:func:`~mmicl_interp.analyses.stats.dedupe_runs`)."""
    from mmicl_interp.analyses.stats import dedupe_runs

    return len(dedupe_runs([Path(d) for d in run_dirs]))


__all__ = [
    "END",
    "SEED_KEYS",
    "START",
    "V1_NOTE",
    "VERDICTS",
    "Section",
    "SubClaim",
    "bootstrap_difference",
    "budget_text",
    "command_line",
    "effect_text",
    "final_per_run",
    "n_seeds",
    "n_unique_configs",
    "ratio_interval",
    "still_moving",
    "read_claims",
    "render_claims",
    "render_table",
    "replace_between_markers",
    "verdict",
    "write_section",
]
