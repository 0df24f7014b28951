"""Safe file I/O for run directories: atomic writes and named corruption errors.

Every file of a run is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target, so a killed process never leaves half a file.
Weights are safetensors; nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class CorruptFileError(RuntimeError):
    """A run file is truncated or unreadable; ``path`` names it."""

    def __init__(self, path: str | Path, cause: object = ""):
        super().__init__(f"corrupt or truncated file: {path} ({cause})")
        self.path = Path(path)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically; returns the path."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return Path(path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read JSON; a truncated or invalid file raises CorruptFileError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorruptFileError(path, err) from None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a command; the message says what was kept and how to resume.

    The CLI prints it as one line and exits with status 130 (128 + SIGINT).
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def check_writable(path: str | Path, field: str = "--out") -> Path:
    """Fail before any work when ``path`` cannot be written (returns it as a Path).

    Raises ``ConfigError(field, ...)`` when a parent is a file, the folder cannot be
    created or written, or ``path`` itself is a directory. Creates missing parent folders.
    """
    from mmicl_interp.config import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(field, f"{path} is a directory; give a file path")
    parent = _ensure_folder(path.parent, path, field)
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(field, f"cannot write {path}: permission denied")
    return path


def _ensure_folder(folder: Path, path: Path, field: str) -> Path:
    """Create ``folder`` (for writing ``path``) or raise ConfigError naming the blocking file."""
    from mmicl_interp.config import ConfigError

    for ancestor in [folder, *folder.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(field, f"cannot write {path}: {ancestor} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(field, f"cannot create folder {folder}: {err.strerror}") from None
    return folder


def check_writable_dir(path: str | Path, field: str = "--out") -> Path:
    """Like :func:`check_writable` for an output folder (created when missing)."""
    from mmicl_interp.config import ConfigError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(field, f"{path} is a file; give a folder")
    _ensure_folder(path, path, field)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot write into {path}: permission denied")
    return path


class FolderBusy(RuntimeError):
    """:func:`folder_lock` with ``wait=False`` found the folder locked by another process."""


@contextmanager
def folder_lock(folder: str | Path, wait: bool = True) -> Iterator[None]:
    """An exclusive ``flock`` on a folder (POSIX; elsewhere no lock) for the ``with`` block.

    ``wait=False`` raises :class:`FolderBusy` at once if another process holds it. The lock
    is the kernel's: it goes with the process, so a killed holder never leaves it stale.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderBusy(str(folder)) from None
        except OSError:  # pragma: no cover - a file system without flock
            pass
        yield
    finally:
        os.close(fd)
