"""An executor that hands a phase to a coding agent over the Agent Client Protocol (ACP).

The agent starts in the phase's worktree in its own process group, with an environment without our
secrets but with its own credential variables. We answer `initialize` with file reads and writes
confined to the worktree and terminals that run there, open a session with the worktree as `cwd`,
send the phase prompt and log every `session/update` as readable lines. Permission requests become
durable `agent_permission` interventions (or follow `execution.agent.permissions`). A cancel sends
`session/cancel` and stops the process group after a grace period; a silent agent times out. The
changes are read from git afterwards, like any executor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, connect_to_agent, text_block
from acp.schema import (
    ClientCapabilities,
    FileSystemCapabilities,
    Implementation,
    PromptResponse,
)

from core.agents.detect import node_problem, which
from core.agents.presets import PRESETS, AgentPreset, preset
from core.errors import ConfigError
from core.executors.acp_client import OrchestratorClient, StopAttempt
from core.executors.base import AttemptResult, Executor, LogFn, PhaseJob
from core.executors.external import (
    ExternalAgentExecutor,
    changed_paths,
    git_output,
    group_gone,
    kill_group,
    undo_agent_commits,
)
from core.executors.outside import changes_between, snapshot
from core.executors.prompts import build_external_prompt
from core.procenv import agent_env, redact

_STREAM_LIMIT = 50 * 1024 * 1024  # one JSON-RPC line may carry a whole file
_TAIL_LINES = 30
_TICK_SECONDS = 0.5
_AUTH_REQUIRED = -32000
_STOP_REASONS = {
    "refusal": "the agent refused the task",
    "max_tokens": "the agent hit its model's token limit; raise the limit in the agent's settings",
    "max_turn_requests": "the agent hit its limit of model requests in one turn",
    "cancelled": "the agent cancelled its turn",
}
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


def _config_failure(error: str) -> AttemptResult:
    """A failure the next attempt cannot fix: not retried."""
    return AttemptResult(ok=False, summary=error.split(";")[0], error=error, retriable=False)


class AcpExecutor:
    """Executor that runs one ACP agent session per attempt in the phase's worktree."""

    name = "acp"

    def __init__(
        self,
        command: list[str],
        *,
        agent: str,
        preset: AgentPreset | None = None,
        settings: AgentSettings | None = None,
    ) -> None:
        if not command:
            raise ConfigError("execution.agent.command is empty")
        self.command = list(command)
        self.agent = agent
        self.preset = preset
        self.settings = settings or AgentSettings()

    @classmethod
    def from_config(cls, config: Any, llm: Any = None, model_def: Any = None) -> Executor:
        """Build from config.execution.agent; a preset in plain mode becomes the external executor."""
        cfg = config.execution.agent
        # With a command of its own, the name is only a label (and a preset's, when it names one).
        found = (
            PRESETS.get(cfg.name or "") if cfg.command else preset(cfg.name) if cfg.name else None
        )
        settings = AgentSettings(
            permissions=cfg.permissions,
            rules=dict(cfg.rules),
            env=tuple(cfg.env),
            timeout_seconds=float(cfg.timeout_seconds),
            silence_seconds=float(cfg.silence_seconds),
            startup_seconds=float(cfg.startup_seconds),
            cancel_grace_seconds=float(cfg.cancel_grace_seconds),
        )
        if cfg.command:
            name = cfg.name or Path(cfg.command[0]).name
            return cls(list(cfg.command), agent=name, preset=found, settings=settings)
        if found is None:
            raise ConfigError(
                "execution.executor is acp but no agent is named: set execution.agent.name "
                "(e.g. `orchestrator run ... --agent opencode`) or execution.agent.command"
            )
        mode = cfg.mode
        if mode == "auto":
            acp_here = bool(found.acp) and which(found.acp[0]) is not None
            plain_here = which(found.plain[0]) is not None
            mode = "plain" if not acp_here and plain_here else "acp"
        if mode == "plain" or not found.acp:
            return ExternalAgentExecutor(
                found.plain,
                prompt_via="arg",
                timeout_seconds=float(cfg.timeout_seconds),
                pass_env=[*found.env, *cfg.env],
            )
        return cls(found.acp, agent=found.name, preset=found, settings=settings)

    # ---- one attempt ---------------------------------------------------------------------------

    async def execute(self, job: PhaseJob, log: LogFn) -> AttemptResult:
        """Run one session; the files it changed in the worktree are the attempt's result."""
        names = (*(self.preset.env if self.preset else ()), *self.settings.env)
        env = agent_env(names)
        program = which(self.command[0], env)
        if program is None:
            install = f"install it with: {self.preset.install}" if self.preset else "install it"
            return _config_failure(
                f"the agent {self.agent} is not installed: `{self.command[0]}` is not on PATH; "
                f"{install}, or set execution.agent.command"
            )
        problem = await node_problem(program, self.preset, env)
        if problem is not None:
            return _config_failure(f"the agent {self.agent} cannot run here: {problem}")
        host = job.host
        before = await snapshot(host.repo, host.home) if host is not None else None
        _, head_before = await git_output(job.worktree, "rev-parse", "HEAD")
        tail: deque[str] = deque(maxlen=_TAIL_LINES)

        def logged(line: str, level: str = "info") -> None:
            tail.append(line)
            log(line, level)

        session = _Session(self, job, logged, [program, *self.command[1:]], env)
        try:
            result = await session.run(build_external_prompt(job))
        finally:
            if host is not None and before is not None:
                await self._check_outside(host, before, log)
        if result is not None:
            return result
        response = session.response
        assert response is not None
        await self._record_usage(job, response, session)
        await undo_agent_commits(job.worktree, head_before.strip(), log)
        changed = await changed_paths(job.worktree)
        last = "\n".join(tail)
        if response.stop_reason != "end_turn":
            why = _STOP_REASONS.get(response.stop_reason, f"stop reason {response.stop_reason}")
            return AttemptResult(
                ok=False,
                summary=why,
                error=f"{why}; its last output:\n{last}",
                changed_files=changed,
            )
        if not changed:
            return AttemptResult(
                ok=False,
                summary="no changes",
                error=f"the agent made no changes; its last output:\n{last}",
            )
        summary = f"agent {self.agent} changed {len(changed)} files: {', '.join(changed[:20])}"
        log(summary, "info")
        return AttemptResult(ok=True, summary=summary, changed_files=changed)

    async def _record_usage(
        self, job: PhaseJob, response: PromptResponse, session: _Session
    ) -> None:
        """Store the tokens and cost the agent reported (nothing when it reported neither)."""
        if job.host is None:
            return
        usage = response.usage
        cost_report = session.client.renderer.usage if session.client else None
        cost = 0.0
        report = cost_report.cost if cost_report is not None else None
        if report is not None and report.currency.upper() == "USD":
            cost = report.amount
        if usage is None and not cost:
            return
        await job.host.record_usage(
            f"acp:{self.agent}",
            self.agent,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            cost_usd=cost,
            duration_ms=session.duration_ms,
        )

    async def _check_outside(self, host: Any, before: Any, log: LogFn) -> None:
        """Report what the agent changed outside its worktree as one major finding."""
        after = await snapshot(host.repo, host.home)
        changes = changes_between(before, after, host.repo, host.home)
        if changes:
            log("the agent changed files outside its worktree:\n" + "\n".join(changes), "error")
            await host.report_finding(
                f"agent {self.agent} changed {len(changes)} path(s) outside its worktree",
                "\n".join(changes[:100]),
            )


class _Session:
    """One agent process and its ACP session; `run` returns a failed result or None on success."""

    def __init__(
        self,
        executor: AcpExecutor,
        job: PhaseJob,
        log: LogFn,
        argv: list[str],
        env: dict[str, str],
    ) -> None:
        self.x = executor
        self.job = job
        self.log = log
        self.argv = argv
        self.env = env
        self.settings = executor.settings
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
        self.log(f"starting agent {self.x.agent}: {' '.join(self.argv)}", "info")
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
            return _config_failure(f"could not start the agent {self.x.agent}: {exc}")
        stderr_pump = asyncio.create_task(self._pump_stderr())
        exited = asyncio.create_task(self.proc.wait())
        self.client = OrchestratorClient(
            agent=self.x.agent,
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
                if "logged in" in hint and self.x.preset is not None:
                    return f"{hint}: {self.x.preset.login}"
                return hint
        return ""

    async def _ended(self, ended: _Ended, client: OrchestratorClient) -> AttemptResult:
        s, agent = self.settings, self.x.agent
        if ended.reason == "stopped":
            failure = client.failure
            if isinstance(failure, StopAttempt):
                return _config_failure(
                    f"{failure}; log the agent in or configure it so it does not need to ask"
                )
            assert failure is not None
            raise failure  # the gate's NeedsInputError or RunCancelled: the run stops
        if ended.reason == "startup":
            return _config_failure(
                f"the agent {agent} did not answer {'session/new' if self.initialized else 'initialize'} "
                f"within {s.startup_seconds:g} s; is `{' '.join(self.x.command)}` an ACP agent? "
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
                return _config_failure(
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
            login = self.x.preset.login if self.x.preset else "log the agent in"
            return _config_failure(f"the agent {self.x.agent} is not logged in ({detail}); {login}")
        return AttemptResult(
            ok=False,
            summary=f"the agent answered with an error: {exc}",
            error=f"the agent {self.x.agent} answered with an error: {detail}; "
            f"its output:\n{self._output()}",
            retriable=self.initialized and self.session_id is not None,
        )
