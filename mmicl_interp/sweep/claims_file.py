"""``claims.json`` on disk: one section per claim, written by the claim scripts, and its table.

- :func:`write_section` replaces one section and keeps every other one (read, replace, write
  atomically with :func:`~mmicl_interp.io.write_json`, under a lock on the folder so two
  scripts finishing together do not lose each other's section);
- :func:`rejudge_section` writes a section re-judged from a committed per-run CSV (a claim
  script's ``--from-results``), carrying over what the CSV cannot give; :func:`keep_others`
  keeps the sub-claims of grids a run did not judge;
- :func:`render_table` / :func:`render_claims` make the Markdown claims table that
  ``analyses/make_tables.py`` puts into README.md and analyses/README.md between
  ``START`` and ``END`` (:mod:`~mmicl_interp.sweep.claim_types`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmicl_interp.config import ConfigError
from mmicl_interp.io import read_json, write_json
from mmicl_interp.sweep.claim_types import END, START, VERDICTS, VERSION, Section, SubClaim, _number

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the write itself stays atomic
    fcntl = None


def other_subclaims(path: str | Path, section: Section) -> list[SubClaim]:
    """The sub-claims of ``section.key`` already in ``path`` that ``section`` does not judge: a
    script that reran some of its grids keeps the others' verdicts as they are."""
    judged = {sc.id for sc in section.subclaims}
    old = read_claims(path)["claims"].get(str(section.key), {}).get("subclaims", [])
    return [SubClaim(**sc) for sc in old if sc.get("id") not in judged]


def keep_others(path: str | Path, section: Section) -> Section:
    """``section`` plus :func:`other_subclaims`, in id order. When there are such sub-claims the
    section's wall time adds theirs and its command is the one already in ``path`` (the full
    command), since the section then reports more than this invocation ran."""
    kept = other_subclaims(path, section)
    if kept:
        old = read_claims(path)["claims"].get(str(section.key), {})
        section.subclaims = sorted([*section.subclaims, *kept], key=lambda sc: sc.id)
        section.command = old.get("command") or section.command
        if old.get("wall_time_s") is not None and section.wall_time_s is not None:
            section.wall_time_s += float(old["wall_time_s"])
    return section


def rejudge_section(path: str | Path, section: Section, csv: str, keep: bool = False) -> dict[str, Any]:
    """Write ``section``, re-judged from a committed per-run CSV (a script's ``--from-results``):
    fields the CSV cannot give (command, wall time, unique configs, steps) are carried over from
    the section already in ``path`` (same sub-claim id, else the section's), and each judged
    sub-claim's notes say where it was judged from. ``keep``: the section's other sub-claims in
    ``path`` (:func:`other_subclaims`: grids not in the CSV) stay as they are, in id order."""
    kept = other_subclaims(path, section) if keep else []
    old = read_claims(path)["claims"].get(str(section.key), {})
    by_id = {s.get("id"): s for s in old.get("subclaims", [])}
    section.command = old.get("command") or section.command
    section.wall_time_s = old.get("wall_time_s", section.wall_time_s)
    for sub in section.subclaims:
        prev = by_id.get(sub.id, {})
        sub.command = prev.get("command") or section.command
        for name in ("wall_time_s", "n_unique_configs", "steps", "n_runs"):
            if getattr(sub, name) is None and prev.get(name) is not None:
                setattr(sub, name, prev[name])
        if sub.wall_time_s is None and sub.verdict != "not tested":
            sub.wall_time_s = section.wall_time_s
        sub.notes = "; ".join(p for p in (sub.notes, f"judged from {csv} (--from-results)") if p)
    if kept:
        section.subclaims = sorted([*section.subclaims, *kept], key=lambda sc: sc.id)
    return write_section(path, section)


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


__all__ = [
    "effect_text",
    "keep_others",
    "other_subclaims",
    "read_claims",
    "rejudge_section",
    "render_claims",
    "render_table",
    "replace_between_markers",
    "write_section",
]
