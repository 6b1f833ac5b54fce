"""Environments for child processes without the orchestrator's secrets, and redaction of secrets in text."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping

# Substrings that mark a variable name as secret, matched case-insensitively anywhere in the name.
_SECRET_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "_AUTH")
# Name prefixes whose whole family belongs to model providers, clouds or the orchestrator itself.
_SECRET_PREFIXES = ("OPENAI_", "ANTHROPIC_", "AWS_", "ORCHESTRATOR")
_SECRET_NAMES = frozenset({"OLLAMA_API_KEY", "GITHUB_TOKEN"})
_MIN_REDACT_LENGTH = 6


@functools.lru_cache(maxsize=4096)  # a phase copies the environment several times
def is_secret_name(name: str) -> bool:
    """Tell whether an environment variable is kept from child processes (secrets and our own settings)."""
    upper = name.upper()
    if upper in _SECRET_NAMES or upper.startswith(_SECRET_PREFIXES):
        return True
    return any(part in upper for part in _SECRET_PARTS)


def holds_secret_value(name: str) -> bool:
    """Tell whether a variable's value is a secret to redact (our own settings, like paths, are not)."""
    upper = name.upper()
    return upper in _SECRET_NAMES or any(part in upper for part in _SECRET_PARTS)


def safe_env(
    extra_path: list[str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Copy the environment minus secret-named variables, with extra PATH dirs first, for agents and verifiers."""
    source = os.environ if base is None else base
    env = {name: value for name, value in source.items() if not is_secret_name(name)}
    if extra_path:
        current = env.get("PATH", "")
        parts = [str(p) for p in extra_path if str(p)]
        if current:
            parts.append(current)
        env["PATH"] = os.pathsep.join(parts)
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def agent_env(
    names: list[str] | tuple[str, ...], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """safe_env() plus the named variables a coding agent needs (its own credentials), never others."""
    source = os.environ if base is None else base
    env = safe_env(base=source)
    env.update({name: source[name] for name in names if source.get(name)})
    return env


# The last redactor made and the environment it was made from: the environment rarely changes
# between calls, and scanning it costs more than comparing it (a phase redacts several times).
_LAST_REDACTOR: tuple[tuple[tuple[str, str], ...], Callable[[str], str]] | None = None


def secret_redactor(env: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """A function that replaces the values of secret-named variables with "***", compiled once for hot paths."""
    global _LAST_REDACTOR
    source = os.environ if env is None else env
    seen = tuple(source.items())
    if _LAST_REDACTOR is not None and _LAST_REDACTOR[0] == seen:
        return _LAST_REDACTOR[1]
    redactor = _redactor_of(source)
    _LAST_REDACTOR = (seen, redactor)
    return redactor


def _redactor_of(source: Mapping[str, str]) -> Callable[[str], str]:
    """secret_redactor's work: collect the secret values and compile one pattern of them."""
    values = {
        value
        for name, value in source.items()
        if holds_secret_value(name) and len(value) >= _MIN_REDACT_LENGTH
    }
    if not values:
        return lambda text: text
    # Longest first, so a secret that contains another is replaced whole.
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    return lambda text: pattern.sub("***", text) if text else text


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """Replace the values of secret-named variables found in text with "***", so logs never leak them."""
    return secret_redactor(env)(text)
