"""`orchestrator db copy --to URL` for the CLI, which reaches the store only through core."""

from __future__ import annotations

from config.paths import Paths
from core.state.pg_copy import CopyReport, copy_home

__all__ = ["CopyReport", "copy_home_to"]


async def copy_home_to(paths: Paths, url: str) -> CopyReport:
    """Copy the home's SQLite database into the PostgreSQL database at `url`."""
    return await copy_home(paths.db, url, paths.db_password_file)
