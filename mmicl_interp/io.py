"""Safe file I/O for run directories: atomic writes and named corruption errors.

Every file of a run is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target, so a killed process never leaves half a file.
Weights are safetensors; nothing here unpickles.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import time
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


def check_writable(path: str | Path, field: str = "--out", need_bytes: float = 0) -> Path:
    """Fail before any work when ``path`` cannot be written (returns it as a Path).

    Raises ``ConfigError(field, ...)`` when a parent is a file, the folder cannot be
    created or written (tested by creating and removing a temporary file there, so a
    read-only file system or a root-owned folder is caught for root too), ``path`` itself
    is a directory, or the folder's disk has less than ``need_bytes`` free. Creates missing
    parent folders.
    """
    from mmicl_interp.config import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(field, f"{path} is a directory; give a file path")
    made = _missing_folders(path.parent)
    parent = _ensure_folder(path.parent, path, field)
    try:
        if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise ConfigError(field, f"cannot write {path}: permission denied")
        _probe_write(parent, path, field)
        check_free_space(parent, need_bytes, field, f"writing {path.name}")
    except BaseException:
        _remove_empty(made)  # a refused command leaves no folder behind
        raise
    return path


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for f in [folder, *folder.parents]:
        if f.exists():
            break
        missing.append(f)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            break


def _probe_write(folder: Path, path: Path, field: str) -> None:
    """Create and remove a temporary file in ``folder``: what the atomic write will do."""
    from mmicl_interp.config import ConfigError

    try:
        fd, tmp = tempfile.mkstemp(prefix=".mmicl-probe.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise ConfigError(field, f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:  # pragma: no cover
        pass


def free_bytes(folder: str | Path) -> int | None:
    """Free bytes on the disk holding ``folder`` (its nearest existing ancestor); None if unknown."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _mb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_free_space(folder: str | Path, need_bytes: float, field: str, what: str = "") -> None:
    """Raise ``ConfigError(field, ...)`` when the disk under ``folder`` has less than
    ``need_bytes`` free (an estimate made before the work starts)."""
    from mmicl_interp.config import ConfigError

    if need_bytes <= 0:
        return
    free = free_bytes(folder)
    if free is not None and need_bytes > free:
        doing = f" {what}" if what else ""
        raise ConfigError(
            field,
            f"not enough disk space{doing}: needs about {_mb(need_bytes)}, {_mb(free)} free under "
            f"{folder}; free some space or choose another place",
        )


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO)
"""``OSError`` numbers of a failed write that a command reports in one line (disk full, quota,
permission, read-only file system, file too large, I/O error)."""


class WriteFailed(RuntimeError):
    """Writing an output failed during the work (disk full, permission, read-only file system).

    ``message`` is one line: the file, why, and what was kept. The CLI prints it and exits with
    status 2.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def is_write_error(err: BaseException) -> bool:
    """Whether ``err`` is an OSError of a failed write (see :data:`WRITE_ERRNOS`)."""
    return isinstance(err, OSError) and err.errno in WRITE_ERRNOS


def describe_write_error(err: OSError) -> str:
    """``cannot write PATH: No space left on device`` (the file when known)."""
    where = err.filename or "a file"
    why = err.strerror or str(err)
    hint = " (disk full)" if err.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"cannot write {where}: {why}{hint}"


def write_remedy(err: BaseException) -> str:
    """What frees a failed write: ``free some disk space`` or ``make it writable``."""
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "free some disk space" if full else "make it writable"


class MmiclWarning(UserWarning):
    """A warning of this package (stale rows dropped, duplicate metrics rows, ...); the CLI
    prints each as one line ``mmicl: warning: ...``."""


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
    made = _missing_folders(path)
    _ensure_folder(path, path, field)
    try:
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(field, f"cannot write into {path}: permission denied")
        _probe_write(path, path, field)
    except BaseException:
        _remove_empty(made)  # a refused command leaves no folder behind
        raise
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


LOCK_FILE = ".mmicl-train.lock"
"""The lock file ``mmicl train`` holds in a run folder while it writes there (see :func:`run_lock`)."""


class RunBusy(RuntimeError):
    """:func:`run_lock` found another live process writing the folder; ``holder`` is its record
    (``pid``, ``host``, ``since``, ``command``; empty when unreadable)."""

    def __init__(self, path: Path, holder: dict[str, Any]):
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path = path
        self.holder = holder

    def describe(self) -> str:
        """``pid 1234 on host h since 2026-01-01T12:00:00`` (what is known of the holder)."""
        h = self.holder
        if not h:
            return "another process"
        text = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}"
        return text + (f" since {h['since']}" if h.get("since") else "")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # pragma: no cover - alive, another user's
        return True
    except OSError:  # pragma: no cover
        return False
    return True


@contextmanager
def run_lock(folder: str | Path, command: str = "train", name: str = LOCK_FILE) -> Iterator[dict[str, Any]]:
    """Hold the writer lock of a run folder for the ``with`` block; yields the record of a stale
    holder that was taken over (``{}`` when there was none).

    The lock is the kernel's ``flock`` on ``folder/name`` (a file, not the folder: ``analyze``
    locks the folder itself to update ``analysis.parquet`` while a run trains). The file holds
    the holder's pid, host, start time and command, so a refused second writer can name it
    (:class:`RunBusy`). A process killed while holding it leaves the file but not the lock: the
    next writer takes it over (and is told whose it was). Where the file system has no
    ``flock``, a record naming a live process of this host counts as held. The file is removed
    when the block ends.
    """
    folder = Path(folder)
    path = folder / name
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield {}
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunBusy(path, holder) from None
        except OSError:  # a file system without flock: trust a live holder's record
            holder = _read_holder(fd)
            mine = holder.get("host") == socket.gethostname()
            if holder and holder.get("pid") != os.getpid() and (not mine or _pid_alive(holder.get("pid"))):
                os.close(fd)
                raise RunBusy(path, holder) from None
        try:  # the previous holder may have removed the file between our open and flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_holder(fd)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
    except OSError:  # a full disk: the lock holds without its record
        pass
    try:
        yield stale
    finally:
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
        except OSError:
            pass
        os.close(fd)
