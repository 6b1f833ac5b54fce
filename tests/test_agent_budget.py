"""Budgets count an agent executor's usage when its attempt ends: a run of the scripted ACP agent
pauses at its cost budget before the next phase or attempt starts, and a rejection stops it there."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cassette import phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import make_repo
from tests.waiting import wait_until

FAKE_AGENT = Path(__file__).parent / "fakes" / "acp_agent.py"


def _budget_asks(home: Path) -> list[dict[str, Any]]:
    return [i for i in cli_json(home, "interventions", "--pending") if i["kind"] == "budget"]


@pytest.mark.parametrize(
    ("check", "execution", "p1_waiting", "p1_stopped"),
    [
        # p1 passes: the run pauses after delivering it, before p2 starts.
        ("grep -q agent notes.txt", "succeeded", "completed", "completed"),
        # p1's verification fails: the run pauses before p1's second attempt.
        ("grep -q never notes.txt", "failed", "in_progress", "failed"),
    ],
    ids=["before-the-next-phase", "before-the-retry"],
)
def test_an_agents_reported_cost_pauses_the_run_at_its_budget_before_it_spends_more(
    tmp_path: Path, check: str, execution: str, p1_waiting: str, p1_stopped: str
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo", {"app.py": "print('hi')\n"})
    plan = [phase("p1", name="Write notes"), phase("p2", name="More notes", deps=["p1"])]
    cassette = write_cassette(tmp_path / "plan.jsonl", plan, {})
    env = {
        # The "edit" agent reports $0.0125 for its attempt: one attempt passes a $0.01 budget.
        "ORCHESTRATOR__EXECUTION__AGENT__COMMAND": json.dumps(
            [sys.executable, str(FAKE_AGENT), "edit"]
        ),
        "ORCHESTRATOR__EXECUTION__AGENT__NAME": "fake",
        "ORCHESTRATOR__EXECUTION__MAX_COST_USD": "0.01",
        "ORCHESTRATOR__VERIFICATION__TEST": json.dumps([check]),
        "ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS": "2",
        "FAKE_ACP_MARKERS": str(tmp_path / "markers"),
    }
    proc = spawn(
        home,
        *("run", "Take notes", "--repo", str(repo), "--headless"),
        *("--provider", "replay", "--replay", str(cassette)),
        **env,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or _budget_asks(home),
            what="a budget question (or the run's end)",
        )
        asks = _budget_asks(home)
        assert asks, f"the run ended without stopping at its budget: {proc.communicate()}"
        (ask,) = asks
        assert ask["reason"].startswith("the run reached its budget: $0.0125 spent of $0.0100")
        doc = cli_json(home, "show", ask["run_id"])
        assert doc["status"] == "waiting"
        phases = {p["plan_id"]: p for p in doc["phases"]}
        assert phases["p1"]["status"] == p1_waiting
        assert phases["p2"]["status"] == "pending"  # nothing more starts before the answer
        assert [e["status"] for e in doc["executions"]] == [execution]
        cli(home, "reject", ask["id"], check=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out + err
    doc = cli_json(home, "show", ask["run_id"])
    assert "stopped at the run's budget: $0.0125 spent of $0.0100" in doc["error"]
    assert {p["plan_id"]: p["status"] for p in doc["phases"]} == {"p1": p1_stopped, "p2": "pending"}
    assert [e["status"] for e in doc["executions"]] == [execution]  # nothing ran after the stop
