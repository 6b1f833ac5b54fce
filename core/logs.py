"""Structured log files under the home folder, rotated by size (safely across the home's
processes: core.logfile), each record tagged with its trace id.

Records are handed to a queue on the caller's thread and formatted and written by a listener
thread (`QueueHandler` + `QueueListener`), so logging never does file I/O on the event loop.
"""

from __future__ import annotations

import logging
import queue
import sys
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Protocol

from core.logfile import SharedRotatingFileHandler
from core.procenv import secret_redactor

_HANDLER_NAME = "orchestrator-queue"
_listener: QueueListener | None = None


class _TraceFilter(logging.Filter):
    """Copy the record's run_id into trace_id and redact secret values from the message."""

    def __init__(self) -> None:
        super().__init__()
        self._redact = secret_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = getattr(record, "run_id", None)
        record.msg = self._redact(
            record.getMessage()
        )  # format first, so arguments are redacted too
        record.args = None
        return True


class LogSettings(Protocol):
    """The logging section of the configuration (config.schema.LoggingConfig)."""

    @property
    def level(self) -> str: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def backup_count(self) -> int: ...
    @property
    def json(self) -> bool: ...


def setup_logging(
    folder: Path, *, level: str, max_bytes: int, backup_count: int, json: bool = True
) -> Path | None:
    """Send the `orchestrator` loggers to folder/orchestrator.jsonl (JSON lines) or orchestrator.log
    (key=value); when that file cannot be written, warnings and errors go to stderr and None is
    returned."""
    file_handler = _file_handler(folder, max_bytes=max_bytes, backup_count=backup_count, json=json)
    _install(file_handler or _stderr_handler(json), level)
    return None if file_handler is None else Path(file_handler.baseFilename)


def setup_deferred_logging(folder: Path, settings: Callable[[], LogSettings]) -> None:
    """As setup_logging, with the settings read when the first record is written: a command that
    logs nothing never reads them (nor imports what reading the configuration takes)."""
    _install(_DeferredFileHandler(folder, settings), "DEBUG")


def _file_handler(
    folder: Path, *, max_bytes: int, backup_count: int, json: bool
) -> SharedRotatingFileHandler | None:
    """The rotating log file, shared safely with the home's other processes, or None when its
    folder cannot be written (a read-only home)."""
    path = folder / ("orchestrator.jsonl" if json else "orchestrator.log")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = SharedRotatingFileHandler(path, max_bytes=max_bytes, backup_count=backup_count)
    except OSError:
        return None
    handler.addFilter(_TraceFilter())
    handler.setFormatter(_StructlogFormatter(json))
    return handler


def _stderr_handler(json: bool) -> logging.Handler:
    """Warnings and errors to stderr, for a home whose log folder cannot be written."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)  # stderr carries the command's own messages too
    handler.addFilter(_TraceFilter())
    handler.setFormatter(_StructlogFormatter(json))
    return handler


def _install(file_handler: logging.Handler, level: str) -> None:
    """Queue the `orchestrator` loggers' records to a listener thread that writes them."""
    shutdown_logging()
    root = logging.getLogger("orchestrator")
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _RawQueueHandler(records)
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    global _listener
    _listener = QueueListener(records, file_handler, respect_handler_level=True)
    _listener.start()


class _DeferredFileHandler(logging.Handler):
    """Builds the file handler from the settings on the first record (on the listener thread)."""

    def __init__(self, folder: Path, settings: Callable[[], LogSettings]) -> None:
        super().__init__()
        self._folder = folder
        self._settings = settings
        self._inner: logging.Handler | None = None
        self._level = logging.DEBUG

    def emit(self, record: logging.LogRecord) -> None:
        if self._inner is None:
            s = self._settings()
            self._level = logging.getLevelName(s.level.upper())
            self._inner = _file_handler(
                self._folder, max_bytes=s.max_bytes, backup_count=s.backup_count, json=s.json
            ) or _stderr_handler(s.json)
        if record.levelno >= self._level:
            self._inner.handle(record)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        super().close()


def shutdown_logging() -> None:
    """Write out every queued record and stop the listener thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None


class _StructlogFormatter(logging.Formatter):
    """structlog's ProcessorFormatter, built on the first record: importing structlog (and the rich
    it pulls in) costs more than a listing command's whole run, and most such runs log nothing."""

    def __init__(self, json: bool) -> None:
        super().__init__()
        self._json = json
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._inner is None:
            self._inner = _processor_formatter(self._json)
        return self._inner.format(record)


def _processor_formatter(json: bool) -> logging.Formatter:
    """JSON lines or key=value records with level, logger name, UTC time and the record's extras."""
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer()
        if json
        else structlog.processors.KeyValueRenderer(),
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
        ],
    )


class _RawQueueHandler(QueueHandler):
    """Queues the record as it is; the listener thread's filter and formatter do all the work."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record
