"""Files a run produces (summary, diffs, reports, its log): written redacted, recorded, announced."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from core.events import ArtifactRecorded
from core.journal import Journal
from core.procenv import redact
from core.records import Artifact
from core.state.store import StateStore


async def save_artifact(
    store: StateStore,
    journal: Journal,
    run_id: str,
    phase_id: str | None,
    path: Path,
    text: str,
    kind: str,
) -> Artifact:
    """Write the file off the event loop with secrets redacted, record it with its hash, announce it."""
    size, digest = await asyncio.to_thread(_write_text, path, redact(text))
    artifact = await store.add_artifact(
        run_id, phase_id, path.name, path, kind, size=size, digest=digest
    )
    await journal.emit(
        ArtifactRecorded(run_id=run_id, artifact_id=artifact.id, name=artifact.name, type=kind)
    )
    return artifact


def _write_text(path: Path, text: str) -> tuple[int, str]:
    """Write the file and return its size and sha256, so it need not be read back."""
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()
