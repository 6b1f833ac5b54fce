"""Who gave an answer or a command: `--as NAME`, else the OS user and git's `user.name`."""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass

from core.errors import InputError
from core.procenv import redact, safe_env

MAX_ACTOR_CHARS = 64
# The name recorded for answers `--yes` gave on its own (the run's `started`/`resumed` action
# says who passed it).
AUTO_APPROVER = "--yes"
# The run metadata key holding who started a run (stored with the run row, not as an action).
STARTED_BY = "started_by"


@dataclass(frozen=True)
class Actor:
    """A person as recorded with what they did; `name` is what listings show."""

    name: str
    os_user: str | None
    git_name: str | None

    def as_json(self) -> dict[str, str | None]:
        """The actor as a JSON object (exports, `--json` output)."""
        return {"name": self.name, "os_user": self.os_user, "git_name": self.git_name}


def checked_name(name: str) -> str:
    """A `--as NAME` value, stripped; InputError when it is empty, too long or holds control
    characters (it is shown in tables and stored)."""
    text = name.strip()
    if not text or len(text) > MAX_ACTOR_CHARS or any(ord(c) < 32 or c == "\x7f" for c in text):
        raise InputError(
            f"--as {name!r}: give a name of 1 to {MAX_ACTOR_CHARS} printable characters, "
            'e.g. --as alice or --as "Alice Smith"'
        )
    return text


def os_user() -> str | None:
    """The login name of this process's user, or None when the system cannot tell."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        return None


def git_user_name(cwd: str | None = None) -> str | None:
    """`git config user.name` as seen from `cwd` (default: the current folder), or None."""
    try:
        proc = subprocess.run(
            ["git", "config", "user.name"],
            cwd=cwd or os.getcwd(),
            env=safe_env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = proc.stdout.strip()
    return name or None


def current_actor(as_name: str | None = None, cwd: str | None = None) -> Actor:
    """The actor of this process: `as_name` when given, else `os_user (git name)`; blocking
    (it runs git), so async code calls it through asyncio.to_thread."""
    user, git_name = os_user(), git_user_name(cwd)
    if as_name is not None:
        name = checked_name(as_name)
    elif user and git_name and git_name != user:
        name = f"{user} ({git_name})"
    else:
        name = user or git_name or "unknown"
    return Actor(redact(name), user, git_name)
