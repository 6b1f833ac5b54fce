"""Bounded output: what a process prints is stored as head and tail, counted in bytes."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.procenv import secret_redactor
from core.records import RunStatus
from tests.cassette import new_file, phase, write_cassette
from tests.conftest import make_repo
from verify.capped import LINE_COST, CappedOutput, cap_bytes, cap_file, cap_text
from verify.pipeline import redact_file

MB = 1_000_000
LIMIT = 262_144  # verification.max_output_bytes by default


def test_cap_keeps_head_and_tail_and_says_how_much_was_left_out() -> None:
    data = b"H" * 1000 + b"m" * 5000 + b"T" * 1000
    capped = cap_bytes(data, 2000)
    head, marker, tail = capped.split(b"\n")
    assert len(capped) <= 2000 and head == b"H" * 976 and tail == b"T" * 976
    assert marker.decode() == f"… {7000 - 2 * 976} bytes omitted …"
    assert cap_bytes(b"short", 2000) == b"short" and cap_text("ok", 10) == "ok"
    wide = "é" * 5000  # 10000 bytes of UTF-8: the limit counts bytes, not characters
    assert len(cap_text(wide, 4096).encode()) <= 4096 and "bytes omitted" in cap_text(wide, 4096)


def test_a_parsed_output_file_keeps_its_head_and_tail_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "step.log"
    out.write_bytes(b"H" * 1000 + b"m" * 50_000 + b"T" * 1000)
    assert cap_file(out, 2000)
    head, marker, tail = out.read_bytes().split(b"\n")
    assert out.stat().st_size <= 2000 and head == b"H" * 976 and tail == b"T" * 976
    assert marker.decode() == f"… {52_000 - 2 * 976} bytes omitted …"
    assert not cap_file(out, 2000) and not cap_file(tmp_path / "missing.log", 10)


def test_a_stream_without_newline_is_one_capped_line_and_memory_stays_small() -> None:
    lines: list[str] = []
    kept = CappedOutput(LIMIT, lines.append)
    chunk = b"x" * 65536
    for _ in range(50 * MB // len(chunk)):
        kept.add(chunk)
        assert len(kept.head) + len(kept.tail) <= LIMIT
    kept.add(b"the end")
    kept.close()
    assert sum(len(line.encode()) + 1 for line in lines) <= LIMIT
    assert lines[-2] == f"… {kept.omitted} bytes omitted …" and lines[-1].endswith("xthe end")
    assert kept.omitted == kept.total - len(kept.data()) + len(lines[-2].encode()) + 2
    assert len(kept.data()) <= LIMIT


async def _run_with_step(home: Path, tmp_path: Path, name: str, command: str) -> Any:
    """One one-phase run whose verification runs `command`; the engine is closed afterwards."""
    repo = make_repo(tmp_path / name, {"README.md": "demo\n"})
    cassette = write_cassette(
        tmp_path / f"{name}.jsonl",
        [phase("phase-001")],
        {("phase-001", 1): new_file("a.txt", "a\n")},
    )
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    cli = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "models.embedder": "hashing-256",
        "verification.test": [command],
        "verification.baseline": False,  # the step runs once, for the phase's attempt
    }
    loaded = load_config(paths, repo=repo, env={}, cli=cli)
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("Make a file", repo, loaded, auto_approve=True)
        logs = await engine.logs(run.id, limit=100_000)
        findings = await engine.findings(run.id)
    return run, logs, findings


def _db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("orchestrator.db*"))


async def test_a_50_mb_step_output_is_stored_capped(home: Path, tmp_path: Path) -> None:
    python = shlex.quote(sys.executable)
    small = f"{python} -c \"print('all good')\""
    huge = f"{python} -c \"import sys; sys.stdout.write('x' * 50_000_000); print('END')\""
    async with await Engine.open(Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})):
        pass  # the database and its schema exist before anything is measured
    start = _db_bytes(home)
    quiet, _, _ = await _run_with_step(home, tmp_path, "quiet", small)
    after_quiet = _db_bytes(home)
    loud, logs, findings = await _run_with_step(home, tmp_path, "loud", huge)
    after_loud = _db_bytes(home)

    # The run's result is what it would be with a quiet step.
    assert quiet.status is loud.status is RunStatus.COMPLETED, loud.error
    assert findings == []
    # The database and run.log grew by at most ~300 KB more than for the quiet run.
    assert (after_loud - after_quiet) - (after_quiet - start) <= 300_000
    run_logs = {r.id: home / "artifacts" / r.id / "run.log" for r in (quiet, loud)}
    grown = run_logs[loud.id].stat().st_size - run_logs[quiet.id].stat().st_size
    assert grown <= 300_000
    # Nothing else in the home keeps the 50 MB either (the step's output file is cut once parsed).
    home_bytes = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    assert home_bytes < 5_000_000, sorted(
        (f.stat().st_size, str(f)) for f in home.rglob("*") if f.is_file()
    )[-3:]
    # The stored text shows the head, how many bytes were left out, and the tail.
    verify = [r.message for r in logs if r.level == "verify"]
    text = "\n".join(verify)
    assert sum(len(m.encode()) for m in verify) <= LIMIT + 10_000
    [marker] = [m for m in verify if "bytes omitted" in m]
    omitted = int(marker.split("… ")[1].split(" bytes")[0])
    assert 50 * MB - LIMIT <= omitted < 50 * MB
    assert "[test] xxxxxxxx" in text and "xxxxEND" in text
    run_log = run_logs[loud.id].read_text()
    assert marker in run_log and "xxxxEND" in run_log


def test_a_huge_line_is_redacted_in_pieces_without_cutting_a_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-value-0123456789"
    redactor = secret_redactor({"SERVICE_API_KEY": secret})
    log = tmp_path / "out.log"
    start = (1 << 20) - 4096 - 7  # the secret straddles where the first piece would be cut
    log.write_bytes(b"x" * start + secret.encode() + b"y" * (3 << 20) + b"\nend " + secret.encode())
    redact_file(log, redactor)
    data = log.read_bytes()
    assert secret.encode() not in data and data.count(b"***") == 2
    assert data == b"x" * start + b"***" + b"y" * (3 << 20) + b"\nend ***"


def test_many_short_lines_are_bounded_by_what_storing_them_costs() -> None:
    lines: list[str] = []
    kept = CappedOutput(LIMIT, lines.append, line_cost=LINE_COST)
    chunk = b"ok\n" * 20000
    for _ in range(20 * MB // len(chunk)):
        kept.add(chunk)
    kept.close()
    marker = f"… {kept.omitted} bytes omitted …"
    assert marker in lines and lines[0] == "ok" and lines[-1] == "ok"
    assert sum(len(line) + 1 + LINE_COST for line in lines if line != marker) <= LIMIT
