"""Prepares the offline demo: a fresh git copy of the shipped sample repository and its cassette."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from core.git.repo import init_repo_with_commit

DEMO_TASK = "Add input validation and a CSV export to the inventory store"


def cassette_path() -> Path:
    """The shipped cassette of model answers the demo replays."""
    return Path(str(resources.files("core.demo") / "cassette.jsonl"))


def prepare_demo_repo(demo_root: Path) -> Path:
    """Copy the sample into demo_root/sample-N (a new folder each time) as a git repo with one commit."""
    demo_root.mkdir(parents=True, exist_ok=True)
    n = 1
    while (demo_root / f"sample-{n}").exists():
        n += 1
    target = demo_root / f"sample-{n}"
    source = Path(str(resources.files("core.demo") / "sample"))
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    init_repo_with_commit(target, "Sample inventory project")
    return target
