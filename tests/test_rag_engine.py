"""Runs use the index: it is brought up to date before planning, the planner and every attempt
get hybrid context, and the context each prompt got is stored with the execution."""

from __future__ import annotations

from pathlib import Path

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.indexing import hybrid_retriever
from core.records import RunStatus
from tests.cassette import new_file, phase, write_cassette
from tests.conftest import make_repo


async def test_contexts_are_retrieved_per_prompt_and_stored(home: Path, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "shop",
        {
            "shop/stock.py": "def stock_levels(items):\n    return {i.sku: i.count for i in items}\n",
            "shop/users.py": "def login(user, password):\n    return user.check(password)\n",
        },
    )
    cassette = write_cassette(
        tmp_path / "c.jsonl",
        [
            phase("phase-001", name="Add a CSV writer for stock levels"),
            phase("phase-002", ["phase-001"], name="Use the CSV writer for stock rows"),
        ],
        {
            ("phase-001", 1): new_file(
                "shop/csv_export.py",
                "def write_stock_csv(rows, path):\n    path.write_text(rows)\n",
            ),
            ("phase-002", 1): new_file(
                "shop/cli.py", "from shop.csv_export import write_stock_csv\n"
            ),
        },
    )
    paths = Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})
    loaded = load_config(
        paths,
        repo=repo,
        env={},
        cli={
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "models.embedder": "hashing-256",
            "rag.max_context_tokens": 400,
        },
    )
    async with await Engine.open(paths) as engine:
        run = await engine.start_run("Export stock levels as CSV", repo, loaded)
        assert run.status is RunStatus.COMPLETED, run.error
        contexts = await engine.store.get_contexts(run.id)
        executions = await engine.store.get_executions(run.id)
        doc = await engine.run_document(run.id)

    plan, first, second = contexts
    assert (plan["purpose"], plan["execution_id"], plan["query"]) == (
        "plan",
        None,
        "Export stock levels as CSV",
    )
    assert plan["text"].startswith("Repository files:\nshop/stock.py\nshop/users.py")
    assert plan["sources"][0]["path"] == "shop/stock.py"
    assert set(plan["sources"][0]) == {
        "path",
        "start_line",
        "end_line",
        "symbol",
        "score",
        "lexical_only",
    }
    assert len(plan["text"]) <= 400 * 4
    # A small repository's few new chunks are embedded before the prompt: fully hybrid.
    assert not any(s["lexical_only"] for c in contexts for s in c["sources"])
    assert [c["purpose"] for c in (first, second)] == ["execute", "execute"]
    assert {first["execution_id"], second["execution_id"]} == {e.id for e in executions}
    # The second phase's worktree holds the first phase's new file, and its index found it.
    assert "Use the CSV writer" in second["query"]
    assert second["sources"][0]["path"] == "shop/csv_export.py"
    assert "### shop/csv_export.py (lines 1-2)" in second["text"]
    shown = [(c["purpose"], c["execution_id"], c["sources"]) for c in doc["contexts"]]
    assert shown == [(c["purpose"], c["execution_id"], c["sources"]) for c in contexts]
    stored = {e.id: e.context for e in executions}
    assert stored[second["execution_id"]] == second["text"]

    # The user's repository was indexed before planning (its index is searchable right away).
    hybrid = hybrid_retriever(paths, loaded.config, loaded.catalog)
    hits = hybrid.search_sync("stock levels", repo=repo, k=1)
    assert hits[0].path == "shop/stock.py"
