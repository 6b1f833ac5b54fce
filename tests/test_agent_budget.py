"""Budgets count an agent executor's usage when its attempt ends: a run of the scripted ACP agent
pauses at its cost budget before the next phase starts, and a rejection stops it there."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.cassette import phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import make_repo
from tests.waiting import wait_until

FAKE_AGENT = Path(__file__).parent / "fakes" / "acp_agent.py"


def _budget_asks(home: Path) -> list[dict[str, Any]]:
    return [i for i in cli_json(home, "interventions", "--pending") if i["kind"] == "budget"]


def test_an_agents_reported_cost_pauses_the_run_at_its_budget_before_the_next_phase(
    tmp_path: Path,
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
        "ORCHESTRATOR__VERIFICATION__TEST": json.dumps(["test -f notes.txt"]),
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
        assert phases["p1"]["status"] in ("in_progress", "completed")
        assert phases["p2"]["status"] == "pending"  # the next phase waits for the answer
        assert [e["status"] for e in doc["executions"]] == ["succeeded"]
        cli(home, "reject", ask["id"], check=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out + err
    doc = cli_json(home, "show", ask["run_id"])
    assert "stopped at the run's budget: $0.0125 spent of $0.0100" in doc["error"]
    assert {p["plan_id"]: p["status"] for p in doc["phases"]}["p2"] == "pending"
    assert len(doc["executions"]) == 1
