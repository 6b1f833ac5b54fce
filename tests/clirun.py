"""Run the real `orchestrator` CLI in a subprocess with an isolated home folder."""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The product's packages (pyproject's [tool.setuptools.packages.find]) and the test helpers that
# subprocesses import.
PACKAGES = ("config", "core", "rag", "tui", "verify", "tests/fakes", "tests/rag_support")


def precompile() -> None:
    """Write the bytecode of every module the CLI subprocesses import, once per session: where
    PYTHONDONTWRITEBYTECODE is set, nothing else writes it and each of the suite's hundreds of
    `orchestrator` processes would compile its few hundred modules again (about 0.15 s of CPU)."""
    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=2)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORCHESTRATOR") and k != "OLLAMA_HOST"
    }
    env.update(
        {
            "ORCHESTRATOR_HOME": str(home),
            "ORT_DISABLE_TELEMETRY": "1",
            "PYTHONPATH": str(ROOT),
            # Runs index their repository; the instant embedder keeps these tests fast (the RAG
            # tests use the shipped MiniLM explicitly).
            "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
            # Searches run in-process: a search daemon would outlive the test (the daemon's own
            # tests turn it on and stop it).
            "ORCHESTRATOR_SEARCH_DAEMON": "off",
        }
    )
    env.update(extra)
    return env


def cli(
    home: Path, *args: str, check: bool = False, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=cli_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"orchestrator {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


# Runs the CLI's main() in a fresh interpreter, then reports which heavy packages got imported.
_PROBE = """
import json, sys
from tui.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def probed(home: Path, heavy: tuple[str, ...], *args: str, **env: str) -> tuple[str, list[str]]:
    """A CLI command run to success in a fresh interpreter: its stdout and which of `heavy` it
    imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (heavy,), *args],
        cwd=ROOT,
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stdout + proc.stderr
    return proc.stdout, list(report["heavy"])


def cli_json(home: Path, *args: str, **extra: str) -> Any:
    return json.loads(cli(home, *args, "--json", check=True, **extra).stdout)


def spawn(home: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=cli_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_commit_per_phase(repo: Path, doc: dict[str, Any]) -> None:
    """A run document (`show --json`) whose phases have consecutive attempt numbers and exactly
    one commit each on the run branch: the commit the phase recorded."""
    from tests.conftest import git

    for p in doc["phases"]:
        attempts = sorted(e["attempt"] for e in doc["executions"] if e["phase_id"] == p["id"])
        assert attempts == list(range(1, len(attempts) + 1)), (p["plan_id"], attempts)
        commits = git(
            repo,
            "log",
            "--no-merges",
            "--format=%H",
            "--fixed-strings",
            f"--grep=Orchestrator-Run: {doc['id']}",
            "--grep",
            f"Orchestrator-Phase: {p['plan_id']}",
            "--all-match",
            doc["branch"],
        ).split()
        assert commits == [p["commit"]], (p["plan_id"], commits)
