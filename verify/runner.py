"""Run one shell command in its own process group with a timeout, streamed lines and bounded output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from verify.capped import LINE_COST, CappedOutput

# How long a process group gets between SIGTERM and SIGKILL.
KILL_GRACE_SECONDS = 2.0
# How long the pipe may stay open after the shell exited (a background child holding it) before the group is killed.
DRAIN_GRACE_SECONDS = 2.0
_READ_CHUNK = 65536
_POLL_SECONDS = 0.01


@dataclass
class CommandResult:
    """What a command did: exit code (None when timed out), its merged output capped (head and
    tail, verify.capped), and timing."""

    command: str
    exit_code: int | None
    output: str
    timed_out: bool
    duration_seconds: float
    truncated: bool
    output_file: Path | None = None  # the whole output on disk, when asked for
    file_truncated: bool = False  # the file hit its cap

    @property
    def ok(self) -> bool:
        """Whether the command finished in time with exit code 0."""
        return not self.timed_out and self.exit_code == 0


class _FileSink:
    """Writes a command's whole output to a report file, up to a byte cap (the in-memory head and tail are separate)."""

    def __init__(self, path: Path | None, limit: int) -> None:
        self.fh = None
        self.limit = max(0, limit)
        self.written = 0
        self.truncated = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = path.open("wb")

    def add(self, chunk: bytes) -> None:
        """Append a chunk while under the cap; past it, remember that bytes were dropped."""
        if self.fh is None:
            return
        room = self.limit - self.written
        if room <= 0:
            self.truncated = True
            return
        if len(chunk) > room:
            chunk, self.truncated = chunk[:room], True
        self.fh.write(chunk)
        self.written += len(chunk)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


async def _pump(stream: asyncio.StreamReader, kept: CappedOutput, sink: _FileSink | None) -> None:
    """Read the merged output to EOF into the capped head and tail (which hands lines on) and the
    report file; an error of the line callback is raised once the output has ended."""
    while chunk := await stream.read(_READ_CHUNK):
        kept.add(chunk)
        if sink is not None:
            sink.add(chunk)
    kept.close()
    if kept.error is not None:
        raise kept.error


def _signal_group(pgid: int, sig: int) -> None:
    """Send a signal to a whole process group, ignoring a group that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    """Release the pipes of a process we stopped waiting for (asyncio offers no public way)."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


async def _leader_exit(proc: asyncio.subprocess.Process) -> int:
    """Wait for the shell itself to exit and return its code, even while a background child holds the pipe open.

    (`Process.wait()` also waits for the pipes to close, so it cannot tell these apart.)
    """
    if proc.returncode is not None:
        return proc.returncode
    pidfd = -1
    if hasattr(os, "pidfd_open"):
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(proc.pid)
    if pidfd >= 0:
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        loop.add_reader(pidfd, exited.set)
        try:
            await exited.wait()
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
    # The event loop's child watcher records the code a moment after the exit; without pidfd this is the wait.
    while proc.returncode is None:
        await asyncio.sleep(_POLL_SECONDS)
    return proc.returncode


async def _terminate_group(proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> None:
    """SIGTERM the process group, give it a grace period, then SIGKILL whatever is left."""
    try:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE_SECONDS)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)


async def run_command(
    command: str,
    cwd: Path,
    *,
    timeout: float,
    env: Mapping[str, str],
    max_output_bytes: int,
    on_line: Callable[[str], None] | None = None,
    output_file: Path | None = None,
    max_file_bytes: int = 200_000_000,
) -> CommandResult:
    """Run a shell command as its own process group; on timeout or cancellation the whole group is killed.

    Memory holds, and on_line sees, at most max_output_bytes of output: its head and tail around
    a line saying how many bytes were left out (verify.capped). output_file, when given, gets all
    of it up to max_file_bytes, so parsers can read a big report from disk.
    """
    started = time.monotonic()
    kept = CappedOutput(max_output_bytes, on_line, line_cost=LINE_COST if on_line else 0)
    sink = _FileSink(output_file, max_file_bytes) if output_file is not None else None
    try:
        result = await _run(command, cwd, timeout, env, kept, sink, started)
    finally:
        if sink is not None:
            sink.close()
    result.output_file = output_file
    return result


async def _run(
    command: str,
    cwd: Path,
    timeout: float,
    env: Mapping[str, str],
    kept: CappedOutput,
    sink: _FileSink | None,
    started: float,
) -> CommandResult:
    """The body of run_command once the output buffers exist."""
    try:
        proc = await asyncio.create_subprocess_shell(
            command,
            cwd=str(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        message = f"cannot start `{command}` in {cwd}: {exc}"
        if kept.on_line is not None:
            kept.on_line(message)
        return CommandResult(command, 127, message, False, time.monotonic() - started, False)

    assert proc.stdout is not None
    reader = asyncio.create_task(_pump(proc.stdout, kept, sink))
    exited = asyncio.create_task(_leader_exit(proc))
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except TimeoutError:
            timed_out = True
            await _terminate_group(proc, exited)
        # The shell is gone; a background child may still hold the pipe open.
        done, _ = await asyncio.wait({reader}, timeout=DRAIN_GRACE_SECONDS)
        if not done:
            _signal_group(proc.pid, signal.SIGKILL)
            done, _ = await asyncio.wait({reader}, timeout=KILL_GRACE_SECONDS)
        # Whatever the command left running in its group must not outlive it.
        _signal_group(proc.pid, signal.SIGKILL)
        if done:
            await reader  # re-raises an on_line error
            await proc.wait()
        else:
            reader.cancel()  # a process that left the group still holds the pipe; stop reading it
            _close_transport(proc)
        if not exited.done():
            await asyncio.wait({exited}, timeout=KILL_GRACE_SECONDS)
    except asyncio.CancelledError:
        _signal_group(proc.pid, signal.SIGKILL)
        exited.cancel()
        try:
            # The killed group closes the pipe at once; waiting lets asyncio release the transport cleanly.
            await asyncio.wait_for(asyncio.shield(reader), KILL_GRACE_SECONDS)
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
        except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001 - the cancel wins
            reader.cancel()
            _close_transport(proc)
        raise
    return CommandResult(
        command=command,
        exit_code=None if timed_out else proc.returncode,
        output=kept.text(),
        timed_out=timed_out,
        duration_seconds=time.monotonic() - started,
        truncated=kept.truncated,
        file_truncated=bool(sink and sink.truncated),
    )
