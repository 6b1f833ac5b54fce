"""The state store's findings and manual interventions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from core.errors import AlreadyAnsweredError
from core.records import (
    Category,
    Finding,
    FindingIn,
    FindingStatus,
    Intervention,
    InterventionKind,
    InterventionStatus,
    Severity,
)
from core.state import schema
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import new_id, utcnow

OPEN_FINDING_STATUSES = (FindingStatus.NEW.value, FindingStatus.OPEN.value)


def _fingerprint(f: FindingIn) -> str:
    """A stable id for a finding across runs: sha1 of tool|rule|path|message, 16 hex chars."""
    raw = "|".join(x or "" for x in (f.tool, f.rule, f.path, f.message))
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()[:16]


class FindingsMixin(StateDatabase):
    """Reads and writes of the findings and manual_interventions tables."""

    # -- findings --------------------------------------------------------------------------------

    async def add_findings(
        self,
        run_id: str,
        phase_id: str | None,
        execution_id: str | None,
        findings: Iterable[FindingIn],
        status: FindingStatus | str = FindingStatus.NEW,
    ) -> list[Finding]:
        """Store a verifier's findings in one transaction."""
        status, now = FindingStatus(status), utcnow()
        resolved = status == FindingStatus.RESOLVED
        rows = [
            (
                new_id("f"),
                run_id,
                phase_id,
                execution_id,
                Category(f.category).value,
                Severity(f.severity).value,
                f.tool,
                f.rule,
                f.path,
                f.line,
                f.column,
                f.message,
                f.fingerprint or _fingerprint(f),
                status.value,
                int(resolved),
                now,
                now if resolved else None,
                f.end_line,
                f.end_column,
                f.snippet,
                f.details,
                f.help_url,
            )
            for f in findings
        ]
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.executemany(
                "INSERT INTO findings (id, run_id, phase_id, execution_id, category, severity, tool,"
                " rule, path, line, col, message, fingerprint, status, resolved, created_at,"
                " resolved_at, end_line, end_col, snippet, details, help_url)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            out = []
            for row in rows:
                out.append(
                    schema.finding_from_row(await self._require(db, "findings", "finding", row[0]))
                )
            return out

    async def add_finding(
        self,
        run_id: str,
        phase_id: str | None,
        execution_id: str | None,
        f: FindingIn,
        status: FindingStatus | str = FindingStatus.NEW,
    ) -> Finding:
        """Store one finding."""
        return (await self.add_findings(run_id, phase_id, execution_id, [f], status))[0]

    async def update_finding_status(self, finding_id: str, status: FindingStatus | str) -> Finding:
        """Change a finding's status; resolved stamps resolved_at, others clear it."""
        status = FindingStatus(status)
        resolved = status == FindingStatus.RESOLVED
        async with self._write() as db:
            await self._require(db, "findings", "finding", finding_id)
            await db.execute(
                "UPDATE findings SET status = ?, resolved = ?, resolved_at = ? WHERE id = ?",
                (status.value, int(resolved), utcnow() if resolved else None, finding_id),
            )
            return schema.finding_from_row(
                await self._require(db, "findings", "finding", finding_id)
            )

    async def get_findings(
        self, run_id: str, phase_id: str | None = None, status: FindingStatus | str | None = None
    ) -> list[Finding]:
        """A run's findings, optionally of one phase or status, in the order they were stored."""
        value = None if status is None else FindingStatus(status).value
        rows = await self._fetch(
            "SELECT * FROM findings WHERE run_id = ? AND (? IS NULL OR phase_id = ?)"
            " AND (? IS NULL OR status = ?) ORDER BY created_at, rowid",
            (run_id, phase_id, phase_id, value, value),
        )
        return [schema.finding_from_row(r) for r in rows]

    async def get_findings_summary(self, run_id: str) -> dict[str, Any]:
        """Open (new/open) findings counted by severity and category, plus their total."""
        rows = await self._fetch(
            "SELECT severity, category, COUNT(*) AS n FROM findings WHERE run_id = ?"
            " AND status IN (?, ?) GROUP BY severity, category",
            (run_id, *OPEN_FINDING_STATUSES),
        )
        summary: dict[str, Any] = {s.value: 0 for s in Severity}
        by_category = {c.value: 0 for c in Category}
        for r in rows:
            summary[r["severity"]] = summary.get(r["severity"], 0) + r["n"]
            by_category[r["category"]] = by_category.get(r["category"], 0) + r["n"]
        summary["by_category"] = by_category
        summary["total_open"] = sum(r["n"] for r in rows)
        baseline = await self._fetch(
            "SELECT COUNT(*) FROM findings WHERE run_id = ? AND status = ?",
            (run_id, FindingStatus.BASELINE.value),
        )
        summary["baseline"] = int(baseline[0][0])
        return summary

    # -- interventions ---------------------------------------------------------------------------

    async def create_intervention(
        self,
        run_id: str,
        phase_id: str | None,
        kind: InterventionKind | str,
        reason: str,
        action_required: str,
        payload: dict[str, Any] | None = None,
    ) -> Intervention:
        """Record a pending question for a person; it survives restarts until answered."""
        iid, kind = new_id("i"), InterventionKind(kind)
        async with self._write() as db:
            await self._require(db, "runs", "run", run_id)
            await db.execute(
                "INSERT INTO manual_interventions (id, run_id, phase_id, kind, reason,"
                " action_required, status, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    iid,
                    run_id,
                    phase_id,
                    kind.value,
                    reason,
                    action_required,
                    InterventionStatus.PENDING.value,
                    dumps(payload or {}),
                    utcnow(),
                ),
            )
            return schema.intervention_from_row(
                await self._require(db, "manual_interventions", "intervention", iid)
            )

    async def resolve_intervention(
        self, intervention_id: str, approve: bool, note: str | None = None
    ) -> Intervention:
        """Approve or reject a pending intervention; the first answer wins, later ones raise."""
        status = InterventionStatus.APPROVED if approve else InterventionStatus.REJECTED
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE manual_interventions SET status = ?, note = ?, resolved_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status.value, note, utcnow(), intervention_id),
            )
            row = await self._require(db, "manual_interventions", "intervention", intervention_id)
            if cur.rowcount == 0:
                raise AlreadyAnsweredError(
                    f"intervention {intervention_id} was already {row['status']}"
                )
            return schema.intervention_from_row(row)

    async def get_intervention(self, intervention_id: str) -> Intervention:
        """One intervention by id."""
        return schema.intervention_from_row(
            await self._get("manual_interventions", "intervention", intervention_id)
        )

    async def list_interventions(
        self, run_id: str | None = None, pending_only: bool = False
    ) -> list[Intervention]:
        """Interventions oldest first, optionally of one run or only the pending ones."""
        rows = await self._fetch(
            "SELECT * FROM manual_interventions WHERE (? IS NULL OR run_id = ?)"
            " AND (? = 0 OR status = 'pending') ORDER BY created_at, rowid",
            (run_id, run_id, int(pending_only)),
        )
        return [schema.intervention_from_row(r) for r in rows]
