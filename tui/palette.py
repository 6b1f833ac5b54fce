"""Command palette provider: find any run by id, task, repository or status and act on it."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from core.errors import OrchestratorError
from core.records import RunSummary

if TYPE_CHECKING:
    from tui.app import OrchestratorApp

# Runs offered per search; the palette is for jumping to a run, the runs table for browsing.
MAX_HITS = 12


class RunsProvider(Provider):
    """Offers "Open run …" for the runs matching what is typed (read from the store, any process)."""

    @property
    def orchestrator(self) -> OrchestratorApp:
        return cast("OrchestratorApp", self.app)

    async def _runs(self, query: str | None) -> list[RunSummary]:
        try:
            return await self.orchestrator.engine.runs_page(query=query, limit=MAX_HITS)
        except OrchestratorError:
            return []

    def _label(self, s: RunSummary) -> str:
        return f"Open run {s.run.id} · {s.run.status} · {s.run.task[:70]}"

    def _repo_label(self, s: RunSummary) -> str:
        """The label with the repository's folder, for a query that names the repository."""
        return f"{self._label(s)} · {Path(s.run.repo).name or s.run.repo}"

    async def discover(self) -> Hits:
        for s in await self._runs(None):
            yield DiscoveryHit(
                self._label(s),
                partial(self.orchestrator.open_run, s.run.id),
                help=s.run.repo,
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        words = query.strip()
        # The store narrows by substring; the fuzzy matcher scores and highlights.
        candidates = await self._runs(words) if words else await self._runs(None)
        if words and not candidates:
            candidates = await self._runs(None)
        for s in candidates:
            label = self._label(s)
            score = matcher.match(label)
            if score <= 0:  # the query may name the repository instead of the run
                label = self._repo_label(s)
                score = max(matcher.match(label), matcher.match(s.run.repo))
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    partial(self.orchestrator.open_run, s.run.id),
                    text=label,
                    help=s.run.repo,
                )
