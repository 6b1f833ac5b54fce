"""What every part of one run's execution shares: config, store, journal, git paths and clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from config.catalog import ModelDef, ModelsCatalog
from config.paths import Paths
from config.schema import OrchestratorConfig
from core import run_paths
from core.artifacts import StagedArtifact, record_staged, stage_artifact
from core.budget import BudgetGuard
from core.events import Event
from core.executors.base import Executor
from core.gate import Gate
from core.journal import Journal
from core.lifecycle import Lifecycle
from core.llm.client import LLMClient
from core.records import Run
from core.retrieval import Retriever
from core.state.store import StateStore

if TYPE_CHECKING:
    from core.objstore import ArtifactStore


@dataclass
class RunContext:
    """One run's collaborators; built by the driver, read by the phase runner."""

    run: Run
    config: OrchestratorConfig
    catalog: ModelsCatalog
    paths: Paths
    store: StateStore
    journal: Journal
    lifecycle: Lifecycle
    gate: Gate
    llm: LLMClient
    executor: Executor
    retriever: Retriever
    planner_model: ModelDef
    executor_model: ModelDef
    repo: Path
    run_worktree: Path
    artifacts: ArtifactStore  # where summaries, diffs, reports and the log go (artifacts.url)
    # (plan id, attempt) -> execution id of attempts started in this process, for the LLM ledger.
    executions: dict[tuple[str, int], str] = field(default_factory=dict)
    # Serialises changes to the repository's worktree registry and merges into the run branch.
    git_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Budgets checked when an agent executor's attempt ends (None when our model does the work).
    agent_budget: BudgetGuard | None = None
    # The run's repository URL (without credentials) when it was named by URL: each phase's
    # merge into the run branch is pushed there before the phase is recorded as done.
    origin: str | None = None
    # Fingerprints of the run's baseline findings, read once: they are stored before any phase runs.
    baseline_fingerprints: set[str] | None = None
    # How many findings this process stored for the run's phases (the driver's threshold check
    # reads the findings again only when this moved since a check that found none open).
    findings_stored: int = 0

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, phase_id: str | None, message: str, level: str = "info") -> None:
        """Append a line to the run's live log (batched and persisted by the journal)."""
        self.journal.log(self.run.id, phase_id, level, message)

    async def emit(self, event: Event) -> None:
        """Publish a state event whose change is already stored."""
        await self.journal.emit(event)

    async def stage_artifact(
        self, phase_id: str | None, path: Path, text: str, kind: str
    ) -> StagedArtifact:
        """Write a file the run produced (secrets redacted) to the artifact store at the place
        its home path names (core.run_paths), leaving its row for a transition to store
        (Lifecycle's `artifacts=`) or for record_staged."""
        return await stage_artifact(
            self.artifacts, self.paths.home, self.run.id, phase_id, path, text, kind
        )

    async def record_staged(self, staged: StagedArtifact) -> None:
        """Store a staged artifact's row on its own and announce it."""
        await record_staged(self.store, self.journal, staged)

    async def save_outputs(self, folder: Path) -> None:
        """Copy a folder of verification outputs (already redacted) to the artifact store when it
        lies outside the home, so the bucket holds every report; the home keeps its copy."""
        await self.artifacts.put_folder(self.paths.home, folder)

    def phase_branch(self, plan_id: str) -> str:
        return run_paths.phase_branch(self.config.git.branch_prefix, self.run.id, plan_id)

    def phase_worktree(self, plan_id: str) -> Path:
        return run_paths.phase_worktree(self.paths, self.run.id, plan_id)

    def trailers(self, plan_id: str) -> dict[str, str]:
        return {self.config.git.trailer: self.run.id, "Orchestrator-Phase": plan_id}
