"""A cancel the gate sees first and the heartbeat sees again while the run is ending: the driver
ends the run once and returns it (the heartbeat's late cancel used to escape as CancelledError,
leaving the lease held, no summary, and an ACP prompt or `run` without an answer)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from config.loader import load_config
from config.paths import Paths
from core.demo.prepare import cassette_path, prepare_demo_repo
from core.engine import Engine
from core.records import RunStatus
from tests.waiting import DEFAULT_TIMEOUT, pending_asks


async def test_a_cancel_seen_twice_ends_the_run_once(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home")
    repo = prepare_demo_repo(tmp_path / "demo")
    # A heartbeat far shorter than the run's ending, so it sees the cancel flag during it.
    env = {
        **os.environ,
        "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.01",
        "ORCHESTRATOR__EXECUTION__POLL_SECONDS": "0.005",
        "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
    }
    cli_layer = {"llm.provider": "replay", "llm.replay": str(cassette_path())}
    async with await Engine.open(paths) as engine:
        loaded = load_config(paths, repo=repo, env=env, cli=cli_layer)
        run = await engine.create_run("Add the demo feature", repo, loaded)
        driving = asyncio.create_task(engine.execute_run(run.id))
        await pending_asks(engine, run.id, driving)
        await engine.cancel_run(run.id)
        ended = await asyncio.wait_for(driving, timeout=DEFAULT_TIMEOUT)
        assert ended.status is RunStatus.CANCELLED
        assert ended.lease_owner is None  # released: the ending ran to its end
        names = [a.name for a in await engine.store.get_artifacts(run.id)]
        assert "summary.md" in names
