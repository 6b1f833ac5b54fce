"""The shared chunk and vector cache written from several threads at once, as parallel phases do
(their worktrees share the repository's index and so its cache connection)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from rag.cache import SharedCache


def test_parallel_writers_take_turns(tmp_path: Path) -> None:
    cache = SharedCache(tmp_path / "cache.sqlite")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(150):
                cache.put_vectors("e", [(f"{worker}-{n}", np.full(4, n, dtype=np.float32))])
        except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    assert errors == []
    reopened = SharedCache(tmp_path / "cache.sqlite")
    stored = reopened.db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    reopened.close()
    assert stored == 4 * 150
