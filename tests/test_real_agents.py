"""Real coding agents from npm (Qwen Code, OpenCode, Claude Code) driven by `orchestrator run --agent NAME`
against a scripted model server, through bench/agents.py (which installs the pinned agents)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Installs are kept between runs (about a minute the first time); the bench checks the pins.
CACHE = Path(
    os.environ.get("ORCHESTRATOR_BENCH_AGENTS_CACHE")
    or Path.home() / ".cache" / "agent-orchestrator" / "bench-agents"
)


@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None,
    reason="node and npm are needed to install the real agents (.ci/run installs them)",
)
def test_real_agents_edit_ask_and_pass_verification() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR")}
    proc = subprocess.run(
        [sys.executable, "bench/agents.py", "--cache", str(CACHE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "agents completed: 3 of 3 (qwen, opencode, claude)" in out
    for agent in ("qwen", "opencode", "claude"):
        assert f"permission: agent {agent} asks to edit files:" in out
        assert f"{agent}: COMPLETED" in out
    check = "verification `python3 -c 'from subtract import sub; assert sub(5, 3) == 2'`: exit 0"
    assert out.count(check) == 3
