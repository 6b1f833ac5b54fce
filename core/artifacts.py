"""Files a run produces (summary, diffs, reports, its log): written redacted to the artifact store
(the home folder, another folder or an S3 bucket), recorded by location, announced."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.events import ArtifactRecorded
from core.journal import Journal
from core.procenv import redact
from core.records import Artifact
from core.state.logs import artifact_steps
from core.state.store import StateStore

if TYPE_CHECKING:
    from core.objstore import ArtifactStore


@dataclass(frozen=True)
class StagedArtifact:
    """An artifact whose file is written and whose row is not stored yet: a transition stores it
    in its own write (`steps`, Lifecycle's `artifacts=`), then announces it (`event`)."""

    artifact: Artifact
    steps: list[tuple[str, Sequence[Any]]]

    def event(self) -> ArtifactRecorded:
        """The announcement once the row is stored."""
        a = self.artifact
        return ArtifactRecorded(run_id=a.run_id, artifact_id=a.id, name=a.name, type=a.type)


async def stage_artifact(
    artifacts: ArtifactStore,
    home: Path,
    run_id: str,
    phase_id: str | None,
    path: Path,
    text: str,
    kind: str,
) -> StagedArtifact:
    """Write the artifact with secrets redacted at the key its home path names (`artifacts/<run>/..`,
    `reports/<run>/..`); its row (location, size, hash) is left for a write to carry."""
    data = redact(text).encode("utf-8")
    location = await artifacts.put(artifact_key(home, path), data)
    artifact, steps = artifact_steps(
        run_id, phase_id, path.name, location, kind, len(data), hashlib.sha256(data).hexdigest()
    )
    return StagedArtifact(artifact, steps)


async def record_staged(store: StateStore, journal: Journal, staged: StagedArtifact) -> None:
    """Store a staged artifact's row in a write of its own and announce it (stage_artifact then
    this is how a file the run produced is saved on its own)."""
    await store.add_artifact_rows(staged.steps)
    await journal.emit(staged.event())


def artifact_key(home: Path, path: Path) -> str:
    """The store key of a path core.run_paths built under the home: the same layout everywhere."""
    return path.relative_to(home).as_posix()
