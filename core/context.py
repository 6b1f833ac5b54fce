"""What every part of one run's execution shares: config, store, journal, git paths and clients."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from config.catalog import ModelDef, ModelsCatalog
from config.paths import Paths
from config.schema import OrchestratorConfig
from core.events import ArtifactRecorded, Event
from core.executors.base import Executor
from core.gate import Gate
from core.journal import Journal
from core.llm.client import LLMClient
from core.procenv import redact
from core.records import Run
from core.retrieval import Retriever
from core.state.store import StateStore


@dataclass
class RunContext:
    """One run's collaborators; built by the driver, read by the phase runner."""

    run: Run
    config: OrchestratorConfig
    catalog: ModelsCatalog
    paths: Paths
    store: StateStore
    journal: Journal
    gate: Gate
    llm: LLMClient
    executor: Executor
    retriever: Retriever
    planner_model: ModelDef
    executor_model: ModelDef
    repo: Path
    run_worktree: Path
    # (plan id, attempt) -> execution id of attempts started in this process, for the LLM ledger.
    executions: dict[tuple[str, int], str] = field(default_factory=dict)
    # Serialises changes to the repository's worktree registry and merges into the run branch.
    git_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def run_id(self) -> str:
        return self.run.id

    def log(self, phase_id: str | None, message: str, level: str = "info") -> None:
        """Append a line to the run's live log (batched and persisted by the journal)."""
        self.journal.log(self.run.id, phase_id, level, message)

    async def emit(self, event: Event) -> None:
        """Publish a state event whose change is already stored."""
        await self.journal.emit(event)

    async def save_artifact(self, phase_id: str | None, path: Path, text: str, kind: str) -> None:
        """Write a file the run produced (secrets redacted), record it, and announce it."""
        size, digest = await asyncio.to_thread(_write_text, path, redact(text))
        artifact = await self.store.add_artifact(
            self.run.id, phase_id, path.name, path, kind, size=size, digest=digest
        )
        await self.emit(
            ArtifactRecorded(
                run_id=self.run.id, artifact_id=artifact.id, name=artifact.name, type=kind
            )
        )

    def phase_branch(self, plan_id: str) -> str:
        return f"{self.config.git.branch_prefix}{self.run.id}--{plan_id}"

    def phase_worktree(self, plan_id: str) -> Path:
        return self.paths.worktrees / self.run.id / plan_id

    def trailers(self, plan_id: str) -> dict[str, str]:
        return {self.config.git.trailer: self.run.id, "Orchestrator-Phase": plan_id}


def _write_text(path: Path, text: str) -> tuple[int, str]:
    """Write the file and return its size and sha256, so it need not be read back."""
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()
