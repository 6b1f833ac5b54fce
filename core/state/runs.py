"""The state store's runs: their rows, run summaries, heartbeat leases and cancel requests."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.errors import InputError, NotFoundError
from core.git.remote_url import is_url
from core.liveness import LEASE_FREE, LOST_RUN, SEEN_RUN_COLUMNS
from core.records import FINISHED_RUN_STATUSES, Run, RunStatus, RunSummary
from core.state import schema
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.state.usage import BILLED_TOKENS
from core.timeutil import new_id, parse_ts, utcnow


class RunsMixin(StateDatabase):
    """Reads and writes of the runs table."""

    # -- runs ------------------------------------------------------------------------------------

    async def create_run(
        self,
        task: str,
        repo: str | Path,
        config: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Insert a pending run; the repo path is stored absolute (a git URL as given, already clean)."""
        run_id, now = new_id("r"), utcnow()
        repo_abs = (
            str(repo) if is_url(str(repo)) else os.path.abspath(os.path.expanduser(str(repo)))
        )
        async with self._write() as db:
            await db.execute(
                "INSERT INTO runs (id, task, repo, status, created_at, updated_at, config, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    task,
                    repo_abs,
                    RunStatus.PENDING.value,
                    now,
                    now,
                    dumps(config),
                    dumps(metadata or {}),
                ),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def update_run_status(
        self, run_id: str, status: RunStatus | str, error: str | None = None
    ) -> Run:
        """Move a run to `status`, stamping started_at once and completed_at on finishing."""
        status, now = RunStatus(status), utcnow()
        finished = status in FINISHED_RUN_STATUSES
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET status = ?, error = ?, updated_at = ?,"
                " started_at = CASE WHEN ? THEN COALESCE(started_at, ?) ELSE started_at END,"
                " completed_at = CASE WHEN ? THEN ? ELSE NULL END WHERE id = ?",
                (status.value, error, now, status != RunStatus.PENDING, now, finished, now, run_id),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def set_run_git(
        self, run_id: str, base_commit: str | None, branch: str | None, worktree: str | Path | None
    ) -> Run:
        """Record the run's base commit, branch and worktree path."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET base_commit = ?, branch = ?, worktree = ?, updated_at = ? WHERE id = ?",
                (
                    base_commit,
                    branch,
                    None if worktree is None else str(worktree),
                    utcnow(),
                    run_id,
                ),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def set_run_metadata(self, run_id: str, **kv: Any) -> Run:
        """Merge keys into the run's metadata JSON."""
        async with self._write() as db:
            row = await self._require(db, "runs", "run", run_id)
            merged = {**schema.run_from_row(row).metadata, **kv}
            await db.execute(
                "UPDATE runs SET metadata = ?, updated_at = ? WHERE id = ?",
                (dumps(merged), utcnow(), run_id),
            )
            return schema.run_from_row(await self._require(db, "runs", "run", run_id))

    async def get_run(self, run_id: str) -> Run:
        """One run by id, as a person should see it (core.liveness)."""
        rows = await self._fetch(
            f"SELECT *, {SEEN_RUN_COLUMNS} FROM runs WHERE id = :id",
            {**await self._liveness(), "id": run_id},
        )
        if not rows:
            raise NotFoundError(
                f"no run with id {run_id!r} in {self.where}; `orchestrator runs` lists run ids"
            )
        return schema.run_from_row(rows[0])

    async def list_runs(
        self, status: RunStatus | str | None = None, limit: int | None = 100, offset: int = 0
    ) -> list[RunSummary]:
        """Runs newest first with phase progress, open findings by severity, tokens and cost, in
        one query; `limit=None` lists every run."""
        open_ = "f.status IN ('new', 'open')"
        page = "" if limit is None else "LIMIT :limit OFFSET :offset"
        rows = await self._fetch(
            f"""SELECT r.*,
              (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id) AS n_phases,
              (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id AND p.status = 'completed')
                AS n_done,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'major') AS n_major,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'medium') AS n_medium,
              (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {open_}
                AND f.severity = 'minor') AS n_minor,
              {_USAGE_COLUMNS}
            FROM (SELECT * FROM {_SEEN_RUNS} WHERE (:status IS NULL OR seen_status = :status)
                  ORDER BY created_at DESC, rid DESC {page}) r
            ORDER BY r.created_at DESC, r.rid DESC""",
            {
                "status": None if status is None else RunStatus(status).value,
                "limit": limit,
                "offset": offset,
                **await self._liveness(),
            },
        )
        summaries = [_summary(r) for r in rows]
        return summaries[offset:] if limit is None else summaries

    async def list_runs_page(
        self,
        *,
        query: str | None = None,
        status: RunStatus | str | None = None,
        sort: str = "started",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
        now: str | None = None,
    ) -> list[RunSummary]:
        """One page of runs matching `query` (id, task, repository or status), sorted by `sort`.

        Plain-column sorts page inside the runs table first, so only the page's rows get their
        phase, finding and token counts; sorts by a count compute it for every matching row.
        """
        if sort not in RUN_SORT_KEYS:
            raise InputError(f"unknown sort {sort!r}; use one of {', '.join(RUN_SORT_KEYS)}")
        direction = "DESC" if descending else "ASC"
        key = RUN_SORT_KEYS[sort]
        order = f"{key} {direction}, created_at {direction}, rid {direction}"
        params: dict[str, Any] = {
            **_run_filter_params(query, status),
            "limit": limit,
            "offset": offset,
            **await self._liveness(),
        }
        if now is not None:
            params["now"] = now
        if sort in _COUNT_SORTS:
            sql = f"""SELECT * FROM (SELECT {_SUMMARY_COLUMNS} FROM
                  (SELECT * FROM {_SEEN_RUNS} WHERE {_RUN_FILTER}) r)
                ORDER BY {order} LIMIT :limit OFFSET :offset"""
        else:
            sql = f"""SELECT {_SUMMARY_COLUMNS} FROM
                  (SELECT * FROM {_SEEN_RUNS} WHERE {_RUN_FILTER}
                   ORDER BY {order} LIMIT :limit OFFSET :offset) r
                ORDER BY {order}"""
        return [_summary(r) for r in await self._fetch(sql, params)]

    async def count_runs_matching(
        self, *, query: str | None = None, status: RunStatus | str | None = None
    ) -> int:
        """How many runs `list_runs_page` pages through for this filter."""
        rows = await self._fetch(
            f"SELECT COUNT(*) FROM {_SEEN_RUNS} WHERE {_RUN_FILTER}",
            {**_run_filter_params(query, status), **await self._liveness()},
        )
        return int(rows[0][0])

    async def count_runs(self, status: RunStatus | str | None = None) -> int:
        """How many runs there are, optionally with one status."""
        value = None if status is None else RunStatus(status).value
        rows = await self._fetch(
            f"SELECT COUNT(*) FROM {_SEEN_RUNS} WHERE (:status IS NULL OR seen_status = :status)",
            {"status": value, **await self._liveness()},
        )
        return int(rows[0][0])

    async def delete_run(self, run_id: str) -> None:
        """Delete a run and everything recorded for it (used by `clean`)."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            for table in ("events", "llm_usage"):
                await db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            await db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- leases and cancellation -----------------------------------------------------------------

    async def acquire_lease(self, run_id: str, owner: str, ttl_seconds: float) -> int | None:
        """Take the run's heartbeat lease if it is free, ours already, or expired (and its owner
        does not live on this host, core.liveness); returns its
        fencing token (one more when the owner changes, core.state.fencing), None when taken."""
        now = utcnow()
        expires = _later(now, ttl_seconds)
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            rows = list(
                await db.execute_fetchall(
                    "UPDATE runs SET lease_token = CASE WHEN lease_owner = :owner THEN lease_token"
                    " ELSE lease_token + 1 END, lease_owner = :owner, lease_expires_at = :expires"
                    f" WHERE id = :id AND (lease_owner = :owner OR {LEASE_FREE})"
                    " RETURNING lease_token",
                    {"owner": owner, "expires": expires, "id": run_id, "now": now},
                )
            )
            return int(rows[0][0]) if rows else None

    async def renew_lease(self, run_id: str, owner: str, ttl_seconds: float) -> bool:
        """Extend the lease if `owner` still holds it; False means another process took it."""
        expires = _later(utcnow(), ttl_seconds)
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                (expires, run_id, owner),
            )
            return cur.rowcount == 1

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        async with self._write() as db:
            await db.execute(
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND lease_owner = ?",
                (run_id, owner),
            )

    async def get_lost_runs(self) -> list[Run]:
        """Active runs whose driving process is gone (core.liveness), not yet recorded so."""
        rows = await self._fetch(
            f"SELECT *, {SEEN_RUN_COLUMNS} FROM runs WHERE {LOST_RUN} ORDER BY created_at, rowid",
            await self._liveness(),
        )
        return [schema.run_from_row(r) for r in rows]

    async def get_recoverable_runs(self) -> list[Run]:
        """Runs marked interrupted, or active runs whose lease is missing or expired (and whose
        owner does not live on this host)."""
        rows = await self._fetch(
            "SELECT * FROM runs WHERE status = 'interrupted' OR"
            f" (status IN ('pending', 'planning', 'executing', 'waiting') AND {LEASE_FREE})"
            " ORDER BY created_at, rowid",
            await self._liveness(),
        )
        return [schema.run_from_row(r) for r in rows]

    async def recover_run(self, run_id: str) -> Run:
        """Make a run whose process died resumable: drop its lease and mark it interrupted.

        Attempts it left running stay as they are: on resume the phase runner adopts a commit the
        dead process made, or closes the attempt as failed and starts the next one.
        """
        async with self._write() as db:
            row = await self._update_one(
                db,
                "run",
                run_id,
                "UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = ?,"
                " status = CASE WHEN status IN ('pending', 'planning', 'executing', 'waiting',"
                " 'failed') THEN 'interrupted' ELSE status END,"
                " error = CASE WHEN status = 'failed' THEN NULL ELSE error END WHERE id = ?",
                (utcnow(), run_id),
            )
            return schema.run_from_row(row)

    async def request_cancel(self, run_id: str) -> None:
        """Flag the run so its executing process stops at the next checkpoint."""
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                (utcnow(), run_id),
            )

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether someone asked to cancel the run."""
        return bool((await self._get("runs", "run", run_id))["cancel_requested"])


def _after(expr: str, marker: str) -> str:
    """SQL: the text after the first `marker` in `expr` (instr is SQLite's; PG_FUNCTIONS)."""
    return f"substr({expr}, instr({expr}, '{marker}') + {len(marker)})"


_FINISHED = ", ".join(sorted(f"'{s.value}'" for s in FINISHED_RUN_STATUSES))
# What the runs table's worker cell shows (tui.format.holder_cell): the lease holder's worker
# id, "queued" while a submitted run waits for one, the last worker's id (the metadata JSON holds
# "last_worker": "host:pid:worker:ID", and an id holds no quote), else ''.
_LAST_WORKER = _after(_after("metadata", '"last_worker"'), ":worker:")
_WORKER_CELL = (
    f"CASE WHEN lease_owner LIKE '%:worker:%' THEN {_after('lease_owner', ':worker:')}"
    f" WHEN queued = 1 AND seen_status NOT IN ({_FINISHED}) THEN 'queued'"
    f" WHEN instr(metadata, '\"last_worker\"') > 0"
    f" THEN substr({_LAST_WORKER}, 1, instr({_LAST_WORKER}, '\"') - 1) ELSE '' END"
)

# Sort keys of list_runs_page and the SQL they order by; phases, findings and cost are computed
# per run. The worker sort puts runs no worker touched last in both directions (its first term
# takes no direction).
RUN_SORT_KEYS: dict[str, str] = {
    "started": "COALESCE(started_at, created_at)",
    "task": "task COLLATE NOCASE",
    "repo": "repo",
    "status": "seen_status",
    "duration": "julianday(COALESCE(seen_completed_at, :now))"
    " - julianday(COALESCE(started_at, created_at))",
    "phases": "CAST(n_done AS REAL) / MAX(n_phases, 1)",
    "findings": "n_major * 1000000 + n_medium * 1000 + n_minor",
    "cost": "cost_usd * 1000000000 + n_tokens",
    "worker": f"CASE WHEN {_WORKER_CELL} = '' THEN 1 ELSE 0 END, {_WORKER_CELL}",
}
_COUNT_SORTS = frozenset({"phases", "findings", "cost"})

# Matches a run by id, task, repository or status, case-insensitively (":q" is a LIKE pattern).
_RUN_FILTER = (
    "(:status IS NULL OR seen_status = :status) AND (:q IS NULL OR id LIKE :q ESCAPE '\\'"
    " OR task LIKE :q ESCAPE '\\' OR repo LIKE :q ESCAPE '\\'"
    " OR seen_status LIKE :q ESCAPE '\\')"
)
# The runs table as reads see it: every column, its rowid, and core.liveness's seen_* columns.
_SEEN_RUNS = f"(SELECT rowid AS rid, *, {SEEN_RUN_COLUMNS} FROM runs)"

_OPEN = "f.status IN ('new', 'open')"
# A run's tokens and cost from the LLM ledger, as core.state.usage counts them.
_USAGE_COLUMNS = f"""(SELECT COALESCE(SUM({BILLED_TOKENS}), 0) FROM llm_usage u
      WHERE u.run_id = r.id) AS n_tokens,
    (SELECT COALESCE(SUM(u.cost_usd), 0) FROM llm_usage u WHERE u.run_id = r.id) AS cost_usd"""
_SUMMARY_COLUMNS = f"""r.*,
    (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id) AS n_phases,
    (SELECT COUNT(*) FROM phases p WHERE p.run_id = r.id AND p.status = 'completed') AS n_done,
    (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {_OPEN}
      AND f.severity = 'major') AS n_major,
    (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {_OPEN}
      AND f.severity = 'medium') AS n_medium,
    (SELECT COUNT(*) FROM findings f WHERE f.run_id = r.id AND {_OPEN}
      AND f.severity = 'minor') AS n_minor,
    {_USAGE_COLUMNS}"""


def _run_filter_params(query: str | None, status: RunStatus | str | None) -> dict[str, Any]:
    """Parameters of _RUN_FILTER: the query as an escaped substring pattern, the status value."""
    text = (query or "").strip()
    pattern = None
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
    return {"q": pattern, "status": None if status is None else RunStatus(status).value}


def _summary(r: Any) -> RunSummary:
    """A RunSummary from a row holding the run's columns and the _SUMMARY_COLUMNS counts."""
    return RunSummary(
        run=schema.run_from_row(r),
        phases_total=r["n_phases"],
        phases_completed=r["n_done"],
        findings={"major": r["n_major"], "medium": r["n_medium"], "minor": r["n_minor"]},
        tokens=r["n_tokens"],
        cost_usd=float(r["cost_usd"]),
    )


def _later(now: str, seconds: float) -> str:
    """The utcnow()-formatted timestamp `seconds` after `now`."""
    return (
        (parse_ts(now) + timedelta(seconds=seconds))
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
