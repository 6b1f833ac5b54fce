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

from collections import deque
from pathlib import Path
from typing import Any

from acp.schema import PromptResponse

from core.agents.detect import node_problem, which
from core.agents.presets import PRESETS, AgentPreset, preset
from core.errors import ConfigError
from core.executors.acp_session import AgentSession, AgentSettings, config_failure
from core.executors.base import AttemptResult, Executor, LogFn, PhaseJob
from core.executors.external import (
    ExternalAgentExecutor,
    changed_paths,
    changes_result,
    git_output,
    undo_agent_commits,
)
from core.executors.outside import changes_between, snapshot
from core.executors.prompts import build_external_prompt
from core.procenv import agent_env

_TAIL_LINES = 30
_STOP_REASONS = {
    "refusal": "the agent refused the task",
    "max_tokens": "the agent hit its model's token limit; raise the limit in the agent's settings",
    "max_turn_requests": "the agent hit its limit of model requests in one turn",
    "cancelled": "the agent cancelled its turn",
}


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
            return config_failure(
                f"the agent {self.agent} is not installed: `{self.command[0]}` is not on PATH; "
                f"{install}, or set execution.agent.command"
            )
        problem = await node_problem(program, self.preset, env)
        if problem is not None:
            return config_failure(f"the agent {self.agent} cannot run here: {problem}")
        host = job.host
        before = await snapshot(host.repo, host.home) if host is not None else None
        _, head_before = await git_output(job.worktree, "rev-parse", "HEAD")
        tail: deque[str] = deque(maxlen=_TAIL_LINES)

        def logged(line: str, level: str = "info") -> None:
            tail.append(line)
            log(line, level)

        session = AgentSession(
            self.agent, self.preset, self.settings, job, logged, [program, *self.command[1:]], env
        )
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
        return changes_result(changed, last, f"agent {self.agent}", log)

    async def _record_usage(
        self, job: PhaseJob, response: PromptResponse, session: AgentSession
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


__all__ = ["AcpExecutor", "AgentSettings"]
