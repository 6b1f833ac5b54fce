"""Files a run produces (summary, diffs, reports, its log): written redacted to the artifact store
(the home folder, another folder or an S3 bucket), recorded by location, announced."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from core.events import ArtifactRecorded
from core.journal import Journal
from core.procenv import redact
from core.records import Artifact
from core.state.store import StateStore

if TYPE_CHECKING:
    from core.objstore import ArtifactStore


async def save_artifact(
    store: StateStore,
    journal: Journal,
    artifacts: ArtifactStore,
    home: Path,
    run_id: str,
    phase_id: str | None,
    path: Path,
    text: str,
    kind: str,
) -> Artifact:
    """Write the artifact with secrets redacted at the key its home path names (`artifacts/<run>/..`,
    `reports/<run>/..`), record its location with its size and hash, announce it."""
    data = redact(text).encode("utf-8")
    location = await artifacts.put(artifact_key(home, path), data)
    artifact = await store.add_artifact(
        run_id,
        phase_id,
        path.name,
        location,
        kind,
        size=len(data),
        digest=hashlib.sha256(data).hexdigest(),
    )
    await journal.emit(
        ArtifactRecorded(run_id=run_id, artifact_id=artifact.id, name=artifact.name, type=kind)
    )
    return artifact


def artifact_key(home: Path, path: Path) -> str:
    """The store key of a path core.run_paths built under the home: the same layout everywhere."""
    return path.relative_to(home).as_posix()
