"""An executor that runs an external coding agent CLI inside the phase's worktree.

The command is an argv list whose items may hold the placeholders ``{prompt}`` (the prompt text),
``{prompt_file}`` (a file holding it, outside the worktree) and ``{worktree}``. Examples::

    ["copilot", "-p", "{prompt}"]
    ["claude", "-p", "{prompt}"]
    ["aider", "--yes", "--no-auto-commits", "--message", "{prompt}"]
    ["codex", "exec", "{prompt}"]

With ``prompt_via="stdin"`` the prompt is written to the agent's standard input; with "file" or
"arg" and no matching placeholder, the prompt file path or the prompt text is appended as the last
argument. The agent gets an environment without secrets and its own process group, so a timeout
can kill it and everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Literal

from core.errors import ConfigError
from core.executors.base import AttemptResult, LogFn, PhaseJob
from core.executors.prompts import build_external_prompt
from core.git import repo as gitrepo
from core.procenv import agent_env, redact, safe_env
from verify.capped import LINE_COST, MESSAGE_BYTES, CappedOutput, cap_text

PromptVia = Literal["file", "stdin", "arg"]
_TAIL_LINES = 20
_KILL_GRACE_SECONDS = 3.0


async def git_output(worktree: Path, *args: str) -> tuple[int, str]:
    """Run git in the worktree and return (exit code, stdout)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(worktree),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=safe_env(),
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", errors="replace")


async def changed_paths(worktree: Path) -> list[str]:
    """Paths that differ from HEAD in the worktree (modified, added, deleted or untracked)."""
    return await asyncio.to_thread(gitrepo.changed_files, worktree)


def kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Send a signal to the agent's whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def group_gone(pgid: int, limit: float = 2.0) -> None:
    """Wait (bounded) until no process of the group is left, so none outlives the attempt."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        await asyncio.sleep(0.01)


class ExternalAgentExecutor:
    """Executor that hands the phase to an external agent CLI which edits the worktree itself."""

    name = "external"

    def __init__(
        self,
        command: list[str],
        *,
        prompt_via: PromptVia = "stdin",
        timeout_seconds: float = 1800.0,
        max_output_bytes: int = 262_144,
        pass_env: list[str] | None = None,
    ) -> None:
        if not command:
            raise ConfigError(
                "execution.external.command is empty; set it to e.g. ['claude', '-p', '{prompt}'] "
                "or ['aider', '--yes', '--no-auto-commits', '--message', '{prompt}']"
            )
        if prompt_via not in ("file", "stdin", "arg"):
            raise ConfigError(
                f"execution.external.prompt_via: expected 'file', 'stdin' or 'arg', got {prompt_via!r}"
            )
        self.command = list(command)
        self.prompt_via: PromptVia = prompt_via
        self.timeout_seconds = timeout_seconds
        self.max_output_bytes = max_output_bytes
        self.pass_env = list(pass_env or [])  # the agent's own credential variables, passed through

    @classmethod
    def from_config(
        cls, config: Any, llm: Any = None, model_def: Any = None
    ) -> ExternalAgentExecutor:
        """Build from config.execution.external; output is kept as a verification step's is."""
        ext = config.execution.external
        return cls(
            list(ext.command or []),
            prompt_via=ext.prompt_via,
            timeout_seconds=float(ext.timeout_seconds),
            max_output_bytes=int(config.verification.max_output_bytes),
        )

    def _argv(self, prompt: str, prompt_file: Path, worktree: Path) -> list[str]:
        """The command with placeholders filled in (plain replacement, so other braces are kept)."""
        values = {
            "{prompt}": prompt,
            "{prompt_file}": str(prompt_file),
            "{worktree}": str(worktree),
        }
        argv = []
        for item in self.command:
            for key, value in values.items():
                item = item.replace(key, value)
            argv.append(item)
        joined = " ".join(self.command)
        if self.prompt_via == "file" and "{prompt_file}" not in joined:
            argv.append(str(prompt_file))
        elif self.prompt_via == "arg" and "{prompt}" not in joined:
            argv.append(prompt)
        return argv

    async def execute(self, job: PhaseJob, log: LogFn) -> AttemptResult:
        """Run the agent once in the worktree and report the files it changed."""
        prompt = build_external_prompt(job)
        private = Path(tempfile.mkdtemp(prefix="orchestrator-prompt-"))
        try:
            prompt_file = private / "prompt.md"
            prompt_file.write_text(prompt, encoding="utf-8")
            argv = self._argv(prompt, prompt_file, job.worktree)
            return await self._run(argv, prompt, job, log)
        finally:
            shutil.rmtree(private, ignore_errors=True)

    async def _run(self, argv: list[str], prompt: str, job: PhaseJob, log: LogFn) -> AttemptResult:
        """Start the agent, stream its output, enforce the timeout and inspect the worktree."""
        _, head_before = await git_output(job.worktree, "rev-parse", "HEAD")
        log(f"starting external agent: {argv[0]} (prompt via {self.prompt_via})", "info")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=job.worktree,
                env=agent_env(self.pass_env),
                start_new_session=True,
                stdin=asyncio.subprocess.PIPE
                if self.prompt_via == "stdin"
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                return AttemptResult(
                    ok=False,
                    summary="the prompt is too long for a command-line argument",
                    error="the prompt is too long for a command-line argument; set "
                    "execution.external.prompt_via to 'file' or 'stdin'",
                    retriable=False,
                )
            return AttemptResult(
                ok=False,
                summary="the external agent could not be started",
                error=f"could not start {argv[0]!r}: {exc}; install it or fix execution.external.command",
                retriable=False,
            )
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        timed_out = False
        try:
            feeder = self._feed(proc, prompt) if self.prompt_via == "stdin" else _noop()
            try:
                await asyncio.wait_for(
                    asyncio.gather(
                        feeder, self._pump(proc, log, tail, self.max_output_bytes), proc.wait()
                    ),
                    timeout=self.timeout_seconds,
                )
            except TimeoutError:
                timed_out = True
        finally:
            if proc.returncode is None:
                kill_group(proc, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), _KILL_GRACE_SECONDS)
            kill_group(proc, signal.SIGKILL)  # what is left of the group, leader included
            await proc.wait()
            await group_gone(proc.pid)
        last = cap_text("\n".join(tail), MESSAGE_BYTES)
        if timed_out:
            return AttemptResult(
                ok=False,
                summary=f"the external agent timed out after {self.timeout_seconds:g} s",
                error=f"the agent timed out after {self.timeout_seconds:g} s and was killed; "
                f"last output:\n{last}",
            )
        await undo_agent_commits(job.worktree, head_before.strip(), log)
        changed = await changed_paths(job.worktree)
        if proc.returncode != 0:
            return AttemptResult(
                ok=False,
                summary=f"the external agent exited with code {proc.returncode}",
                error=f"the agent exited with code {proc.returncode}; last output:\n{last}",
                changed_files=changed,
            )
        return changes_result(changed, last, "the external agent", log)

    @staticmethod
    async def _feed(proc: asyncio.subprocess.Process, prompt: str) -> None:
        """Write the prompt to the agent's stdin and close it; an agent that stops reading is fine."""
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(prompt.encode("utf-8"))
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()
            await proc.stdin.wait_closed()

    @staticmethod
    async def _pump(
        proc: asyncio.subprocess.Process, log: LogFn, tail: deque[str], limit: int
    ) -> None:
        """Stream the agent's output to the log capped (head and tail), keeping the last lines."""
        assert proc.stdout is not None

        def line(raw: str) -> None:
            text = redact(raw)
            tail.append(text)
            log(text, "agent")

        kept = CappedOutput(limit, line, line_cost=LINE_COST)
        while chunk := await proc.stdout.read(65536):
            kept.add(chunk)
        kept.close()
        if kept.error is not None:
            raise kept.error


async def _noop() -> None:
    """A placeholder coroutine when there is no stdin to feed."""


def changes_result(changed: list[str], last: str, who: str, log: LogFn) -> AttemptResult:
    """An agent's attempt judged by the files it changed: none is a failure quoting its output."""
    if not changed:
        return AttemptResult(
            ok=False,
            summary="no changes",
            error=f"the agent made no changes; its last output:\n{last}",
        )
    summary = f"{who} changed {len(changed)} files: {', '.join(changed[:20])}"
    log(summary, "info")
    return AttemptResult(ok=True, summary=summary, changed_files=changed)


async def undo_agent_commits(worktree: Path, head_before: str, log: LogFn) -> None:
    """Turn commits the agent made itself back into uncommitted changes, so the engine commits them."""
    if not head_before:
        return
    code, head_after = await git_output(worktree, "rev-parse", "HEAD")
    if code == 0 and head_after.strip() and head_after.strip() != head_before:
        await git_output(worktree, "reset", "--soft", head_before)
        log(
            "the agent committed by itself; its commits were turned back into changes",
            "warning",
        )
