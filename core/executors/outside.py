"""What an agent changed outside its worktree: the user's repository and the orchestrator's home."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.procenv import safe_env

# Home folders and files the orchestrator itself changes while a run goes on.
_LIVE_IN_HOME = frozenset({"worktrees", "logs", "cache", "indexes", "reports", "artifacts"})
_MAX_HOME_FILES = 20_000


@dataclass(frozen=True)
class Snapshot:
    repo_head: str
    repo_status: frozenset[str]
    home_files: dict[str, tuple[int, int]]  # relative path -> (size, mtime in ns)


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=safe_env(),
        check=False,
        timeout=60,
    )
    return proc.stdout if proc.returncode == 0 else ""


def _home_files(home: Path) -> dict[str, tuple[int, int]]:
    """Files of the home that the orchestrator does not change during a run, with size and mtime."""
    files: dict[str, tuple[int, int]] = {}
    if not home.is_dir():
        return files
    for entry in home.iterdir():
        if entry.name in _LIVE_IN_HOME or entry.name.startswith("orchestrator.db"):
            continue
        paths = [entry] if not entry.is_dir() else (p for p in entry.rglob("*") if p.is_file())
        for path in paths:
            if len(files) >= _MAX_HOME_FILES:
                return files
            try:
                st = path.lstat()
            except OSError:
                continue
            files[str(path.relative_to(home))] = (st.st_size, st.st_mtime_ns)
    return files


def _snapshot(repo: Path, home: Path) -> Snapshot:
    status = _git(repo, "status", "--porcelain=v1", "--untracked-files=all", "-z")
    return Snapshot(
        repo_head=_git(repo, "rev-parse", "HEAD").strip(),
        repo_status=frozenset(item for item in status.split("\0") if item),
        home_files=_home_files(home),
    )


async def snapshot(repo: Path, home: Path) -> Snapshot:
    """Record the state an agent must not change (taken before and after each attempt)."""
    return await asyncio.to_thread(_snapshot, repo, home)


def changes_between(before: Snapshot, after: Snapshot, repo: Path, home: Path) -> list[str]:
    """Readable lines, one per change an agent made outside its worktree."""
    lines: list[str] = []
    if before.repo_head != after.repo_head:
        lines.append(f"{repo}: HEAD moved from {before.repo_head[:10]} to {after.repo_head[:10]}")
    for item in sorted(after.repo_status - before.repo_status):
        lines.append(f"{repo}: {item[3:]} ({item[:2].strip() or 'changed'})")
    for item in sorted(before.repo_status - after.repo_status):
        lines.append(f"{repo}: {item[3:]} changed back or was committed")
    for rel, stat in sorted(after.home_files.items()):
        if rel not in before.home_files:
            lines.append(f"{home / rel}: created")
        elif before.home_files[rel] != stat:
            lines.append(f"{home / rel}: modified")
    lines.extend(
        f"{home / rel}: deleted"
        for rel in sorted(set(before.home_files) - set(after.home_files))
        if not os.path.lexists(home / rel)
    )
    return lines
