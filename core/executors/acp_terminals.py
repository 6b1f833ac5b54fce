"""Terminals an ACP agent asks us to run: in the worktree, without our secrets, output capped."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from core.procenv import safe_env

_DEFAULT_OUTPUT_LIMIT = 1_000_000
_KILL_WAIT_SECONDS = 3.0


@dataclass
class Terminal:
    """One command started for the agent, with its output tail kept up to a byte limit."""

    proc: asyncio.subprocess.Process
    limit: int
    output: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    reader: asyncio.Task[None] | None = None

    def append(self, data: bytes) -> None:
        self.output += data
        if len(self.output) > self.limit:
            del self.output[: len(self.output) - self.limit]
            self.truncated = True

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")


def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the terminal's whole process group (it is a session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Terminals:
    """The terminals of one attempt; all are killed when the attempt ends."""

    def __init__(self, worktree: Path, env: dict[str, str] | None = None) -> None:
        self._worktree = worktree
        self._env = env if env is not None else safe_env()
        self._items: dict[str, Terminal] = {}
        self._ids = itertools.count(1)

    async def create(
        self,
        command: str,
        args: list[str] | None,
        env: dict[str, str],
        cwd: Path,
        output_byte_limit: int | None,
    ) -> str:
        """Start the command (a shell line when it has no args) and return its terminal id."""
        argv = [command, *args] if args else ["/bin/sh", "-c", command]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env={**self._env, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        terminal = Terminal(proc, output_byte_limit or _DEFAULT_OUTPUT_LIMIT)
        terminal.reader = asyncio.create_task(self._read(terminal))
        terminal_id = f"term-{next(self._ids)}"
        self._items[terminal_id] = terminal
        return terminal_id

    @staticmethod
    async def _read(terminal: Terminal) -> None:
        assert terminal.proc.stdout is not None
        while chunk := await terminal.proc.stdout.read(65536):
            terminal.append(chunk)

    def get(self, terminal_id: str) -> Terminal:
        try:
            return self._items[terminal_id]
        except KeyError:
            raise KeyError(f"no terminal {terminal_id!r}") from None

    async def wait(self, terminal_id: str) -> Terminal:
        """Wait until the command exits and its output is read."""
        terminal = self.get(terminal_id)
        await terminal.proc.wait()
        if terminal.reader is not None:
            await terminal.reader
        return terminal

    async def kill(self, terminal_id: str) -> None:
        terminal = self.get(terminal_id)
        if terminal.proc.returncode is None:
            _kill(terminal.proc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(terminal.proc.wait(), _KILL_WAIT_SECONDS)

    async def release(self, terminal_id: str) -> None:
        await self.kill(terminal_id)
        terminal = self._items.pop(terminal_id)
        if terminal.reader is not None:
            terminal.reader.cancel()
            await asyncio.gather(terminal.reader, return_exceptions=True)

    async def close(self) -> None:
        """Kill and forget every terminal (the attempt is over)."""
        for terminal_id in list(self._items):
            await self.release(terminal_id)
