"""The one mapping of errors from outside the orchestrator's tree (rag, verify, git, plugins, the
OS) onto it; core calls it wherever such an error can reach a run's end (see core/errors.py)."""

from __future__ import annotations

import sqlite3

from core.diskfull import exception_chain, is_disk_full
from core.errors import (
    DiskFullError,
    ForeignError,
    GitError,
    InputError,
    OrchestratorError,
    StateError,
)


def as_orchestrator_error(exc: BaseException) -> OrchestratorError:
    """The orchestrator error that stands for `exc`; an OrchestratorError maps to itself."""
    full = disk_full(exc)
    if full is not None:
        return full
    if isinstance(exc, OrchestratorError):
        return exc
    try:
        from rag.errors import NotARepositoryError, RagError
    except ImportError:  # pragma: no cover - rag ships with core
        pass
    else:
        if isinstance(exc, NotARepositoryError):
            return InputError(str(exc))
        if isinstance(exc, RagError):
            return ForeignError(f"index: {exc}")
    if type(exc).__name__ == "GitCommandError":  # gitpython, imported lazily elsewhere
        return GitError(f"git: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StateError(f"database: {exc}")
    return ForeignError(f"{type(exc).__name__}: {exc}".rstrip(": "))


def disk_full(exc: BaseException) -> DiskFullError | None:
    """A DiskFullError when `exc` (or what caused it) says no space is left on a device."""
    if not is_disk_full(exc):
        return None
    if isinstance(exc, DiskFullError):
        return exc
    where = next(
        (
            e.filename
            for e in exception_chain(exc)
            if isinstance(e, OSError) and isinstance(e.filename, str)
        ),
        None,
    )
    return DiskFullError(f"no space left on the device: {exc}", path=where)
