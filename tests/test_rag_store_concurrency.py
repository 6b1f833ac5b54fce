"""The shared vector store under concurrency: sixteen processes index and search on fresh homes,
a few rounds, and every one completes without the store being rebuilt; a broken collection is
rebuilt alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_repo

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 16
ROUNDS = 3


def test_sixteen_processes_share_a_fresh_store(tmp_path: Path) -> None:
    repos = [
        make_repo(
            tmp_path / f"repo{n}",
            {
                "config.py": f"def parse_config(path):\n    return load(path, {n})\n",
                "README.md": "# Tool\nParse the config file.\n",
            },
        )
        for n in range(4)
    ]
    homes = [str(tmp_path / f"home{r}") for r in range(ROUNDS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ORT_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.rag_support.store_worker",
            str(PROCESSES),
            *homes,
            "--",
            *map(str, repos),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"0 of {PROCESSES} processes failed" in proc.stdout
    assert proc.stdout.count(": ok ") == PROCESSES * ROUNDS, proc.stdout
    # Nothing was rebuilt: no process saw a broken store; vectors answered in most rounds.
    assert proc.stdout.count("notices None") == PROCESSES * ROUNDS, proc.stdout
    assert proc.stdout.count("vector hits True") > PROCESSES * ROUNDS // 2, proc.stdout


def test_a_broken_collection_is_rebuilt_alone(tmp_path: Path) -> None:
    from rag.embedders import EmbedderSpec
    from rag.layout import collection_name
    from rag.retrieve import HybridRetriever
    from rag.vectors import client_for

    files = {"config.py": "def parse_config(path):\n    return path\n"}
    good, bad = make_repo(tmp_path / "good", files), make_repo(tmp_path / "bad", files)
    indexes = tmp_path / "home" / "indexes"
    spec = EmbedderSpec("hash", "256")
    first = HybridRetriever(indexes, spec)
    assert first.refresh_sync(good).pending == 0
    # Another program left a collection under the bad repository's name that we cannot open.
    client_for(indexes / "chroma").create_collection(
        collection_name(bad.resolve(), spec.key), configuration={"hnsw": {"space": "l2"}}
    )
    second = HybridRetriever(indexes, spec)
    stats = second.refresh_sync(bad)
    assert stats.rebuilt is not None and "vector collection" in stats.rebuilt
    assert stats.pending == 0
    assert [h.path for h in second.search_sync("parse config", repo=bad, mode="vector")] == [
        "config.py"
    ]
    # The other repository's vectors were never touched.
    assert first.index_for(good).vectors.count() == 1
    assert [h.path for h in first.search_sync("parse config", repo=good, mode="vector")] == [
        "config.py"
    ]


def test_deleting_a_collection_in_a_fresh_process_takes_the_store_lock_once(tmp_path: Path) -> None:
    # The first client of a process is created under the store lock; deleting a collection before
    # any client existed once waited on its own lock for ever (clean in a new process).
    code = (
        "import sys; from pathlib import Path; from rag.vectors import delete_collection; "
        "delete_collection(Path(sys.argv[1]), 'gone-collection'); print('deleted')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "chroma")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.returncode == 0 and done.stdout.strip() == "deleted", done.stderr
