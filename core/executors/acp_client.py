"""Our side of an ACP session: files and terminals confined to the worktree, permissions, updates."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from acp import RequestError
from acp.schema import (
    AllowedOutcome,
    CreateTerminalResponse,
    DeclineElicitationResponse,
    DeniedOutcome,
    EnvVariable,
    KillTerminalResponse,
    PermissionOption,
    ReadTextFileResponse,
    ReleaseTerminalResponse,
    RequestPermissionResponse,
    TerminalExitStatus,
    TerminalOutputResponse,
    ToolCallUpdate,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)

from core.errors import EditError
from core.executors.acp_render import UpdateRenderer
from core.executors.acp_terminals import Terminals
from core.executors.base import AttemptHost, LogFn
from core.executors.edits import safe_target

Decision = Literal["allow", "deny", "ask"]
# Tool kinds `allow_edits` lets through without asking: changes to files and look-ups.
_EDIT_KINDS = frozenset({"edit", "delete", "move", "read", "search", "think"})
_KIND_WORDS = {
    "read": "read files",
    "edit": "edit files",
    "delete": "delete files",
    "move": "move or rename files",
    "search": "search files",
    "execute": "run a command",
    "think": "think",
    "fetch": "fetch from the network",
    "switch_mode": "switch its mode",
    "other": "use a tool",
}


def policy_decision(kind: str, policy: str, rules: dict[str, str]) -> Decision:
    """What `execution.agent.permissions` and its per-kind rules say about a tool kind."""
    rule = rules.get(kind)
    if rule in ("allow", "deny", "ask"):
        return rule  # type: ignore[return-value]
    if policy == "allow_all":
        return "allow"
    if policy == "deny":
        return "deny"
    if policy == "allow_edits" and kind in _EDIT_KINDS:
        return "allow"
    return "ask"


def permission_key(tool_call: ToolCallUpdate) -> str:
    """A key equal for the same request in a later attempt (kind, title, input), not for others."""
    raw = json.dumps(
        [tool_call.kind, tool_call.title, tool_call.raw_input],
        sort_keys=True,
        default=str,
    )
    return "perm-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _pick(options: list[PermissionOption], allow: bool) -> PermissionOption | None:
    """The option that allows (or rejects) once, else always; never an 'always' when a 'once' exists."""
    prefix = "allow" if allow else "reject"
    for kind in (f"{prefix}_once", f"{prefix}_always"):
        for option in options:
            if option.kind == kind:
                return option
    return None


def confined(worktree: Path, raw: str) -> Path:
    """The path an agent named, checked to stay inside the worktree; EditError otherwise."""
    path = Path(raw)
    if path.is_absolute():
        for root in (worktree, Path(os.path.realpath(worktree))):
            if path.is_relative_to(root):
                return safe_target(worktree, str(path.relative_to(root)) or ".")
        raise EditError(f"{raw}: outside the worktree {worktree}; refused")
    return safe_target(worktree, raw)


class StopAttempt(Exception):
    """Raised into the executor when the session must end early (input we cannot give, a cancel)."""


class OrchestratorClient:
    """The ACP client the agent talks to during one attempt."""

    def __init__(
        self,
        *,
        agent: str,
        worktree: Path,
        log: LogFn,
        host: AttemptHost | None,
        policy: str,
        rules: dict[str, str],
        env: dict[str, str],
    ) -> None:
        self.agent = agent
        self.worktree = worktree
        self.log = log
        self.host = host
        self.policy = policy
        self.rules = rules
        self.renderer = UpdateRenderer(log)
        self.terminals = Terminals(worktree, env)
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self.waiting_on_person = 0  # permission requests waiting for an answer right now
        self.busy = 0  # requests of the agent we are still working on (a command it waits for)
        # Set when the attempt must end: an error from the gate (cancel, --yes without a policy),
        # or a question we cannot answer. The executor re-raises or reports it.
        self.failure: BaseException | None = None
        self.stopped = asyncio.Event()

    def touch(self) -> None:
        self.last_activity = self.loop.time()

    def _stop(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.stopped.set()

    # ---- session/update ------------------------------------------------------------------------

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.touch()
        self.renderer.render(update)

    # ---- permissions ---------------------------------------------------------------------------

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        self.renderer.flush()
        self.renderer.remember(tool_call.tool_call_id, tool_call.title)
        # Some agents name the kind only in the tool call's updates, not in the request.
        kind = tool_call.kind or self.renderer.kind_of(tool_call.tool_call_id) or "other"
        title = tool_call.title or tool_call.tool_call_id
        decision = policy_decision(kind, self.policy, self.rules)
        allow_opt, reject_opt = _pick(options, True), _pick(options, False)
        if decision == "ask":
            if self.host is None:
                decision = "deny"
                self.log(f"permission for {title!r} refused: nobody can be asked here", "warning")
            else:
                decision = "allow" if await self._ask(tool_call, kind, title, options) else "deny"
        else:
            self.log(
                f"permission for {title!r} [{kind}] {decision}ed by execution.agent policy", "info"
            )
        chosen = allow_opt if decision == "allow" else reject_opt
        self.touch()
        if chosen is None:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(option_id=chosen.option_id, outcome="selected")
        )

    async def _ask(
        self, tool_call: ToolCallUpdate, kind: str, title: str, options: list[PermissionOption]
    ) -> bool:
        """Turn the request into a durable `agent_permission` intervention and wait for its answer."""
        assert self.host is not None
        where = ", ".join(loc.path for loc in tool_call.locations or [])
        allow_opt, reject_opt = _pick(options, True), _pick(options, False)
        words = _KIND_WORDS.get(kind, "use a tool")
        reason = f"agent {self.agent} asks to {words}: {title}" + (f" ({where})" if where else "")
        action = (
            f"approve: the agent may {words} ({allow_opt.name if allow_opt else 'allow'}); "
            f"reject: it is refused ({reject_opt.name if reject_opt else 'reject'}) and the agent "
            "carries on without it"
        )
        raw_input = json.dumps(tool_call.raw_input, default=str)[:2000]
        payload = {
            "agent": self.agent,
            "tool_call_id": tool_call.tool_call_id,
            "title": title,
            "tool_kind": kind,
            "locations": [loc.path for loc in tool_call.locations or []],
            "raw_input": raw_input,
            "options": [{"id": o.option_id, "name": o.name, "kind": o.kind} for o in options],
        }
        self.waiting_on_person += 1
        try:
            return await self.host.ask_permission(
                permission_key(tool_call), reason, action, payload
            )
        except Exception as exc:  # noqa: BLE001  NeedsInputError, RunCancelled: the attempt must stop
            self._stop(exc)
            return False
        finally:
            self.waiting_on_person -= 1
            self.touch()

    async def create_elicitation(self, message: str, mode: Any, **kwargs: Any) -> Any:
        """A question for the user: we cannot answer it, so the attempt stops and says what it was."""
        self._stop(
            StopAttempt(
                f"the agent {self.agent} asked for input the orchestrator cannot give: {message}"
            )
        )
        return DeclineElicitationResponse(action="decline")  # type: ignore[call-arg]

    async def complete_elicitation(self, elicitation_id: str, **kwargs: Any) -> None:
        self.touch()

    # ---- files ---------------------------------------------------------------------------------

    def _path(self, raw: str, verb: str) -> Path:
        self.touch()
        try:
            return confined(self.worktree, raw)
        except EditError as exc:
            self.log(f"refused: the agent tried to {verb} {raw} outside the worktree", "warning")
            raise RequestError.invalid_params({"path": raw, "reason": str(exc)}) from None

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> ReadTextFileResponse:
        target = self._path(path, "read")
        try:
            text = await asyncio.to_thread(target.read_text, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise RequestError.resource_not_found(path) from None
        except OSError as exc:
            raise RequestError.internal_error({"path": path, "reason": str(exc)}) from None
        if line is not None or limit is not None:
            lines = text.splitlines(keepends=True)
            start = max((line or 1) - 1, 0)
            end = start + limit if limit is not None else None
            text = "".join(lines[start:end])
        return ReadTextFileResponse(content=text)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> WriteTextFileResponse:
        target = self._path(path, "write")

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")

        await asyncio.to_thread(write)
        rel = target.relative_to(Path(os.path.realpath(self.worktree)))
        self.log(f"wrote {rel} ({len(content.splitlines())} lines)", "agent")
        return WriteTextFileResponse()

    # ---- terminals -----------------------------------------------------------------------------

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: list[EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **kwargs: Any,
    ) -> CreateTerminalResponse:
        folder = self.worktree if cwd is None else self._path(cwd, "run a command in")
        shown = " ".join([command, *(args or [])])
        self.log(f"$ {shown}", "agent")
        try:
            terminal_id = await self.terminals.create(
                command, args, {v.name: v.value for v in env or []}, folder, output_byte_limit
            )
        except OSError as exc:
            raise RequestError.internal_error({"command": command, "reason": str(exc)}) from None
        return CreateTerminalResponse(terminal_id=terminal_id)

    def _terminal(self, terminal_id: str) -> Any:
        self.touch()
        try:
            return self.terminals.get(terminal_id)
        except KeyError:
            raise RequestError.invalid_params({"terminalId": terminal_id}) from None

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> TerminalOutputResponse:
        terminal = self._terminal(terminal_id)
        code = terminal.proc.returncode
        status = None
        if code is not None:
            status = TerminalExitStatus(
                exit_code=code if code >= 0 else None, signal=None if code >= 0 else str(-code)
            )
        return TerminalOutputResponse(
            output=terminal.text, truncated=terminal.truncated, exit_status=status
        )

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> WaitForTerminalExitResponse:
        self._terminal(terminal_id)
        self.busy += 1
        try:
            terminal = await self.terminals.wait(terminal_id)
        finally:
            self.busy -= 1
            self.touch()
        code = terminal.proc.returncode or 0
        return WaitForTerminalExitResponse(
            exit_code=code if code >= 0 else None, signal=None if code >= 0 else str(-code)
        )

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> KillTerminalResponse:
        self._terminal(terminal_id)
        await self.terminals.kill(terminal_id)
        return KillTerminalResponse()

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> ReleaseTerminalResponse:
        self._terminal(terminal_id)
        await self.terminals.release(terminal_id)
        return ReleaseTerminalResponse()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        self.touch()

    def on_connect(self, conn: Any) -> None:
        pass
