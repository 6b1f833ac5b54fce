"""Verification steps: the configured commands per category, and the tool name a command runs."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from verify.findings import CATEGORIES

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class VerifyStep:
    """One command to run and the finding category its problems belong to.

    The command may hold {report} (a file in the reports folder the tool writes its report to),
    {cache} (a cache folder outside the tree) and {python} (the interpreter beside `requires`).
    """

    category: str
    command: str
    tool: str | None = None  # the tool's name in findings; the command's program when None
    parser: str = "auto"  # a parser name, or auto to recognise the output
    requires: str | None = None  # a program that must be on PATH, else the step is skipped
    ok_exit_codes: tuple[int, ...] = (0,)
    source: str = "config"  # config, detected:<verifier>, or criteria
    report_ext: str = "json"

    @property
    def tool_label(self) -> str:
        """The tool name findings carry."""
        return self.tool or tool_name(self.command)


def _entry(category: str, entry: object) -> VerifyStep | None:
    """A step from one configured entry: a shell string or an object with command/parser/tool."""
    if isinstance(entry, str):
        return VerifyStep(category, entry.strip()) if entry.strip() else None
    get = entry.get if isinstance(entry, Mapping) else lambda k, d=None: getattr(entry, k, d)
    command = str(get("command", "") or "").strip()
    if not command:
        return None
    parser = str(get("parser", None) or "auto")
    return VerifyStep(
        category,
        command,
        tool=get("tool", None) or None,
        parser=parser,
        report_ext="xml" if parser == "junit" else "json",
    )


def configured_steps(commands: Mapping[str, Sequence[object]]) -> list[VerifyStep]:
    """Steps in the fixed order build, test, lint, security, custom (other categories after), blanks skipped."""
    order = [c for c in CATEGORIES if c in commands] + [c for c in commands if c not in CATEGORIES]
    steps = [
        _entry(category, entry) for category in order for entry in commands.get(category) or []
    ]
    return [s for s in steps if s is not None]


_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)?)?$")
_RUNNERS = {"npx": 1, "pnpx": 1, "bunx": 1, "uv": 2, "poetry": 2, "pipenv": 2, "hatch": 2, "pdm": 2}


def tool_name(command: str) -> str:
    """The program a command runs, as a basename: its first word that is not a VAR=value
    assignment, or the module of `python -m X`, or the tool of `npx X` / `uv run X` and kin."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = [w for w in words if w]
    while words and _ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words:
        return command.strip() or "command"
    program = os.path.basename(words[0]) or words[0]
    rest = words[1:]
    if _PYTHON.match(program) and len(rest) >= 2 and rest[0] == "-m":
        return rest[1]
    skip = _RUNNERS.get(program)
    if skip and len(rest) >= skip and (skip == 1 or rest[0] in ("run", "exec")):
        tool = rest[skip - 1]
        if not tool.startswith("-"):
            return os.path.basename(tool)
    return program
