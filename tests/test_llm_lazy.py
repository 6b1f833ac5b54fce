"""The provider SDKs are slow to import (openai ~0.6 s, anthropic ~1.2 s): only a run that uses
them imports them; the bench script keeps printing its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_and_cli_do_not_import_the_provider_sdks() -> None:
    code = (
        "import sys\n"
        "import core.engine, core.setup, core.models_report, tui.commands\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('openai', 'anthropic')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_bench_llm_runs_and_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/llm.py", "--tokens", "300", "--calls", "3", "--no-import-times"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("ollama", "openai", "anthropic"):
        assert f"{name}" in proc.stdout and "batches" in proc.stdout
