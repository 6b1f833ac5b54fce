"""One ACP agent process and its session: start, initialize, session/new, prompt, watch, stop."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import deque
from dataclasses import dataclass
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, connect_to_agent, text_block
from acp.schema import (
    ClientCapabilities,
    FileSystemCapabilities,
    Implementation,
    PromptResponse,
)

from core.agents.presets import AgentPreset
from core.executors.acp_client import OrchestratorClient, StopAttempt
from core.executors.base import AttemptResult, LogFn, PhaseJob
from core.executors.external import group_gone, kill_group
from core.procenv import agent_env, redact

_STREAM_LIMIT = 50 * 1024 * 1024  # one JSON-RPC line may carry a whole file
_TAIL_LINES = 30
_TICK_SECONDS = 0.5
_AUTH_REQUIRED = -32000
_HINTS = (
    (
        re.compile(
            r"node(\.js)? (version|v?\d+)|requires node|unsupported engine|SyntaxError",
            re.IGNORECASE,
        ),
        "it may need a newer Node",
    ),
    (
        re.compile(
            r"log ?in|authenticat|api[ _-]?key|credential|unauthori[sz]ed|\b401\b", re.IGNORECASE
        ),
        "it looks not logged in",
    ),
    (
        re.compile(r"not a tty|not a terminal|raw mode|press enter|\(y/n\)|\[y/N\]", re.IGNORECASE),
        "it asked for input the orchestrator cannot give (it needs a terminal)",
    ),
)


@dataclass(frozen=True)
class AgentSettings:
    """The parts of `execution.agent` one attempt uses."""

    permissions: str = "ask"
    rules: dict[str, str] | None = None
    env: tuple[str, ...] = ()
    timeout_seconds: float = 1800.0
    silence_seconds: float = 300.0
    startup_seconds: float = 60.0
    cancel_grace_seconds: float = 5.0


class _Ended(Exception):
    """The session ended before its prompt finished; `reason` says why (timeout, silent, exited...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def config_failure(error: str) -> AttemptResult:
    """A failure the next attempt cannot fix: not retried."""
    return AttemptResult(ok=False, summary=error.split(";")[0], error=error, retriable=False)


class AgentSession:
    """One agent process and its ACP session; `run` returns a failed result, or None when the
    prompt was answered (then `response` holds the answer)."""

    def __init__(
        self,
        agent: str,
        preset: AgentPreset | None,
        settings: AgentSettings,
        job: PhaseJob,
        log: LogFn,
        argv: list[str],
        env: dict[str, str],
    ) -> None:
        self.agent = agent
        self.preset = preset
        self.job = job
        self.log = log
        self.argv = argv
        self.env = env
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.client: OrchestratorClient | None = None
        self.session_id: str | None = None
        self.response: PromptResponse | None = None
        self.stderr_tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.initialized = False
        self.duration_ms = 0.0

    async def run(self, prompt: str) -> AttemptResult | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.log(f"starting agent {self.agent}: {' '.join(self.argv)}", "info")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.job.worktree,
                env=self.env,
                start_new_session=True,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_STREAM_LIMIT,
            )
        except OSError as exc:
            return config_failure(f"could not start the agent {self.agent}: {exc}")
        stderr_pump = asyncio.create_task(self._pump_stderr())
        exited = asyncio.create_task(self.proc.wait())
        self.client = OrchestratorClient(
            agent=self.agent,
            worktree=self.job.worktree,
            log=self.log,
            host=self.job.host,
            policy=self.settings.permissions,
            rules=self.settings.rules or {},
            env=agent_env(()),
        )
        client = self.client
        assert self.proc.stdin is not None and self.proc.stdout is not None
        conn = connect_to_agent(
            client,
            self.proc.stdin,
            self.proc.stdout,
            use_unstable_protocol=True,  # elicitations, so a question we cannot answer is seen
            observers=[lambda _event: client.touch()],
        )
        prompt_task: asyncio.Task[Any] | None = None
        try:
            try:
                await self._step(
                    conn.initialize(
                        protocol_version=PROTOCOL_VERSION,
                        client_capabilities=ClientCapabilities(
                            fs=FileSystemCapabilities(read_text_file=True, write_text_file=True),
                            terminal=True,
                        ),
                        client_info=Implementation(name="agent-orchestrator", version="1"),
                    ),
                    exited,
                    self.settings.startup_seconds,
                )
                self.initialized = True
                new = await self._step(
                    conn.new_session(cwd=str(self.job.worktree), mcp_servers=[]),
                    exited,
                    self.settings.startup_seconds,
                )
                self.session_id = new.session_id
                prompt_task = asyncio.create_task(
                    conn.prompt(session_id=new.session_id, prompt=[text_block(prompt)])
                )
                self.response = await self._watch(prompt_task, exited)
                client.renderer.flush()
                return None
            except _Ended as ended:
                client.renderer.flush()
                await self._cancel(conn, prompt_task)
                return await self._ended(ended, client)
            except RequestError as exc:
                client.renderer.flush()
                return self._request_failed(exc)
            except asyncio.CancelledError:
                client.renderer.flush()
                self.log("cancelling the agent (session/cancel)", "warning")
                await self._cancel(conn, prompt_task)
                raise
        finally:
            self.duration_ms = (loop.time() - started) * 1000
            await self._shutdown(conn, exited, stderr_pump, prompt_task)

    async def _step(self, call: Any, exited: asyncio.Task[int], limit: float) -> Any:
        """An early request (initialize, session/new) bounded by the startup limit and the process."""
        task = asyncio.ensure_future(call)
        done, _ = await asyncio.wait({task, exited}, timeout=limit, return_when="FIRST_COMPLETED")
        if task in done:
            try:
                return task.result()  # raises the agent's RequestError
            except ConnectionError:
                raise _Ended("exited") from None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise _Ended("exited" if exited in done else "startup")

    async def _watch(self, prompt: asyncio.Task[Any], exited: asyncio.Task[int]) -> PromptResponse:
        """Wait for the prompt's answer while enforcing the attempt's limits."""
        assert self.client is not None
        client = self.client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout_seconds
        stop = asyncio.create_task(client.stopped.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {prompt, exited, stop}, timeout=_TICK_SECONDS, return_when="FIRST_COMPLETED"
                )
                if prompt in done:
                    try:
                        return prompt.result()
                    except ConnectionError:
                        raise _Ended("exited") from None
                if stop in done:
                    raise _Ended("stopped")
                if exited in done:
                    # Let the connection read what the agent wrote before it exited.
                    with contextlib.suppress(Exception):
                        return await asyncio.wait_for(asyncio.shield(prompt), 1.0)
                    raise _Ended("exited")
                now = loop.time()
                if client.waiting_on_person:
                    deadline += _TICK_SECONDS  # waiting for a person counts neither as silence
                    client.touch()  # nor against the attempt's time
                elif client.busy:
                    client.touch()  # a command the agent waits for is not the agent's silence
                elif now - client.last_activity > self.settings.silence_seconds:
                    raise _Ended("silent")
                if now > deadline:
                    raise _Ended("timeout")
        finally:
            stop.cancel()

    async def _cancel(self, conn: Any, prompt: asyncio.Task[Any] | None) -> None:
        """session/cancel, then wait up to the grace period for the turn to end."""
        if self.session_id is None or self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.cancel(session_id=self.session_id), 2.0)
        if prompt is not None and not prompt.done():
            await asyncio.wait({prompt}, timeout=self.settings.cancel_grace_seconds)

    async def _shutdown(
        self,
        conn: Any,
        exited: asyncio.Task[int],
        stderr_pump: asyncio.Task[None],
        prompt: asyncio.Task[Any] | None,
    ) -> None:
        """Close stdin, then stop the whole process group; no child outlives the attempt."""
        proc = self.proc
        assert proc is not None
        if self.client is not None:
            await self.client.terminals.close()
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if proc.returncode is None:
            await asyncio.wait({exited}, timeout=1.0)
        if proc.returncode is None:
            kill_group(proc, signal.SIGTERM)
            await asyncio.wait({exited}, timeout=3.0)
        kill_group(proc, signal.SIGKILL)
        await exited
        await group_gone(proc.pid)
        if prompt is not None and not prompt.done():
            prompt.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stderr_pump, 2.0)
        if prompt is not None:
            await asyncio.gather(prompt, return_exceptions=True)

    async def _pump_stderr(self) -> None:
        """The agent's stderr goes to the log (redacted) and its last lines are kept for errors."""
        assert self.proc is not None and self.proc.stderr is not None
        while raw := await self.proc.stderr.readline():
            line = redact(raw.decode("utf-8", errors="replace").rstrip())
            if line:
                self.stderr_tail.append(line)
                self.log(f"stderr: {line}", "agent")

    def _output(self) -> str:
        return "\n".join(self.stderr_tail) or "(nothing on stderr)"

    def _hint(self) -> str:
        text = "\n".join(self.stderr_tail)
        for pattern, hint in _HINTS:
            if pattern.search(text):
                if "logged in" in hint and self.preset is not None:
                    return f"{hint}: {self.preset.login}"
                return hint
        return ""

    async def _ended(self, ended: _Ended, client: OrchestratorClient) -> AttemptResult:
        s, agent = self.settings, self.agent
        if ended.reason == "stopped":
            failure = client.failure
            if isinstance(failure, StopAttempt):
                return config_failure(
                    f"{failure}; log the agent in or configure it so it does not need to ask"
                )
            assert failure is not None
            raise failure  # the gate's NeedsInputError or RunCancelled: the run stops
        if ended.reason == "startup":
            return config_failure(
                f"the agent {agent} did not answer {'session/new' if self.initialized else 'initialize'} "
                f"within {s.startup_seconds:g} s; is `{' '.join(self.argv)}` an ACP agent? "
                f"its output:\n{self._output()}"
            )
        if ended.reason == "exited":
            assert self.proc is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
            code = self.proc.returncode  # None: it closed its output but still runs
            hint = self._hint()
            if not self.initialized or hint:
                when = "at once" if not self.initialized else "during the session"
                return config_failure(
                    f"the agent {agent} exited {when} (code {code}){'; ' + hint if hint else ''}; "
                    f"its output:\n{self._output()}"
                )
            return AttemptResult(
                ok=False,
                summary=f"the agent exited with code {code}",
                error=f"the agent {agent} exited with code {code} before it finished; "
                f"its output:\n{self._output()}",
            )
        if ended.reason == "silent":
            return AttemptResult(
                ok=False,
                summary=f"the agent was silent for {s.silence_seconds:g} s",
                error=f"the agent {agent} sent nothing for {s.silence_seconds:g} s and was "
                "stopped (execution.agent.silence_seconds)",
            )
        return AttemptResult(
            ok=False,
            summary=f"the agent timed out after {s.timeout_seconds:g} s",
            error=f"the agent {agent} ran longer than {s.timeout_seconds:g} s and was stopped "
            "(execution.agent.timeout_seconds)",
        )

    def _request_failed(self, exc: RequestError) -> AttemptResult:
        """The agent answered a request with an error: not logged in, or something else it said."""
        detail = f"{exc}" + (f" ({exc.data})" if exc.data else "")
        if exc.code == _AUTH_REQUIRED or "auth" in str(exc).lower():
            login = self.preset.login if self.preset else "log the agent in"
            return config_failure(f"the agent {self.agent} is not logged in ({detail}); {login}")
        return AttemptResult(
            ok=False,
            summary=f"the agent answered with an error: {exc}",
            error=f"the agent {self.agent} answered with an error: {detail}; "
            f"its output:\n{self._output()}",
            retriable=self.initialized and self.session_id is not None,
        )
