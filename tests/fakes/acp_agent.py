"""A scripted ACP agent built on the SDK's agent side, run as a real subprocess by the tests.

Usage: python tests/fakes/acp_agent.py SCENARIO. Scenarios:
  edit        streams a message in pieces, a thought, a plan, an edit tool call with a diff, writes
              notes.txt through fs/write_text_file, reports usage and cost
  permission  asks to run a command (execute); writes decision.txt saying what it was told
  cancel      starts work, then waits for session/cancel and ends the turn as cancelled
  hang        answers initialize and session/new, then says nothing and never ends the prompt
  exit        prints a login error on stderr and exits at once
  escape      writes into the user's repository (FAKE_ACP_ESCAPE) behind our back, and notes.txt
  outside     asks us to read and write files outside the worktree, then writes notes.txt
  terminal    runs `pwd` and prints the environment through a terminal; writes terminal.txt
  elicit      asks the user a question (elicitation) we cannot answer
  auth        refuses session/new as not logged in

FAKE_ACP_MARKERS names a folder where the agent drops marker files (its pid, what it saw).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    RequestError,
    run_agent,
    start_edit_tool_call,
    start_tool_call,
    tool_diff_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)
from acp.helpers import plan_entry
from acp.schema import (
    AgentCapabilities,
    Cost,
    InitializeResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
    ToolCallUpdate,
    Usage,
    UsageUpdate,
)

SCENARIO = sys.argv[1] if len(sys.argv) > 1 else "edit"
MARKERS = Path(os.environ["FAKE_ACP_MARKERS"]) if os.environ.get("FAKE_ACP_MARKERS") else None


def mark(name: str, text: str = "") -> None:
    if MARKERS is not None:
        MARKERS.mkdir(parents=True, exist_ok=True)
        (MARKERS / name).write_text(text)


class ScriptedAgent:
    def __init__(self) -> None:
        self.conn: Any = None
        self.cwd = Path(".")
        self.cancelled = asyncio.Event()

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        mark("pid", str(os.getpid()))
        caps = kwargs.get("client_capabilities")
        mark(
            "capabilities",
            caps.model_dump_json(by_alias=True, exclude_none=True) if caps is not None else "{}",
        )
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION, agent_capabilities=AgentCapabilities()
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        if SCENARIO == "auth":
            raise RequestError.auth_required({"details": "run `fake-agent login` first"})
        self.cwd = Path(cwd)
        mark("cwd", cwd)
        return NewSessionResponse(session_id="sess-1")

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        mark("cancel-received", session_id)
        self.cancelled.set()

    async def say(self, session_id: str, text: str) -> None:
        await self.conn.session_update(session_id, update_agent_message_text(text))

    async def write(self, session_id: str, rel: str, text: str) -> None:
        await self.conn.write_text_file(
            session_id=session_id, path=str(self.cwd / rel), content=text
        )

    async def prompt(self, prompt: list[Any], session_id: str, **kwargs: Any) -> PromptResponse:
        mark("prompt", "".join(getattr(block, "text", "") for block in prompt))
        handler = getattr(self, "scenario_" + SCENARIO)
        return await handler(session_id)

    # ---- scenarios -----------------------------------------------------------------------------

    async def scenario_edit(self, sid: str) -> PromptResponse:
        for piece in ("I will add ", "the notes file.\nThen I ", "am done", ".\n"):
            await self.say(sid, piece)
        await self.conn.session_update(sid, update_agent_thought_text("notes need a title\n"))
        await self.conn.session_update(
            sid,
            update_plan(
                [
                    plan_entry("Write notes.txt", status="in_progress"),
                    plan_entry("Check it", status="pending"),
                ]
            ),
        )
        target = str(self.cwd / "notes.txt")
        await self.conn.session_update(
            sid, start_edit_tool_call("call-1", "Write notes.txt", target, "hello")
        )
        await self.write(sid, "notes.txt", "hello\nfrom the agent\n")
        await self.conn.session_update(
            sid,
            update_tool_call(
                "call-1",
                status="completed",
                content=[tool_diff_content(target, "hello\nfrom the agent\n", None)],
            ),
        )
        await self.conn.session_update(
            sid,
            UsageUpdate(
                session_update="usage_update",
                used=1200,
                size=100000,
                cost=Cost(amount=0.0125, currency="USD"),
            ),
        )
        await self.say(sid, "Done: notes.txt written.")
        return PromptResponse(
            stop_reason="end_turn",
            usage=Usage(total_tokens=1500, input_tokens=1200, output_tokens=300),
        )

    async def scenario_permission(self, sid: str) -> PromptResponse:
        await self.say(sid, "I need to run the tests.\n")
        await self.conn.session_update(
            sid,
            start_tool_call(
                "call-run",
                "Run pytest -q",
                kind="execute",
                status="pending",
                raw_input={"command": "pytest -q"},
            ),
        )
        answer = await self.conn.request_permission(
            session_id=sid,
            tool_call=ToolCallUpdate(
                tool_call_id="call-run",
                title="Run pytest -q",
                kind="execute",
                raw_input={"command": "pytest -q"},
            ),
            options=[
                PermissionOption(option_id="yes", name="Allow once", kind="allow_once"),
                PermissionOption(option_id="always", name="Always allow", kind="allow_always"),
                PermissionOption(option_id="no", name="Reject", kind="reject_once"),
            ],
        )
        outcome = answer.outcome
        chosen = getattr(outcome, "option_id", None) or outcome.outcome
        mark("permission-answer", chosen)
        status = "completed" if chosen == "yes" else "failed"
        await self.conn.session_update(sid, update_tool_call("call-run", status=status))
        await self.write(sid, "decision.txt", f"answer: {chosen}\n")
        return PromptResponse(stop_reason="end_turn")

    async def scenario_cancel(self, sid: str) -> PromptResponse:
        await self.say(sid, "working on it\n")
        mark("working")
        await self.cancelled.wait()
        await self.say(sid, "stopping as asked\n")
        mark("stopped-politely")
        return PromptResponse(stop_reason="cancelled")

    async def scenario_hang(self, sid: str) -> PromptResponse:
        mark("hanging")
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def scenario_escape(self, sid: str) -> PromptResponse:
        Path(os.environ["FAKE_ACP_ESCAPE"]).write_text("written behind the orchestrator's back\n")
        await self.write(sid, "notes.txt", "inside\n")
        return PromptResponse(stop_reason="end_turn")

    async def scenario_outside(self, sid: str) -> PromptResponse:
        refused = []
        for path in ("/etc/passwd", str(self.cwd / ".." / "escaped.txt")):
            try:
                await self.conn.read_text_file(session_id=sid, path=path)
            except RequestError as exc:
                refused.append(f"read {path}: {exc}")
        try:
            await self.conn.write_text_file(
                session_id=sid, path=str(self.cwd.parent / "escaped.txt"), content="x"
            )
        except RequestError as exc:
            refused.append(f"write: {exc}")
        mark("refused", "\n".join(refused))
        await self.write(sid, "notes.txt", "stayed inside\n")
        return PromptResponse(stop_reason="end_turn")

    async def scenario_terminal(self, sid: str) -> PromptResponse:
        term = await self.conn.create_terminal(session_id=sid, command="pwd; env | sort; echo done")
        exit_status = await self.conn.wait_for_terminal_exit(
            session_id=sid, terminal_id=term.terminal_id
        )
        output = await self.conn.terminal_output(session_id=sid, terminal_id=term.terminal_id)
        await self.conn.release_terminal(session_id=sid, terminal_id=term.terminal_id)
        await self.write(sid, "terminal.txt", f"exit {exit_status.exit_code}\n{output.output}")
        return PromptResponse(stop_reason="end_turn")

    async def scenario_elicit(self, sid: str) -> PromptResponse:
        from acp.schema import ElicitationFormSessionMode, ElicitationSchema

        mode = ElicitationFormSessionMode(
            session_id=sid, requested_schema=ElicitationSchema(type="object", properties={})
        )
        await self.conn.create_elicitation("Which database should I use?", mode)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def main() -> None:
    if SCENARIO == "exit":
        print("Error: No authentication information found. Please log in.", file=sys.stderr)
        sys.exit(3)
    await run_agent(ScriptedAgent())


if __name__ == "__main__":
    asyncio.run(main())
