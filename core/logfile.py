"""A size-rotated log file that several processes write at once (workers, the app, many runs).

The stdlib's RotatingFileHandler checks the size of the file it opened and renames files on its
own: with a second process on the same file, one keeps writing into a file the other rotated
away, rotates the other's fresh file, or fails on a rename the other already made. Here the size
check, the renames and the write happen under an flock on a sidecar lock file
(`orchestrator.jsonl.lock`), and a process whose file was rotated away reopens the current one
first, so every line lands whole, once, in the current file.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
from logging.handlers import RotatingFileHandler
from pathlib import Path


class SharedRotatingFileHandler(RotatingFileHandler):
    """RotatingFileHandler whose rotation and writes are safe across processes (see module)."""

    def __init__(self, path: Path, *, max_bytes: int, backup_count: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")
        self._lock_fd = os.open(self.baseFilename + ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the current file, rotating first when it would grow past the limit."""
        try:
            line = self.format(record) + self.terminator
            size = len(line.encode("utf-8", errors="replace"))
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                stream = self._current_stream()
                written = os.fstat(stream.fileno()).st_size
                if self.maxBytes > 0 and written > 0 and written + size > self.maxBytes:
                    self.doRollover()
                    stream = self._current_stream()
                stream.write(line)
                stream.flush()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001  (logging reports its own failures, as every handler does)
            self.handleError(record)

    def _current_stream(self) -> io.TextIOWrapper:
        """The open file, reopened when another process rotated it away (its inode changed)."""
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            on_disk = None
        if self.stream is not None:
            mine = os.fstat(self.stream.fileno())
            if on_disk is not None and (mine.st_dev, mine.st_ino) == (
                on_disk.st_dev,
                on_disk.st_ino,
            ):
                return self.stream
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        self.stream = self._open()
        return self.stream

    def close(self) -> None:
        """Close the file and the lock file."""
        self.acquire()
        try:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
        finally:
            self.release()
        super().close()
