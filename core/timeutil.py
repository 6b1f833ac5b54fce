"""ISO-8601 UTC timestamps and short random ids used across the engine."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> str:
    """The current time as ISO-8601 UTC with a Z suffix, e.g. 2026-11-24T12:00:00.123456Z."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(value: str) -> datetime:
    """Parse a timestamp written by utcnow()."""
    return datetime.fromisoformat(value)


def new_id(prefix: str = "") -> str:
    """A short random hex id, optionally prefixed (run ids are 10 hex chars, e.g. r3f9a0c2b1d)."""
    return prefix + secrets.token_hex(5)
