"""Reads and writes of the commands people gave that changed a run (table `run_actions`)."""

from __future__ import annotations

from typing import Any

from core.records import RunAction
from core.state.db import StateDatabase
from core.timeutil import new_id, utcnow


def action_from_row(r: Any) -> RunAction:
    """Map a run_actions row to a RunAction."""
    return RunAction(
        id=r["id"],
        run_id=r["run_id"],
        action=r["action"],
        actor=r["actor"],
        os_user=r["os_user"],
        git_name=r["git_name"],
        detail=r["detail"],
        created_at=r["created_at"],
    )


class ActionsMixin(StateDatabase):
    """Who started, resumed, cancelled, applied or cleaned a run."""

    async def record_action(
        self,
        run_id: str,
        action: str,
        *,
        actor: str,
        os_user: str | None,
        git_name: str | None,
        detail: str | None = None,
    ) -> RunAction:
        """Store one command given on a run (the engine logs it through the journal)."""
        now = utcnow()
        action_id = new_id("a")
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "INSERT INTO run_actions (id, run_id, action, actor, os_user, git_name, detail,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (action_id, run_id, action, actor, os_user, git_name, detail, now),
            )
            return action_from_row(await self._require(db, "run_actions", "action", action_id))

    async def get_actions(self, run_id: str) -> list[RunAction]:
        """A run's recorded commands, oldest first."""
        rows = await self._fetch(
            "SELECT * FROM run_actions WHERE run_id = ? ORDER BY created_at, id", (run_id,)
        )
        return [action_from_row(r) for r in rows]
