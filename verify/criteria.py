"""Commands named in a phase's verification criteria, and whether configuration lets them run unasked."""

from __future__ import annotations

import fnmatch
import re

# "run: make check", "command: ./ci.sh", "$ pytest -q tests/test_x.py"
_PREFIXED = re.compile(r"^\s*(?:run|command|cmd)\s*:\s*(?P<cmd>\S.*?)\s*$", re.IGNORECASE)
_PROMPT = re.compile(r"^\s*\$\s+(?P<cmd>\S.*?)\s*$")
# "Run `pytest -q`", "`npm test` passes", "`make lint` succeeds", "`go test ./...` exits 0"
_RUN_QUOTED = re.compile(r"\b(?:run|running|execute|executing)\s+`(?P<cmd>[^`\n]+)`", re.IGNORECASE)
_QUOTED_PASSES = re.compile(
    r"`(?P<cmd>[^`\n]+)`\s+(?:passes|pass|succeeds|succeed|exits\s+(?:with\s+)?(?:0|zero)|"
    r"returns\s+(?:0|zero)|is\s+green)\b",
    re.IGNORECASE,
)
# Anything that lets one command line start another, redirect, or expand stays a question for a person.
_SHELL_META = re.compile(r"[;&|`$<>(){}\\\n\r]")


def criteria_commands(criteria: list[str]) -> list[str]:
    """The commands the criteria name, in order, without repeats."""
    found: list[str] = []
    for text in criteria:
        for pattern in (_PREFIXED, _PROMPT):
            match = pattern.match(text)
            if match:
                found.append(match.group("cmd"))
                break
        else:
            found += [m.group("cmd") for m in _RUN_QUOTED.finditer(text)]
            found += [m.group("cmd") for m in _QUOTED_PASSES.finditer(text)]
    out: list[str] = []
    for command in (" ".join(c.split()) for c in found):
        if command and command not in out:
            out.append(command)
    return out


def is_allowed(command: str, patterns: list[str]) -> bool:
    """Whether a command matches an allowed glob and holds no shell operator that could chain another."""
    text = " ".join(command.split())
    if not text or _SHELL_META.search(text):
        return False
    return any(fnmatch.fnmatchcase(text, " ".join(p.split())) for p in patterns if p.strip())
