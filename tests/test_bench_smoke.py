"""The benchmark script keeps working as the engine changes (it prints figures; nothing is timed here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_engine_runs_and_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/engine.py", "--phases", "3", "--log-lines", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "log lines committed: 2000" in proc.stdout
    for figure in (
        "engine time per phase:",
        "git time:",
        "verification subprocess time:",
        "retrieval",
    ):
        assert figure in proc.stdout


def test_bench_verify_runs_and_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/verify.py", "--cases", "200", "--findings", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "junit: 200 test cases" in proc.stdout and "100 problems read" in proc.stdout
    assert "ruff: 300 findings" in proc.stdout and "300 problems read" in proc.stdout
