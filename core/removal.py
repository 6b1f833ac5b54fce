"""Removing many folders at once: the deletions run on a few threads, because each unlink and
rmdir waits on the filesystem and hundreds of them in a row took seconds on a busy disk."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REMOVAL_THREADS = 8


def _each(action: Callable[[Path], T], items: list[Path]) -> list[T]:
    """`action` on every item, on up to REMOVAL_THREADS threads (inline for a handful)."""
    if len(items) < 4:
        return [action(item) for item in items]
    with ThreadPoolExecutor(max_workers=REMOVAL_THREADS, thread_name_prefix="remove") as pool:
        return list(pool.map(action, items))


def remove_trees(folders: Iterable[Path]) -> None:
    """Delete each folder with everything in it; one that is already gone is fine."""
    _each(lambda f: shutil.rmtree(f, ignore_errors=True), [f for f in folders if f.is_dir()])


def _rmdir_if_empty(folder: Path) -> bool:
    try:
        os.rmdir(folder)
        return True
    except OSError:
        return False  # not empty: a report or artifact lives there


def remove_empty_dirs(folder: Path) -> int:
    """Remove `folder` and the folders under it that hold no file, deepest first; the count."""
    if not folder.is_dir():
        return 0
    by_depth: dict[int, list[Path]] = defaultdict(list)
    for current, _dirs, _files in os.walk(folder):
        by_depth[current.count(os.sep)].append(Path(current))
    removed = 0
    for depth in sorted(by_depth, reverse=True):  # children before their parents
        removed += sum(_each(_rmdir_if_empty, by_depth[depth]))
    return removed
