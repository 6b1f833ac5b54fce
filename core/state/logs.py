"""The state store's run output: log lines, artifacts, and the LLM token ledger and cache."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import NotFoundError, StateError
from core.records import Artifact, LogRecord, Usage
from core.state import schema
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import new_id, utcnow

LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# A log line for append_logs: (run_id, phase_id, level, message), the same plus its timestamp,
# or plus the lease fence it was logged under (core.state.fencing; stale ones are dropped).
LogLine = (
    tuple[str, str | None, str, str]
    | tuple[str, str | None, str, str, str]
    | tuple[str, str | None, str, str, str, Any]
)


def _file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 hex of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def _like_pattern(contains: str | None) -> str | None:
    """A LIKE pattern matching `contains` literally (escape character: backslash)."""
    if not contains:
        return None
    escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class LogsMixin(StateDatabase):
    """Reads and writes of the events, artifacts, llm_usage and llm_cache tables."""

    # -- logs ------------------------------------------------------------------------------------

    async def append_logs(self, records: Sequence[LogLine]) -> list[LogRecord]:
        """Store log lines in one transaction; a 5th tuple item is the line's own timestamp."""
        if not records:
            return []
        async with self._write() as db:
            stored = await self._insert_lines(db, records)  # on SQLite: with the COMMIT
        return stored()

    async def get_logs(
        self,
        run_id: str,
        after_seq: int = 0,
        limit: int = 1000,
        level: str | None = None,
        contains: str | None = None,
    ) -> list[LogRecord]:
        """A run's log lines after `after_seq`; `level` keeps that level and above, `contains` is
        a case-insensitive substring."""
        levels: list[str] | None = None
        if level is not None:
            floor = LOG_LEVELS.get(level.lower())
            levels = (
                [name for name, n in LOG_LEVELS.items() if n >= floor]
                if floor is not None
                else [level]
            )
        pattern = None
        if contains:
            escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{escaped}%"
        rows = await self._fetch(
            "SELECT * FROM events WHERE run_id = ? AND seq > ?"
            " AND (? IS NULL OR lower(level) IN (SELECT value FROM json_each(?)))"
            " AND (? IS NULL OR message LIKE ? ESCAPE '\\') ORDER BY seq LIMIT ?",
            (run_id, after_seq, levels and 1, dumps(levels or []), pattern, pattern, limit),
        )
        return [schema.log_from_row(r) for r in rows]

    async def get_logs_before(
        self,
        run_id: str,
        before_seq: int | None = None,
        limit: int = 1000,
        contains: str | None = None,
    ) -> list[LogRecord]:
        """The last `limit` log lines of a run before `before_seq` (the newest when None), oldest
        first; `contains` is a case-insensitive substring. Pages a live log backwards."""
        pattern = _like_pattern(contains)
        rows = await self._fetch(
            "SELECT * FROM events WHERE run_id = ? AND (? IS NULL OR seq < ?)"
            " AND (? IS NULL OR message LIKE ? ESCAPE '\\') ORDER BY seq DESC LIMIT ?",
            (run_id, before_seq, before_seq, pattern, pattern, limit),
        )
        return [schema.log_from_row(r) for r in reversed(rows)]

    async def count_logs(self, run_id: str) -> int:
        """How many log lines a run has."""
        rows = await self._fetch("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,))
        return int(rows[0][0])

    # -- artifacts -------------------------------------------------------------------------------

    async def add_artifact(
        self,
        run_id: str,
        phase_id: str | None,
        name: str,
        path: Path | str,
        type: str,
        *,
        size: int | None = None,
        digest: str | None = None,
    ) -> Artifact:
        """Register a file the run produced by its location (a local path, made absolute, or an
        object's s3:// URL), with its size and sha256 (read from a local file unless given)."""
        location = artifact_location(path)
        if size is not None and digest is not None:
            measured = size, digest
        elif "://" in location:
            raise StateError(f"artifact {path}: give its size and hash (it is not read back)")
        else:
            try:
                measured = await asyncio.to_thread(_file_digest, Path(location))
            except OSError as exc:
                raise StateError(f"cannot read artifact {location}: {exc}") from exc
        _, steps = artifact_steps(run_id, phase_id, name, location, type, *measured)
        insert_sql, insert_params = steps[-1]
        rows = await self._write_batch([*steps[:-1], (insert_sql + " RETURNING *", insert_params)])
        if not rows:
            raise NotFoundError(
                f"no run with id {run_id!r} in {self.where}; `orchestrator runs` lists run ids"
            )
        return schema.artifact_from_row(rows[0])

    async def add_artifact_rows(self, steps: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Store artifact rows artifact_steps made, in one write of their own."""
        await self._write_batch(list(steps))

    async def get_artifacts(self, run_id: str) -> list[Artifact]:
        """A run's artifacts in the order they were registered."""
        rows = await self._fetch(
            "SELECT * FROM artifacts WHERE run_id = ? ORDER BY created_at, rowid", (run_id,)
        )
        return [schema.artifact_from_row(r) for r in rows]

    # -- LLM usage and cache ---------------------------------------------------------------------

    async def record_usage(
        self,
        run_id: str | None,
        phase_id: str | None,
        execution_id: str | None,
        role: str,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        duration_ms: float,
        cached: bool,
        *,
        attempt: int | None = None,
        cached_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Add one model call to the token ledger."""
        await self._write_one(
            (
                "INSERT INTO llm_usage (id, run_id, phase_id, execution_id, role, provider, model,"
                " prompt_tokens, completion_tokens, duration_ms, cached, created_at, attempt,"
                " cached_tokens, cost_usd) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            ),
            (
                new_id("u"),
                run_id,
                phase_id,
                execution_id,
                role,
                provider,
                model,
                int(prompt_tokens),
                int(completion_tokens),
                float(duration_ms),
                int(cached),
                utcnow(),
                attempt,
                int(cached_tokens),
                float(cost_usd),
            ),
        )

    async def usage_by_role(self, run_id: str) -> dict[str, dict[str, int]]:
        """Token totals and call counts per role for a run."""
        rows = await self._fetch(
            "SELECT role, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c, COUNT(*) AS n"
            " FROM llm_usage WHERE run_id = ? GROUP BY role ORDER BY role",
            (run_id,),
        )
        return {
            r["role"]: {
                "prompt_tokens": int(r["p"]),
                "completion_tokens": int(r["c"]),
                "calls": int(r["n"]),
            }
            for r in rows
        }

    async def get_usage(self, run_id: str) -> list[Usage]:
        """Token totals per role, provider and model for a run."""
        rows = await self._fetch(
            "SELECT role, provider, model, SUM(prompt_tokens) AS p, SUM(completion_tokens) AS c,"
            " COUNT(*) AS n, SUM(cost_usd) AS cost FROM llm_usage WHERE run_id = ?"
            " GROUP BY role, provider, model"
            " ORDER BY role, provider, model",
            (run_id,),
        )
        return [
            Usage(
                r["role"],
                r["provider"],
                r["model"],
                int(r["p"]),
                int(r["c"]),
                int(r["n"]),
                float(r["cost"] or 0.0),
            )
            for r in rows
        ]

    async def cache_get(self, key: str) -> str | None:
        """A cached model response by key, or None."""
        rows = await self._fetch("SELECT response FROM llm_cache WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    async def cache_put(self, key: str, value: str) -> None:
        """Store (or replace) a model response under key."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO llm_cache (key, response, created_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                " DO UPDATE SET response = excluded.response, created_at = excluded.created_at",
                (key, value, utcnow()),
            )


def artifact_location(path: Path | str) -> str:
    """What an artifact row records: an object's URL as given, a local path made absolute."""
    if isinstance(path, str) and "://" in path:
        return path
    return str(Path(path).absolute())


def artifact_steps(
    run_id: str,
    phase_id: str | None,
    name: str,
    path: Path | str,
    type: str,
    size: int,
    digest: str,
) -> tuple[Artifact, list[tuple[str, Sequence[Any]]]]:
    """The statements that register an artifact by its location (a transition can carry them
    in its own write), and the row they store."""
    location = artifact_location(path)
    artifact = Artifact(new_id("a"), run_id, phase_id, name, location, type, size, digest, utcnow())
    steps: list[tuple[str, Sequence[Any]]] = [
        # The file at this location was just rewritten, so an older row for it would carry a
        # stale hash.
        ("DELETE FROM artifacts WHERE run_id = ? AND path = ?", (run_id, location)),
        # Inserted only if the run exists (a foreign key's refusal would end a PostgreSQL
        # transaction and word it less well).
        (
            (
                "INSERT INTO artifacts (id, run_id, phase_id, name, path, type, size, hash,"
                " created_at) SELECT ?,?,?,?,?,?,?,?,? FROM runs WHERE id = ?"
            ),
            (
                artifact.id,
                run_id,
                phase_id,
                name,
                location,
                type,
                size,
                digest,
                artifact.created_at,
                run_id,
            ),
        ),
    ]
    return artifact, steps
