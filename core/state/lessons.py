"""Reads and writes of lessons learned from ended runs (table `lessons`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.records import Lesson
from core.state.db import StateDatabase
from core.state.schema import dumps
from core.timeutil import utcnow


def lesson_id(repo_key: str, kind: str, subject: str) -> str:
    """The one id of a lesson about `subject` on a repository: the same lesson learned again
    from another run updates this row instead of adding a twin."""
    digest = hashlib.sha1(f"{repo_key}|{kind}|{subject}".encode()).hexdigest()
    return "l" + digest[:10]


def lesson_from_row(r: Any) -> Lesson:
    """Map a lessons row to a Lesson."""
    return Lesson(
        id=r["id"],
        repo_key=r["repo_key"],
        repo=r["repo"],
        kind=r["kind"],
        subject=r["subject"],
        task=r["task"],
        text=r["text"],
        runs=json.loads(r["runs"]),
        forgotten_runs=json.loads(r["forgotten_runs"]),
        forgotten_at=r["forgotten_at"],
        forgotten_by=r["forgotten_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


class LessonsMixin(StateDatabase):
    """Lessons: learned (or learned again) from a run, listed, read and forgotten."""

    async def learn_lesson(
        self,
        *,
        repo_key: str,
        repo: str,
        kind: str,
        subject: str,
        task: str,
        text: str,
        run_id: str,
    ) -> Lesson:
        """Store what `run_id` taught; a run already counted (or forgotten) adds nothing, so
        forgetting is remembered, and a new run brings a forgotten lesson back with its text
        (the run whose text the lesson holds may update it when it ends again after a resume)."""
        id_ = lesson_id(repo_key, kind, subject)
        now = utcnow()
        async with self._write() as db:
            row = await self._one(db, "SELECT * FROM lessons WHERE id = ?", (id_,))
            if row is None:
                await db.execute(
                    "INSERT INTO lessons (id, repo_key, repo, kind, subject, task, text, runs,"
                    " forgotten_runs, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, ?)",
                    (id_, repo_key, repo, kind, subject, task, text, dumps([run_id]), now, now),
                )
            else:
                runs, forgotten = json.loads(row["runs"]), json.loads(row["forgotten_runs"])
                if runs and runs[-1] == run_id and text != row["text"]:
                    # the run that wrote the text ended again (resumed): its newer account wins
                    await db.execute(
                        "UPDATE lessons SET text = ?, updated_at = ? WHERE id = ?", (text, now, id_)
                    )
                elif run_id not in runs and run_id not in forgotten:
                    await db.execute(
                        "UPDATE lessons SET repo = ?, task = ?, text = ?, runs = ?,"
                        " forgotten_at = NULL, forgotten_by = NULL, updated_at = ? WHERE id = ?",
                        (repo, task, text, dumps([*runs, run_id]), now, id_),
                    )
            return lesson_from_row(await self._require(db, "lessons", "lesson", id_))

    async def forget_lesson(self, lesson_id: str, by: str) -> Lesson:
        """Forget a lesson: its runs are never learned from again; NotFoundError for a bad id."""
        async with self._write() as db:
            row = await self._require(db, "lessons", "lesson", lesson_id)
            forgotten = json.loads(row["forgotten_runs"])
            runs = [r for r in json.loads(row["runs"]) if r not in forgotten]
            await db.execute(
                "UPDATE lessons SET runs = '[]', forgotten_runs = ?, forgotten_at = ?,"
                " forgotten_by = ? WHERE id = ?",
                (dumps([*forgotten, *runs]), utcnow(), by, lesson_id),
            )
            return lesson_from_row(await self._require(db, "lessons", "lesson", lesson_id))

    async def set_execution_tree(self, execution_id: str, tree: str) -> None:
        """Record the git tree an attempt's result was verified on (evidence for flaky checks)."""
        async with self._write() as db:
            await db.execute("UPDATE executions SET tree = ? WHERE id = ?", (tree, execution_id))

    async def execution_trees(self, run_id: str) -> dict[str, str]:
        """The verified tree of each of a run's attempts that recorded one, by execution id."""
        rows = await self._fetch(
            "SELECT id, tree FROM executions WHERE run_id = ? AND tree IS NOT NULL", (run_id,)
        )
        return {r["id"]: r["tree"] for r in rows}

    async def get_lesson(self, lesson_id: str) -> Lesson:
        """One lesson by id, forgotten or not."""
        return lesson_from_row(await self._get("lessons", "lesson", lesson_id))

    async def list_lessons(
        self, repo_key: str | None = None, *, include_forgotten: bool = True
    ) -> list[Lesson]:
        """Lessons newest first, of one repository (root commit) or of all."""
        rows = await self._fetch(
            "SELECT * FROM lessons WHERE (? IS NULL OR repo_key = ?)"
            " AND (? = 1 OR forgotten_at IS NULL) ORDER BY updated_at DESC, id",
            (repo_key, repo_key, int(include_forgotten)),
        )
        return [lesson_from_row(r) for r in rows]
