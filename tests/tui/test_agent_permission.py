"""A coding agent's permission request answered in the app's intervention modal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.loader import load_config
from config.paths import Paths
from core.engine import Engine
from core.records import InterventionStatus, RunStatus
from tests.cassette import phase, write_cassette
from tests.conftest import git, make_repo
from tests.tui.shell_support import ShellApp, wait_for_modal, wait_until
from tui.modals.intervention import InterventionModal

FAKE_AGENT = Path(__file__).resolve().parent.parent / "fakes" / "acp_agent.py"


async def test_approve_an_agent_permission_in_the_modal(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ACP_MARKERS", str(tmp_path / "markers"))
    repo = make_repo(tmp_path / "repo", {"app.py": "print('hi')\n"})
    cassette = write_cassette(tmp_path / "plan.jsonl", [phase("p1", name="Decide")], {})
    paths = Paths(home)
    loaded = load_config(
        paths,
        repo=repo,
        cli={
            "llm.provider": "replay",
            "llm.replay": str(cassette),
            "execution.agent.name": "fake",
            "execution.agent.command": [sys.executable, str(FAKE_AGENT), "permission"],
        },
    )
    engine = await Engine.open(paths)
    run = await engine.create_run("Record the decision", repo, loaded)
    await engine.close()

    app = ShellApp(home, initial_run=run.id, start_initial="execute")
    async with app.run_test(size=(130, 40)) as pilot:
        modal = await wait_for_modal(pilot, InterventionModal, focus="approve")
        assert "agent fake asks to run a command: Run pytest -q" in str(
            modal.query_one("#reason").render()
        )
        assert "the agent may run a command (Allow once)" in str(
            modal.query_one("#approve-does").render()
        )
        await pilot.press("a")

        async def completed() -> bool:
            return (await app.engine.get_run(run.id)).status is RunStatus.COMPLETED

        await wait_until(pilot, completed, what="the run to complete")
        [item] = await app.engine.interventions(run.id)
        assert item.kind == "agent_permission" and item.status is InterventionStatus.APPROVED
        branch = (await app.engine.get_run(run.id)).branch
    assert git(repo, "show", f"{branch}:decision.txt") == "answer: yes"
