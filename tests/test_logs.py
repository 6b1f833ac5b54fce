"""Structured log files: JSON lines carrying the run id as trace id, rotated by size, secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.logfile import SharedRotatingFileHandler
from core.logs import setup_logging, shutdown_logging
from tests.clirun import ROOT


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
    assert files == [
        "orchestrator.jsonl",
        "orchestrator.jsonl.1",
        "orchestrator.jsonl.2",
        "orchestrator.jsonl.lock",
    ]
    records = [
        json.loads(line)
        for p in path.parent.iterdir()
        if p.suffix != ".lock"
        for line in p.read_text().splitlines()
    ]
    assert records and all(r["trace_id"] == "r1" and r["level"] == "warning" for r in records)
    assert all("tok-0123456789-secret" not in json.dumps(r) for r in records)
    assert all(r["timestamp"].endswith("Z") for r in records)


# A process that logs `count` numbered lines through a tiny rotation size once told to go.
_WRITER = """
import logging, sys
from pathlib import Path
from core.logfile import SharedRotatingFileHandler
from core.logs import setup_logging, shutdown_logging
from tests.clirun import ROOT
name, count, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
setup_logging(folder, level="INFO", max_bytes=3000, backup_count=1000)
log = logging.getLogger("orchestrator.test")
sys.stdin.readline()  # every writer starts together
for i in range(count):
    log.info("line %s %s %s", name, i, "x" * (i % 50), extra={"run_id": name})
shutdown_logging()
"""


def test_processes_sharing_a_log_file_rotate_it_without_losing_or_mixing_lines(
    tmp_path: Path,
) -> None:
    folder, writers, count = tmp_path / "logs", 4, 400
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, f"p{n}", str(count), str(folder)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and not err, err  # a failed write prints "Logging error"
    files = [p for p in folder.iterdir() if p.name != "orchestrator.jsonl.lock"]
    assert len(files) > 20, "the tiny size should have rotated the file many times"
    seen: list[str] = []
    for path in files:
        assert path.stat().st_size <= 3000, f"{path.name} grew past the rotation size"
        for raw in path.read_text().splitlines():
            seen.append(json.loads(raw)["event"].rsplit(" ", 1)[0].rstrip())
    expected = [f"line p{n} {i}" for n in range(writers) for i in range(count)]
    assert sorted(seen) == sorted(expected)


def test_a_handler_writes_to_the_new_file_once_another_rotated_the_old_away(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.log"
    first = SharedRotatingFileHandler(path, max_bytes=100, backup_count=5)
    second = SharedRotatingFileHandler(path, max_bytes=100, backup_count=5)  # another process
    try:
        second.emit(_record("second's first line"))
        for n in range(4):
            first.emit(_record(f"first's line {n}, long enough to rotate"))
        second.emit(_record("second after the rotation"))
    finally:
        first.close()
        second.close()
    assert path.read_text().splitlines()[-1] == "second after the rotation"
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("orchestrator.test", logging.INFO, __file__, 1, message, None, None)
