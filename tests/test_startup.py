"""Listing and result commands start fast because they import only what they use: checked by the
modules a real command run leaves in sys.modules (bench/startup.py prints the times)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import ROOT, probed
from tests.tui.seed import COMPLETED_RUN, seed

HEAVY = (
    "textual",
    "chromadb",
    "openai",
    "anthropic",
    "onnxruntime",
    "git",
    "numpy",
    "rich",
    "psycopg",
)


def _heavy_after(home: Path, *args: str, **env: str) -> list[str]:
    return probed(home, HEAVY, *args, **env)[1]


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("startup") / "home"
    seed(home / "orchestrator.db", log_lines=50)
    return home


@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["runs", "--json"],
        ["show", COMPLETED_RUN],
        ["show", COMPLETED_RUN, "--json"],
        ["interventions"],
        ["interventions", "--json"],
        ["export", COMPLETED_RUN],
        ["export", COMPLETED_RUN, "--json"],
    ],
    ids=lambda args: " ".join(args),
)
def test_listing_and_result_commands_import_no_heavy_package(
    seeded_home: Path, args: list[str]
) -> None:
    assert _heavy_after(seeded_home, *args) == []


def test_models_without_keys_imports_no_provider_sdk(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    heavy = _heavy_after(
        tmp_path / "home",
        "models",
        "--json",
        OLLAMA_HOST=f"http://127.0.0.1:{closed}",
        OPENAI_API_KEY="",
        ANTHROPIC_API_KEY="",
    )
    assert not {"openai", "anthropic", "textual", "chromadb", "onnxruntime"} & set(heavy)


def test_the_app_module_imports_no_run_machinery() -> None:
    code = (
        "import sys, tui.app\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert set(json.loads(out.stdout.replace("'", '"'))) <= {"textual", "rich"}
