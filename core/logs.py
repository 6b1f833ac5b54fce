"""Structured log files under the home folder, rotated by size, each record tagged with its trace id.

Records are handed to a queue on the caller's thread and formatted and written by a listener
thread (`QueueHandler` + `QueueListener`), so logging never does file I/O on the event loop.
"""

from __future__ import annotations

import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

import structlog

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


def _open_file(path: Path, max_bytes: int, backup_count: int) -> logging.Handler | None:
    """The rotating log file, or None when its folder cannot be written (a read-only home)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
    except OSError:
        return None


def setup_logging(
    folder: Path, *, level: str, max_bytes: int, backup_count: int, json: bool = True
) -> Path | None:
    """Send the `orchestrator` loggers to folder/orchestrator.jsonl (JSON lines) or orchestrator.log
    (key=value); when that file cannot be written, warnings and errors go to stderr and None is
    returned."""
    path = folder / ("orchestrator.jsonl" if json else "orchestrator.log")
    shutdown_logging()
    root = logging.getLogger("orchestrator")
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            handler.close()
    file_handler = _open_file(path, max_bytes, backup_count)
    if file_handler is None:
        file_handler = logging.StreamHandler(sys.stderr)
        file_handler.setLevel(logging.WARNING)  # stderr carries the command's own messages too
        path_or_none: Path | None = None
    else:
        path_or_none = path
    file_handler.addFilter(_TraceFilter())
    file_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
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
    )
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _RawQueueHandler(records)
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    global _listener
    _listener = QueueListener(records, file_handler, respect_handler_level=True)
    _listener.start()
    return path_or_none


def shutdown_logging() -> None:
    """Write out every queued record and stop the listener thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None


class _RawQueueHandler(QueueHandler):
    """Queues the record as it is; the listener thread's filter and formatter do all the work."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record
