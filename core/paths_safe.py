"""Paths built from ids are checked to stay inside the folder they belong to (home or worktree)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from core.errors import UnsafePathError


def inside(base: Path, *parts: str) -> Path:
    """`base` joined with `parts`, refused unless it resolves (symlinks followed) below `base`.

    Each part is one name: separators, '..' and absolute parts are refused outright, and the
    resolved result is compared with the resolved base, so a symlink cannot lead out either.
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise UnsafePathError(
                f"refusing to build a path from {part[:80]!r} under {base}: a name must be one "
                "path component; this is a bug in the orchestrator or a corrupt database row"
            )
    root = Path(os.path.realpath(base))
    target = Path(resolved_below(str(root), parts))
    if target == root or not target.is_relative_to(root):
        raise UnsafePathError(
            f"refusing {os.path.join(base, *parts)}: it resolves to {target}, outside {root}"
        )
    return base.joinpath(*parts)


def resolved_below(root: str, parts: Sequence[str]) -> str:
    """os.path.realpath(root/parts) for a `root` that is already resolved: only the parts below
    it are looked at (one lstat each), and a symlink among them is resolved whole."""
    current = root
    for i, part in enumerate(parts):
        step = os.path.join(current, part)
        try:
            mode = os.lstat(step).st_mode
        except OSError:  # missing from here on: nothing below can be a link
            return os.path.join(step, *parts[i + 1 :])
        current = os.path.realpath(step) if stat.S_ISLNK(mode) else step
    return current
