"""Progress for long work: a tqdm bar on a terminal, periodic plain lines in a log.

A bar redrawn with carriage returns fills a non-terminal log (``make demo > log``) with
tens of kilobytes; off a TTY :func:`progress` prints one plain line at most every
``every_s`` seconds (and at the end) instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


class _PlainProgress:
    """tqdm's small API (update, set_postfix_str, clear, refresh, close, context manager) as plain lines."""

    def __init__(self, total: int | None, desc: str, initial: int, unit: str, every_s: float, file: TextIO):
        self.total, self.desc, self.n, self.unit = total, desc, initial, unit
        self.every_s, self.file = every_s, file
        self._last = time.monotonic()
        self._postfix = ""
        self._closed = False

    def _line(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        post = f"  {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{post}", file=self.file, flush=True)
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every_s:
            self._line()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._postfix = text

    def clear(self) -> None:
        """Nothing to clear: plain lines never share a line with other output."""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._line()

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def clear(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(
    total: int | None,
    desc: str,
    enabled: bool = True,
    initial: int = 0,
    unit: str = "it",
    every_s: float = 30.0,
    file: TextIO | None = None,
) -> Any:
    """A progress object with ``update(n)``, ``set_postfix_str``, ``clear``, ``refresh`` and ``close``.

    tqdm when ``enabled`` and ``file`` (default stderr) is a terminal; plain lines every
    ``every_s`` seconds when enabled off a terminal; nothing when not enabled.
    """
    file = file or sys.stderr
    if not enabled:
        return _NoProgress()
    if file.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, initial=initial, unit=unit, file=file)
    return _PlainProgress(total, desc, initial, unit, every_s, file)


def progress(
    iterable: Iterable[Any], total: int | None = None, desc: str = "", enabled: bool = True, **kwargs: Any
) -> Iterator[Any]:
    """Iterate ``iterable`` while reporting through :func:`progress_bar`."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = progress_bar(total, desc, enabled, **kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
