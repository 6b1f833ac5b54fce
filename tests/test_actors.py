"""Who answered each intervention and who gave each command that changed a run."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from config.paths import Paths
from core.actors import current_actor
from core.records import InterventionKind, InterventionStatus
from core.state.store import StateStore
from tests.clirun import cli, cli_json
from tests.tui.seed import MAIN_RUN, PENDING_INTERVENTION, seed
from tests.tui.shell_support import ShellApp, top, wait_for, wait_for_modal, wait_until
from tui.modals.intervention import InterventionModal
from tui.screens.interventions import InterventionsScreen


async def _pending_question(home: Path) -> tuple[str, str]:
    """A run nobody drives with one pending risk question: (run id, intervention id)."""
    async with await StateStore.open(Paths(home).db) as store:
        run = await store.create_run("Add a changelog", home, {})
        item = await store.create_intervention(
            run.id, None, InterventionKind.RISK, "phase-001 is high risk", "approve: run it"
        )
    return run.id, item.id


def test_cli_answers_and_commands_record_who_gave_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_id, question = asyncio.run(_pending_question(home))
    answer = cli_json(home, "approve", question, "--as", "alice", "--note", "ok")
    assert answer["status"] == "approved" and answer["answered_by"] == "alice"
    # The global form, before the command, names who cancelled the run.
    assert cli(home, "--as", "Bob Jones", "cancel", run_id).returncode == 0

    listed = cli(home, "interventions", "--run", run_id, check=True).stdout
    assert "phase-001 is high risk  (by alice)" in listed
    shown = cli(home, "show", run_id, check=True).stdout
    assert f"{question} risk           approved  phase-001 is high risk  by alice" in shown
    assert "cancelled  by Bob Jones" in shown
    doc = cli_json(home, "show", run_id)
    assert doc["interventions"][0]["answered_by"] == "alice"
    [cancelled] = doc["actions"]
    assert cancelled["action"] == "cancelled" and cancelled["actor"] == "Bob Jones"
    assert cancelled["os_user"] == getpass.getuser()  # who typed it, whatever name was given
    exported = json.loads(cli(home, "export", run_id, "--format", "json", check=True).stdout)
    assert exported["interventions"][0]["answered_by"] == "alice"
    assert exported["actions"] == doc["actions"]
    markdown = cli(home, "export", run_id, check=True).stdout
    assert "| risk | approved | phase-001 is high risk | ok | alice |" in markdown
    assert "## Who did what" in markdown and "| cancelled | Bob Jones | - |" in markdown

    # A clean that finds nothing to remove (the run never made a worktree) changed nothing.
    assert "cleaned 0 run(s)" in cli(home, "clean", run_id, "--as", "erin", check=True).stdout
    assert cli_json(home, "show", run_id)["actions"] == doc["actions"]

    bad = cli(home, "reject", question, "--as", " ")
    assert bad.returncode == 2 and "--as ' '" in bad.stderr


def test_the_default_actor_is_the_os_user_and_git_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _git_name(tmp_path, monkeypatch, "Dana Tester")
    actor = current_actor()
    assert actor.name == f"{getpass.getuser()} (Dana Tester)"
    assert (actor.os_user, actor.git_name) == (getpass.getuser(), "Dana Tester")
    assert current_actor("alice").name == "alice"


def _git_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make `git config user.name` answer `name` here (a global config file, no repository)."""
    config = tmp_path / "gitconfig"
    config.write_text(f"[user]\n\tname = {name}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)


async def test_an_answer_from_the_app_records_the_os_user_and_git_name(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _git_name(tmp_path, monkeypatch, "Dana Tester")
    who = f"{getpass.getuser()} (Dana Tester)"
    seed(Paths(home).db, log_lines=10)
    app = ShellApp(home)
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for_modal(pilot, InterventionModal, focus="approve")
        await pilot.press("a")

        async def answered() -> bool:
            item = await app.engine.intervention(PENDING_INTERVENTION)
            return item.status is InterventionStatus.APPROVED

        await wait_until(pilot, answered, what="the approval to be stored")
        assert (await app.engine.intervention(PENDING_INTERVENTION)).answered_by == who
        await pilot.press("2")
        screen = top(app, InterventionsScreen)
        table = screen.query_one(DataTable)

        def shown() -> bool:
            keys = [row.value for row in table.rows]
            if PENDING_INTERVENTION not in keys:
                return False
            return f"by {who}" in str(table.get_row(PENDING_INTERVENTION)[-1])

        await wait_for(pilot, shown, what=f"'by {who}' in the answered intervention's row")
    doc = await _document(home)
    assert any(i["answered_by"] == who for i in doc["interventions"])


async def _document(home: Path) -> dict[str, Any]:
    from core.reports.document import run_document

    async with await StateStore.open(Paths(home).db) as store:
        return await run_document(store, MAIN_RUN)
