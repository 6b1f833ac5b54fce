"""`orchestrator acp` driven by the SDK's client side in a real subprocess, on the replayed demo:
a whole run approved in the editor, a cancel mid-run, an answer from `orchestrator approve` that
wins over the editor's open permission request (which the editor then sees cancelled), a question
withdrawn by `orchestrator cancel`, `--yes`, a session loaded again after the editor left, and
budget questions answered in the editor by picking a raised limit."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process, text_block
from acp.client.connection import ClientSideConnection
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    AgentMessageChunk,
    AgentPlanUpdate,
    AgentThoughtChunk,
    AllowedOutcome,
    DeniedOutcome,
    PermissionOption,
    PromptResponse,
    RequestPermissionResponse,
    ToolCallProgress,
    ToolCallStart,
    ToolCallUpdate,
)

from core import acp_updates
from core.budget import raise_offers
from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo
from core.records import Intervention, InterventionKind, InterventionStatus, UsageTotals
from tests.clirun import ROOT, cli, cli_env, cli_json
from tests.waiting import DEFAULT_TIMEOUT, eventually

FAST = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
    "ORCHESTRATOR__EXECUTION__POLL_SECONDS": "0.1",
}

Decide = Callable[["Editor", ToolCallUpdate], Awaitable[RequestPermissionResponse]]


@dataclass
class Editor:
    """The client side of the test: records what the agent sends and answers permission requests."""

    decide: Decide
    updates: list[Any] = field(default_factory=list)
    asks: list[ToolCallUpdate] = field(default_factory=list)
    options: list[list[PermissionOption]] = field(default_factory=list)  # offered, per ask
    outcomes: list[str] = field(default_factory=list)
    ask_request_ids: list[int | str] = field(default_factory=list)
    cancelled_request_ids: list[int | str] = field(default_factory=list)
    conn: ClientSideConnection | None = None
    session_id: str = ""

    def observe(self, event: StreamEvent) -> None:
        message = event.message
        if event.direction is not StreamDirection.INCOMING:
            return
        if message.get("method") == "session/request_permission":
            self.ask_request_ids.append(message["id"])
        if message.get("method") == "$/cancel_request":
            self.cancelled_request_ids.append(message["params"]["requestId"])

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.updates.append(update)

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        self.asks.append(tool_call)
        self.options.append(options)
        response = await self.decide(self, tool_call)
        self.outcomes.append(response.outcome.outcome)
        return response

    def of(self, kind: type) -> list[Any]:
        return [u for u in self.updates if isinstance(u, kind)]

    def text(self) -> str:
        return "".join(u.content.text for u in self.of(AgentMessageChunk))


@asynccontextmanager
async def _acp(
    tmp_path: Path,
    editor: Editor,
    *extra: str,
    repo: Path | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Path, Path, asyncio.subprocess.Process]]:
    """`orchestrator acp` on the replayed demo, initialized; a new session in a demo repository
    unless `repo` is given (then the caller opens or loads one)."""
    home = tmp_path / "home"
    fresh = repo is None
    repo = repo or prepare_demo_repo(tmp_path / "demo")
    args = ["-m", "tui.cli", "acp", "--provider", "replay", "--replay", str(cassette_path())]
    with (tmp_path / "acp-stderr.log").open("ab") as stderr:
        async with spawn_agent_process(
            editor,
            sys.executable,
            *args,
            *extra,
            env=cli_env(home, **FAST, **(env or {})),
            cwd=ROOT,
            transport_kwargs={"stderr": stderr.fileno()},
            observers=[editor.observe],
        ) as (conn, proc):
            editor.conn = conn
            init = await asyncio.wait_for(
                conn.initialize(protocol_version=PROTOCOL_VERSION), DEFAULT_TIMEOUT
            )
            assert init.agent_info is not None and init.agent_info.name == "orchestrator"
            if fresh:
                session = await conn.new_session(cwd=str(repo), mcp_servers=[])
                editor.session_id = session.session_id
            yield home, repo, proc


async def _prompt(editor: Editor) -> PromptResponse:
    assert editor.conn is not None
    return await asyncio.wait_for(
        editor.conn.prompt(session_id=editor.session_id, prompt=[text_block(DEMO_TASK)]),
        DEFAULT_TIMEOUT * 2,
    )


def _intervention(tool_call: ToolCallUpdate) -> dict[str, Any]:
    assert isinstance(tool_call.raw_input, dict)
    return tool_call.raw_input


def _assert_stopped_truthfully(doc: dict[str, Any]) -> None:
    assert not [p for p in doc["phases"] if p["status"] == "in_progress"]
    assert not [e for e in doc["executions"] if e["status"] == "running"]
    assert not [i for i in doc["interventions"] if i["status"] == "pending"]


async def _approve(editor: Editor, tool_call: ToolCallUpdate) -> RequestPermissionResponse:
    return RequestPermissionResponse(
        outcome=AllowedOutcome(option_id="approve", outcome="selected")
    )


async def test_a_whole_demo_run_from_the_editor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    editor = Editor(decide=_approve)
    async with _acp(tmp_path, editor) as (home, _repo, _proc):
        assert editor.conn is not None
        plain = tmp_path / "plain"
        plain.mkdir()
        elsewhere = await editor.conn.new_session(cwd=str(plain), mcp_servers=[])
        with pytest.raises(RequestError, match=r"plain is not a git repository; run `git init`"):
            await editor.conn.prompt(session_id=elsewhere.session_id, prompt=[text_block("x")])
        response = await _prompt(editor)
    assert response.stop_reason == "end_turn", editor.text()
    # The client skips (and logs) stdout lines that are not JSON-RPC: there were none.
    assert "Error parsing JSON-RPC message" not in caplog.text

    plans = [[(e.content, e.status) for e in u.entries] for u in editor.of(AgentPlanUpdate)]
    assert [len(p) for p in plans] == [3] * len(plans) and len(plans) >= 4, plans
    assert [s for _, s in plans[0]] == ["pending"] * 3
    assert [c for c, _ in plans[0]] == [
        "phase-001: Validate quantities",
        "phase-002: Add CSV export",
        "phase-003: Add low-stock report",
    ]
    assert any(s == "in_progress" for plan in plans for _, s in plan)
    assert [s for _, s in plans[-1]] == ["completed"] * 3

    [ask] = editor.asks
    asked = _intervention(ask)
    assert asked["kind"] == "risk" and "phase-003" in asked["reason"]
    assert editor.outcomes == ["selected"] and editor.cancelled_request_ids == []
    settled = [u.status for u in editor.of(ToolCallProgress) if u.tool_call_id == ask.tool_call_id]
    assert settled == ["completed"]  # the question's tool call closes once answered

    started = [u.title for u in editor.of(ToolCallStart) if u.tool_call_id.startswith("attempt-")]
    assert sorted(started) == [
        "phase-001 attempt 1: Validate quantities",
        "phase-002 attempt 1: Add CSV export",
        "phase-002 attempt 2: Add CSV export",
        "phase-003 attempt 1: Add low-stock report",
    ]
    finished = [
        u.status for u in editor.of(ToolCallProgress) if u.tool_call_id.startswith("attempt-")
    ]
    assert sorted(finished) == ["completed", "completed", "completed", "failed"]

    run_id = asked["run_id"]
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    [risk] = doc["interventions"]
    assert (risk["status"], risk["note"]) == ("approved", "answered in the editor")
    summary = editor.of(AgentMessageChunk)[-1].content.text
    assert f"run {run_id} completed on branch {doc['branch']}" in summary
    assert "phases: phase-001 completed (1 attempt), phase-002 completed (2 attempts)" in summary
    assert "findings: 3 recorded" in summary and "cost: $0.0000 (" in summary
    assert "finding [major] test:" in editor.text()  # findings went out as they came


async def test_session_cancel_cancels_the_run(tmp_path: Path) -> None:
    async def cancel_instead(
        editor: Editor, tool_call: ToolCallUpdate
    ) -> RequestPermissionResponse:
        assert editor.conn is not None
        await editor.conn.cancel(session_id=editor.session_id)
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

    editor = Editor(decide=cancel_instead)
    async with _acp(tmp_path, editor) as (home, _repo, _proc):
        response = await _prompt(editor)
    assert response.stop_reason == "cancelled", editor.text()
    run_id = _intervention(editor.asks[0])["run_id"]
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "cancelled"
    _assert_stopped_truthfully(doc)
    assert [i["status"] for i in doc["interventions"]] == ["withdrawn"]
    assert f"run {run_id} cancelled" in editor.of(AgentMessageChunk)[-1].content.text


async def test_an_answer_from_the_cli_wins_and_the_editor_request_is_cancelled(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"

    async def approve_from_the_cli(
        editor: Editor, tool_call: ToolCallUpdate
    ) -> RequestPermissionResponse:
        ask_id = editor.ask_request_ids[-1]
        iid = _intervention(tool_call)["intervention_id"]
        await asyncio.to_thread(cli, home, "approve", iid, check=True)
        await eventually(
            lambda: ask_id in editor.cancelled_request_ids,
            what="the agent's $/cancel_request for the editor's open permission request",
        )
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

    editor = Editor(decide=approve_from_the_cli)
    async with _acp(tmp_path, editor) as (home_used, _repo, _proc):
        assert home_used == home
        response = await _prompt(editor)
        # The run may end before `orchestrator approve` (another process) has exited.
        await eventually(lambda: editor.outcomes, what="the editor's permission request to end")
    assert response.stop_reason == "end_turn", editor.text()
    assert editor.outcomes == ["cancelled"]
    assert editor.cancelled_request_ids == editor.ask_request_ids
    ask_updates = [
        u.status for u in editor.of(ToolCallProgress) if u.tool_call_id.startswith("ask-")
    ]
    assert ask_updates == ["completed"]
    run_id = _intervention(editor.asks[0])["run_id"]
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    [risk] = doc["interventions"]
    assert risk["status"] == "approved" and risk["note"] != "answered in the editor"


async def test_yes_answers_risk_itself_and_asks_nothing(tmp_path: Path) -> None:
    editor = Editor(decide=_approve)
    async with _acp(tmp_path, editor, "--yes", "--verbose") as (home, _repo, _proc):
        response = await _prompt(editor)
    assert response.stop_reason == "end_turn", editor.text()
    assert editor.asks == [] and editor.ask_request_ids == []
    thoughts = "".join(u.content.text for u in editor.of(AgentThoughtChunk))
    assert "attempt 2 of phase-002 started" in thoughts  # --verbose: the live log as thoughts
    [run] = cli_json(home, "runs")
    assert run["status"] == "completed"
    [risk] = cli_json(home, "show", run["id"])["interventions"]
    assert (risk["status"], risk["note"]) == ("approved", "auto-approved")


async def test_a_loaded_session_resumes_its_interrupted_run(tmp_path: Path) -> None:
    """The editor goes away while a run waits for it; a later `orchestrator acp` loads the session
    and its next prompt resumes that run, asking the same pending question again."""
    asked = asyncio.Event()

    async def go_away(editor: Editor, tool_call: ToolCallUpdate) -> RequestPermissionResponse:
        asked.set()
        await asyncio.Event().wait()  # never answered: the editor quits first
        raise AssertionError("unreachable")

    first = Editor(decide=go_away)
    async with _acp(tmp_path, first) as (home, repo, proc):
        assert first.conn is not None
        turn = asyncio.create_task(
            first.conn.prompt(session_id=first.session_id, prompt=[text_block(DEMO_TASK)])
        )
        await asyncio.wait_for(asked.wait(), DEFAULT_TIMEOUT)
        assert proc.stdin is not None
        proc.stdin.close()  # the editor closes the pipe
        assert await asyncio.wait_for(proc.wait(), DEFAULT_TIMEOUT) == 0
        turn.cancel()
        await asyncio.gather(turn, return_exceptions=True)
    pending = _intervention(first.asks[0])
    run_id = pending["run_id"]
    assert cli_json(home, "show", run_id)["status"] == "interrupted"

    second = Editor(decide=_approve)
    async with _acp(tmp_path, second, repo=repo) as (_home, _repo, _proc):
        assert second.conn is not None
        second.session_id = first.session_id
        await second.conn.load_session(cwd=str(repo), session_id=first.session_id, mcp_servers=[])
        assert f"run {run_id} interrupted" in second.text()
        assert f"send a prompt to resume run {run_id} here" in second.text()
        response = await _prompt(second)
    assert response.stop_reason == "end_turn", second.text()
    assert f"resuming run {run_id}" in second.text()
    assert [_intervention(a)["intervention_id"] for a in second.asks] == [
        pending["intervention_id"]
    ]
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    assert [i["status"] for i in doc["interventions"]] == ["approved"]


async def test_a_question_withdrawn_by_orchestrator_cancel_closes_the_editor_request(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"

    async def cancel_from_the_cli(
        editor: Editor, tool_call: ToolCallUpdate
    ) -> RequestPermissionResponse:
        ask_id = editor.ask_request_ids[-1]
        await asyncio.to_thread(cli, home, "cancel", _intervention(tool_call)["run_id"], check=True)
        await eventually(
            lambda: ask_id in editor.cancelled_request_ids,
            what="the agent's $/cancel_request for the withdrawn question",
        )
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))

    editor = Editor(decide=cancel_from_the_cli)
    async with _acp(tmp_path, editor) as (_home, _repo, _proc):
        response = await _prompt(editor)
        await eventually(lambda: editor.outcomes, what="the editor's permission request to end")
    assert response.stop_reason == "cancelled", editor.text()
    assert editor.cancelled_request_ids == editor.ask_request_ids
    ask_updates = [
        u.status for u in editor.of(ToolCallProgress) if u.tool_call_id.startswith("ask-")
    ]
    assert ask_updates == ["failed"]
    doc = cli_json(home, "show", _intervention(editor.asks[0])["run_id"])
    assert doc["status"] == "cancelled"
    _assert_stopped_truthfully(doc)
    assert [i["status"] for i in doc["interventions"]] == ["withdrawn"]


async def test_a_budget_question_is_answered_with_a_raise_picked_in_the_editor(
    tmp_path: Path,
) -> None:
    """The demo under a 4,000-token run budget: each budget question offers a +50% and a doubled
    limit (from the higher of the limit and the spend) and reject; the editor picks +50% first and
    doubles after, and the run goes on under each raised limit to completion."""

    async def pick(editor: Editor, tool_call: ToolCallUpdate) -> RequestPermissionResponse:
        kinds = [a for a in editor.asks if _intervention(a)["kind"] == "budget"]
        if _intervention(tool_call)["kind"] != "budget":
            return await _approve(editor, tool_call)
        choice = "raise-half" if len(kinds) == 1 else "raise-double"
        return RequestPermissionResponse(
            outcome=AllowedOutcome(option_id=choice, outcome="selected")
        )

    editor = Editor(decide=pick)
    budget = {"ORCHESTRATOR__EXECUTION__MAX_TOKENS": "4000"}
    async with _acp(tmp_path, editor, env=budget) as (home, _repo, _proc):
        response = await _prompt(editor)
    assert response.stop_reason == "end_turn", editor.text()

    asked = [(_intervention(a), o) for a, o in zip(editor.asks, editor.options, strict=True)]
    budget_asks = [(a, o) for a, o in asked if a["kind"] == "budget"]
    assert budget_asks, [a["kind"] for a, _ in asked]
    first, options = budget_asks[0]
    assert [o.option_id for o in options] == ["raise-half", "raise-double", "reject"]
    half, double = (
        re.fullmatch(r"Raise the run's budget to (\d+) tokens \((.+)\)", o.name)
        for o in options[:2]
    )
    assert half is not None and double is not None, [o.name for o in options]
    assert (half[2], double[2]) == ("+50%", "×2")
    spent = int(re.search(r"budget: (\d+) tokens spent of 4000 tokens", first["reason"])[1])  # type: ignore[index]
    base = max(4000, spent)
    assert (int(half[1]), int(double[1])) == (-(-base * 3 // 2), base * 2)
    [risk_options] = [o for a, o in asked if a["kind"] == "risk"]
    assert [o.option_id for o in risk_options] == ["approve", "reject"]

    doc = cli_json(home, "show", first["run_id"])
    assert doc["status"] == "completed"
    stored = {i["id"]: i for i in doc["interventions"]}
    answered = stored[first["intervention_id"]]
    assert answered["status"] == "approved"
    assert answered["note"] == f"answered in the editor; budget raised to {half[1]} tokens"
    assert all(i["status"] == "approved" for i in doc["interventions"])


def _budget_ask(metric: str, limit: float, scope: str = "run") -> Intervention:
    return Intervention(
        id="ibudget",
        run_id="rbudget",
        phase_id=None if scope == "run" else "p-1",
        kind=InterventionKind.BUDGET,
        reason="budget reached",
        action_required="raise the budget or stop",
        status=InterventionStatus.PENDING,
        note=None,
        created_at="2026-11-20T09:00:00.000000Z",
        payload={"scope": scope, "metric": metric, "limit": limit},
    )


def test_raise_offers_start_from_the_higher_of_limit_and_spend_and_round_up() -> None:
    spent = UsageTotals(cost_usd=0.0125, prompt_tokens=900, completion_tokens=300)
    cost = raise_offers(_budget_ask("cost_usd", 0.01), spent)
    assert [(o.option_id, o.label, o.value) for o in cost] == [
        ("raise-half", "+50%", 0.0188),  # 1.5 x the $0.0125 spent, rounded up to $0.0001
        ("raise-double", "×2", 0.025),
    ]
    assert cost[0].approve_args() == {"budget_usd": 0.0188}
    noisy = raise_offers(_budget_ask("cost_usd", 0.07), UsageTotals(cost_usd=0.07))
    assert [o.value for o in noisy] == [0.105, 0.14]  # not $0.1401 from float noise
    tokens = raise_offers(_budget_ask("tokens", 2000), spent)  # 1,200 spent: the limit is higher
    assert [o.approve_args() for o in tokens] == [{"budget_tokens": 3000}, {"budget_tokens": 4000}]
    zero = raise_offers(_budget_ask("cost_usd", 0), UsageTotals())  # a $0 limit, nothing spent
    assert [o.describe() for o in zero] == ["$1.5000", "$2.0000"]
    _, options = acp_updates.permission_request(_budget_ask("tokens", 2000, "p-1"), tokens)
    assert [o.name for o in options] == [
        "Raise phase p-1's budget to 3000 tokens (+50%)",
        "Raise phase p-1's budget to 4000 tokens (×2)",
        "Reject",
    ]
