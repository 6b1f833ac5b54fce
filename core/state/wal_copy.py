"""Reading a WAL database in a folder that cannot be written: where its last writes are, and how.

SQLite can open a WAL database read-only (`mode=ro`) only when its `-shm` file exists or can be
created (https://sqlite.org/wal.html, "Read-Only Databases"). On a read-only folder with a `-wal`
but no `-shm` (a process killed before cleanup, a backup of db+wal) `mode=ro` fails, and
`immutable=1` ignores the WAL, so the newest commits would be missing. Then the database and its
WAL are copied into a private temporary folder, where SQLite rebuilds the WAL index and reads the
copy read-only; only a missing or empty WAL can be read with `immutable=1`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_COPY_ATTEMPTS = 5


def wal_path(db: Path) -> Path:
    """The WAL file beside `db`."""
    return Path(f"{db}-wal")


def has_wal_content(db: Path) -> bool:
    """Whether `db` has a non-empty WAL, i.e. commits that may not be in the database file yet."""
    try:
        return wal_path(db).stat().st_size > 0
    except OSError:
        return False


def _signature(db: Path) -> tuple[tuple[int, int], ...]:
    """Size and modification time of the database and its WAL, to notice a write during a copy."""
    out = []
    for f in (db, wal_path(db)):
        try:
            st = f.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((-1, -1))
    return tuple(out)


def copy_with_wal(db: Path) -> tuple[Path, Path]:
    """Copy `db` and its WAL into a new temporary folder; returns (folder, copied database).

    The copy is retried while the files change under it (a writer elsewhere on the same files),
    so the database and WAL copied belong together; the caller removes the folder.
    """
    folder = Path(tempfile.mkdtemp(prefix="orchestrator-ro-"))
    copy = folder / db.name
    try:
        for _ in range(_COPY_ATTEMPTS):
            before = _signature(db)
            shutil.copyfile(db, copy)
            shutil.copyfile(wal_path(db), wal_path(copy))
            if _signature(db) == before:
                break
        return folder, copy
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
