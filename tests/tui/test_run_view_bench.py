"""bench/tui.py keeps working as the app and engine change (it prints figures; nothing is timed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_bench_tui_runs_and_loses_no_line() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/tui.py", "--rate", "1000", "--seconds", "2", "--presses", "8"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "lines emitted:   2,000" in out
    assert "lines persisted: 2,000 (missing 0, duplicated 0)" in out
    assert re.search(r"key press -> visible effect over \d+ presses: p50 [\d.]+ ms", out)
    for kind in ("scroll", "pause", "tab", "focus"):
        assert f"  {kind}" in out
