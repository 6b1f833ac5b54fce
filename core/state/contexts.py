"""Reads and writes of the repository context each prompt got (table `contexts`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import new_id, utcnow

# One prompt's context row; its parameters come from context_row.
CONTEXT_COLUMNS = "id, run_id, execution_id, purpose, query, text, sources, created_at"
CONTEXT_INSERT = f"INSERT INTO contexts ({CONTEXT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class PromptContext:
    """What a prompt was given from the repository: the query, the text, what it shows."""

    query: str
    text: str
    sources: list[dict[str, Any]]


def context_row(
    context_id: str, run_id: str, execution_id: str | None, purpose: str, context: PromptContext
) -> tuple[Any, ...]:
    """CONTEXT_INSERT's parameters."""
    return (
        context_id,
        run_id,
        execution_id,
        purpose,
        context.query,
        context.text,
        dumps(context.sources),
        utcnow(),
    )


class ContextsMixin(StateDatabase):
    """The retrieved context of the planner's prompt and of every execution attempt."""

    async def record_context(
        self, run_id: str, execution_id: str | None, purpose: str, context: PromptContext
    ) -> str:
        """Store one prompt's context (purpose: plan or execute); returns its id."""
        context_id = new_id()
        await self._write_one(
            CONTEXT_INSERT, context_row(context_id, run_id, execution_id, purpose, context)
        )
        return context_id

    async def get_contexts(
        self, run_id: str, execution_id: str | None = None
    ) -> list[dict[str, Any]]:
        """A run's stored contexts (or one execution's), oldest first."""
        rows = await self._fetch(
            "SELECT * FROM contexts WHERE run_id = ? AND (? IS NULL OR execution_id = ?)"
            " ORDER BY created_at, rowid",
            (run_id, execution_id, execution_id),
        )
        return [
            {
                "id": r["id"],
                "run_id": r["run_id"],
                "execution_id": r["execution_id"],
                "purpose": r["purpose"],
                "query": r["query"],
                "text": r["text"],
                "sources": json.loads(r["sources"]),
                "created_at": r["created_at"],
            }
            for r in rows
        ]
