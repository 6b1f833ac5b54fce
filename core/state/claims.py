"""The queue's side of the store: submitted runs, what they brought along, and claiming them.

A submitted run is `queued`; a worker claims the oldest queued run that nobody holds (pending,
interrupted, or active with an expired lease whose owner does not live on this host,
core.liveness) in ONE statement: the lease, its expiry and a new
fencing token (core.state.fencing) are set on the row the subquery picks, and the row comes back.
On SQLite that statement runs inside the writer's `BEGIN IMMEDIATE`, so two workers never pick
the same row; on PostgreSQL the subquery locks its row `FOR UPDATE SKIP LOCKED`, so concurrent
workers skip each other's choice instead of waiting (`claim_sql` picks by the store's `dialect`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.liveness import LEASE_FREE, owner_alive
from core.records import Run
from core.state import schema
from core.state.db import StateDatabase
from core.state.dialect import POSTGRESQL, SKIP_LOCKED, SQLITE
from core.state.fencing import TOKEN_SQL, current_fence, stale_error
from core.state.runs import _later
from core.state.schema import dumps
from core.timeutil import utcnow

# Statuses a worker may (re)take a queued run in; terminal ones are never claimed.
CLAIMABLE = "('pending', 'planning', 'executing', 'waiting', 'interrupted')"
_FREE = LEASE_FREE  # an expired lease whose owner still lives on this host is not free
_PICK = (
    f"SELECT id FROM runs WHERE queued = 1 AND status IN {CLAIMABLE} AND {_FREE}"
    " ORDER BY created_at, id LIMIT 1"
)
_TAKE = (
    "UPDATE runs SET lease_owner = :owner, lease_expires_at = :expires,"
    " lease_token = lease_token + 1, updated_at = :now"
)


def claim_sql(dialect: str) -> str:
    """The claim statement for a dialect ("sqlite", or "postgresql"/"postgres")."""
    pick = _PICK + SKIP_LOCKED[POSTGRESQL if dialect.startswith("postgres") else SQLITE]
    # the outer guard repeats the test: on PostgreSQL the row may have changed while we waited
    return f"{_TAKE} WHERE id = ({pick}) AND {_FREE} RETURNING *"


@dataclass(frozen=True)
class Claim:
    """A run a worker now holds: the row as claimed and the lease's fencing token."""

    run: Run
    token: int
    previous_owner: str | None = None


def worker_owner_like(host: str, worker: str) -> str:
    """The LIKE pattern (escape `\\`) of every lease owner a worker id ever used on this host."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

    return f"{esc(host)}:%:worker:{esc(worker)}"


class ClaimsMixin(StateDatabase):
    """Queueing, claiming and taking back runs, and the inputs a submitted run carries."""

    async def queue_run(self, run_id: str, inputs: dict[str, str] | None = None) -> Run:
        """Put a stored run on the queue with what it brought along (e.g. a replay cassette)."""
        now = utcnow()
        async with self._write() as db:
            for name, content in (inputs or {}).items():
                await db.execute(
                    "INSERT INTO run_inputs (run_id, name, content, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (run_id, name) DO UPDATE SET content = excluded.content",
                    (run_id, name, content, now),
                )
            row = await self._update_one(
                db,
                "run",
                run_id,
                "UPDATE runs SET queued = 1, updated_at = ? WHERE id = ?",
                (now, run_id),
            )
            return schema.run_from_row(row)

    async def unqueue_run(self, run_id: str) -> None:
        """Take a run off the queue (it stopped on its own and waits for a person)."""
        async with self._write() as db:
            await db.execute("UPDATE runs SET queued = 0 WHERE id = ?", (run_id,))

    async def is_queued(self, run_id: str) -> bool:
        """Whether the run is on the queue."""
        return bool((await self._get("runs", "run", run_id))["queued"])

    async def run_inputs(self, run_id: str) -> dict[str, str]:
        """What a submitted run brought from the submitter's machine, by name."""
        rows = await self._fetch(
            "SELECT name, content FROM run_inputs WHERE run_id = ? ORDER BY name", (run_id,)
        )
        return {r[0]: r[1] for r in rows}

    async def set_run_config(self, run_id: str, config: dict[str, Any]) -> Run:
        """Replace a run's configuration snapshot (a worker points it at its own files)."""
        async with self._write() as db:
            row = await self._update_one(
                db,
                "run",
                run_id,
                "UPDATE runs SET config = ?, updated_at = ? WHERE id = ?",
                (dumps(config), utcnow(), run_id),
            )
            return schema.run_from_row(row)

    async def claim_next(self, owner: str, ttl_seconds: float) -> Claim | None:
        """Claim the oldest queued run nobody holds for `owner`, or None when there is none."""
        now = utcnow()
        # A read first: idle workers woken by every change take no write lock for nothing.
        if not await self._fetch(_PICK, {"now": now}):
            return None
        params = {"owner": owner, "expires": _later(now, ttl_seconds), "now": now}
        sql = claim_sql(getattr(self, "dialect", "sqlite"))
        async with self._write() as db:
            rows = list(await db.execute_fetchall(sql, params))
        if not rows:
            return None
        return Claim(schema.run_from_row(rows[0]), int(rows[0]["lease_token"]))

    async def take_back(self, owner: str, like: str, ttl_seconds: float) -> list[Claim]:
        """Take back at once the queued runs an earlier process of this worker id still holds
        (owner LIKE `like`, see worker_owner_like) when that process is gone."""
        rows = await self._fetch(
            f"SELECT id, lease_owner FROM runs WHERE queued = 1 AND status IN {CLAIMABLE}"
            " AND lease_owner LIKE ? ESCAPE '\\' AND lease_owner <> ? ORDER BY created_at, id",
            (like, owner),
        )
        claims: list[Claim] = []
        for run_id, old in [(r[0], r[1]) for r in rows]:
            if owner_alive(old):
                continue  # the same id running elsewhere on this host: never steal from it
            now = utcnow()
            async with self._write() as db:
                taken = list(
                    await db.execute_fetchall(
                        f"{_TAKE} WHERE id = :id AND lease_owner = :old RETURNING *",
                        {
                            "owner": owner,
                            "expires": _later(now, ttl_seconds),
                            "now": now,
                            "id": run_id,
                            "old": old,
                        },
                    )
                )
            if taken:
                claims.append(
                    Claim(schema.run_from_row(taken[0]), int(taken[0]["lease_token"]), old)
                )
        return claims

    async def ensure_fence(self) -> None:
        """Raise LeaseLostError when this task's lease was taken over (before a git commit,
        merge or push, which the database cannot roll back); a write of this task that found
        the lease held less than FRESH_CONFIRMATION_SECONDS ago stands for the check."""
        fence = current_fence()
        if fence is None or self._recently_confirmed(fence):  # a write of this task just did
            return
        rows = await self._fetch(TOKEN_SQL, (fence.run_id,))
        row = rows[0] if rows else None
        if row is None or int(row[0]) != fence.token:
            raise stale_error(fence, row)
        self._confirm(fence)
