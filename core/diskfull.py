"""Disk full, as one error: recognising ENOSPC from SQLite, git, Chroma or a file write, and the reserve.

Whatever layer ran out of space (SQLITE_FULL, `No space left on device` from git or the OS, a
Chroma write), `is_disk_full` says so and `disk_full_error` builds the one `DiskFullError` that
names the full disk and says what to do. The reserve is a small preallocated file in the home:
releasing it gives back enough room to record a run's final state on a disk that is full.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from core.errors import DiskFullError

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 2 * 1024 * 1024
_SQLITE_FULL = 13  # the primary result code of "database or disk is full"
_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded")


def exception_chain(exc: BaseException) -> Iterable[BaseException]:
    """The exception and everything it was raised from or during, each once."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def is_disk_full(exc: BaseException) -> bool:
    """Whether the exception (or one it came from) means the disk or the user's quota is full."""
    for e in exception_chain(exc):
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        code = getattr(e, "sqlite_errorcode", None) if isinstance(e, sqlite3.Error) else None
        if code is not None and int(code) & 0xFF == _SQLITE_FULL:
            return True
        if any(text in str(e).lower() for text in _TEXTS):
            return True
    return False


def _fullest(candidates: list[Path]) -> Path:
    """Of the places a run writes to, the one whose filesystem has the least free space."""
    best, best_free = candidates[0], None
    for path in candidates:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            continue
        if best_free is None or free < best_free:
            best, best_free = path, free
    return best


def disk_full_error(
    exc: BaseException, places: list[Path], run_id: str | None = None
) -> DiskFullError:
    """The one error for a full disk: where to free space (the fullest of `places`) and what next."""
    where = _fullest(places) if places else Path.cwd()
    then = f", then `orchestrator resume {run_id}`" if run_id else ", then try again"
    return DiskFullError(
        f"the disk is full ({_detail(exc)}): free space in {where}{then}",
        path=str(where),
        hinted=True,
    )


def _detail(exc: BaseException) -> str:
    """What the layer that ran out of space said: its line naming the full disk (the tail, where
    the OS's words are), else the first line of the innermost error."""
    for e in exception_chain(exc):
        for line in str(e).splitlines():
            if any(t in line.lower() for t in _TEXTS):
                text = line.strip()
                return text if len(text) <= 200 else "..." + text[-197:]
    inner = next((e for e in exception_chain(exc) if not isinstance(e, DiskFullError)), exc)
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(inner).__name__


def ensure_reserve(home: Path, size: int = RESERVE_BYTES) -> bool:
    """Keep a preallocated file of `size` bytes in the home (real blocks, not a sparse file);
    False when it cannot be made (read-only home, no space), which is never an error."""
    path = home / RESERVE_NAME
    try:
        if path.is_file() and path.stat().st_size >= size:
            return True
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        return True
    except OSError:
        try:
            path.unlink(missing_ok=True)  # a half-made reserve would only waste space
        except OSError:
            pass
        return False


def release_reserve(home: Path) -> bool:
    """Delete the reserve so the final state of a run can be written; True when it was there."""
    try:
        (home / RESERVE_NAME).unlink()
        return True
    except OSError:
        return False
