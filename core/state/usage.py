"""The state store's LLM ledger queries: totals per run and per phase, tokens and cost."""

from __future__ import annotations

import sqlite3

from core.records import RunUsage, UsageTotals
from core.state.db import StateDatabase

# A usage row's tokens as totals count them: prompt + completion, none for a cached answer.
BILLED_TOKENS = "CASE WHEN cached = 0 THEN prompt_tokens + completion_tokens ELSE 0 END"

# Answers from the orchestrator's own response cache (cached = 1) cost nothing and computed
# nothing, so they count as calls but add no tokens.
_SUMS = (
    "COUNT(*) AS n,"
    " COALESCE(SUM(CASE WHEN cached = 0 THEN prompt_tokens ELSE 0 END), 0) AS p,"
    " COALESCE(SUM(CASE WHEN cached = 0 THEN completion_tokens ELSE 0 END), 0) AS c,"
    " COALESCE(SUM(CASE WHEN cached = 0 THEN cached_tokens ELSE 0 END), 0) AS k,"
    " COALESCE(SUM(cost_usd), 0) AS cost, COALESCE(SUM(duration_ms), 0) AS ms"
)


def _totals(row: sqlite3.Row | None) -> UsageTotals:
    if row is None:
        return UsageTotals()
    return UsageTotals(
        calls=int(row["n"]),
        prompt_tokens=int(row["p"]),
        completion_tokens=int(row["c"]),
        cached_tokens=int(row["k"]),
        cost_usd=round(float(row["cost"]), 10),
        duration_ms=float(row["ms"]),
    )


class UsageMixin(StateDatabase):
    """Sums over the llm_usage table."""

    async def usage_spent(self, run_id: str, phase_id: str | None = None) -> UsageTotals:
        """What a run (or one of its phases, all attempts) has spent so far."""
        rows = await self._fetch(
            f"SELECT {_SUMS} FROM llm_usage WHERE run_id = ? AND (? IS NULL OR phase_id = ?)",
            (run_id, phase_id, phase_id),
        )
        return _totals(rows[0] if rows else None)

    async def run_usage(self, run_id: str) -> RunUsage:
        """Totals for the run, for planning (no phase) and for each phase in plan order."""
        rows = await self._fetch(
            f"SELECT u.phase_id AS phase_id, MIN(p.plan_id) AS plan_id, {_SUMS}"
            " FROM llm_usage u LEFT JOIN phases p ON p.id = u.phase_id"
            " WHERE u.run_id = ? GROUP BY u.phase_id ORDER BY MIN(p.seq)",
            (run_id,),
        )
        planning = UsageTotals()
        phases: dict[str, UsageTotals] = {}
        for row in rows:
            if row["phase_id"] is None:
                planning = _totals(row)
            else:
                phases[row["plan_id"] or row["phase_id"]] = _totals(row)
        everything = await self.usage_spent(run_id)
        return RunUsage(run_id=run_id, total=everything, planning=planning, phases=phases)
