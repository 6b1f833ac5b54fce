"""Structured log files: JSON lines carrying the run id as trace id, rotated by size, secrets redacted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.logs import setup_logging, shutdown_logging


def test_records_carry_trace_ids_rotate_and_hide_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "tok-0123456789-secret")
    path = setup_logging(tmp_path / "logs", level="INFO", max_bytes=2000, backup_count=2)
    assert path is not None
    logger = logging.getLogger("orchestrator.run")
    for i in range(40):
        logger.warning(
            "attempt %s failed with %s", i, "tok-0123456789-secret", extra={"run_id": "r1"}
        )
    logger.debug("not written at INFO", extra={"run_id": "r1"})
    shutdown_logging()  # writes out the queue
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["orchestrator.jsonl", "orchestrator.jsonl.1", "orchestrator.jsonl.2"]
    records = [
        json.loads(line) for p in path.parent.iterdir() for line in p.read_text().splitlines()
    ]
    assert records and all(r["trace_id"] == "r1" and r["level"] == "warning" for r in records)
    assert all("tok-0123456789-secret" not in json.dumps(r) for r in records)
    assert all(r["timestamp"].endswith("Z") for r in records)
