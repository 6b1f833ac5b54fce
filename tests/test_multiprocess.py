"""Eight headless runs in eight processes against one database: none fails."""

from __future__ import annotations

from pathlib import Path

from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli_json, spawn
from tests.conftest import make_repo


def test_eight_processes_one_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    phases = [
        phase("phase-001"),
        phase("phase-002", ["phase-001"]),
        phase("phase-003", ["phase-001"]),
    ]
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        phases,
        {(pid, 1): new_file(f"{pid}.txt", pid) for pid in ("phase-001", "phase-002", "phase-003")},
    )
    procs = []
    for n in range(8):
        repo = make_repo(tmp_path / f"repo{n}")
        procs.append(
            spawn(
                home,
                "run",
                f"task {n}",
                "--repo",
                str(repo),
                "--headless",
                "--yes",
                "--provider",
                "replay",
                "--replay",
                str(cassette),
            )
        )
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, out + err
        assert "locked" not in err
    runs = cli_json(home, "runs")
    assert len(runs) == 8
    assert all(r["status"] == "completed" and r["phases_completed"] == 3 for r in runs)
