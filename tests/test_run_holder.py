"""`runs --json` and `show` say whether a run waits in the queue for a worker and which worker
(lease owner) holds it."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from config.paths import Paths
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.engine import Engine
from tests.clirun import cli, cli_json


def test_runs_and_show_say_queued_then_which_worker_holds_the_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = prepare_demo_repo(tmp_path / "demo")
    submit = ["submit", DEMO_TASK, "--repo", str(repo), "--provider", "replay"]
    run_id = cli(home, *submit, "--replay", str(cassette_path()), check=True).stdout.split()[1]

    async def create_unqueued() -> None:
        async with await Engine.open(Paths(home)) as engine:
            await engine.store.create_run("driven here, not queued", repo, {})

    asyncio.run(create_unqueued())

    listed = {r["id"]: r for r in cli_json(home, "runs")}
    queued = listed[run_id]
    assert (queued["queued"], queued["lease_owner"], queued["worker"]) == (True, None, None)
    [other] = [r for r in listed.values() if r["id"] != run_id]
    assert (other["queued"], other["lease_owner"], other["worker"]) == (False, None, None)
    assert "driver: queued for a worker (none holds it yet)" in cli(home, "show", run_id).stdout
    assert "driver:" not in cli(home, "show", other["id"]).stdout

    owner = f"{socket.gethostname()}:{os.getpid()}:worker:build-1"  # this live process

    async def claim() -> None:
        async with await Engine.open(Paths(home)) as engine:
            claim = await engine.store.claim_next(owner, 600)
            assert claim is not None and claim.run.id == run_id

    asyncio.run(claim())
    [held] = [r for r in cli_json(home, "runs") if r["id"] == run_id]
    assert (held["queued"], held["lease_owner"], held["worker"]) == (True, owner, "build-1")
    assert held["lease_expires_at"]
    doc = cli_json(home, "show", run_id)
    assert (doc["queued"], doc["worker"], doc["lease_owner"]) == (True, "build-1", owner)
    shown = cli(home, "show", run_id, check=True).stdout
    assert f"driver: worker build-1 ({owner}), lease until {held['lease_expires_at']}" in shown
