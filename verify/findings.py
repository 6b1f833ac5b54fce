"""Findings as verifiers produce them, and stable fingerprints so one failure is recognised across attempts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

CATEGORIES = ("build", "test", "lint", "security", "custom")
SEVERITIES = ("major", "medium", "minor")


@dataclass(frozen=True)
class VerifyFinding:
    """One problem a verification tool reported; category and severity are the engine's plain string values.

    `snippet` is what identifies the problem apart from its position (the source line, a test id);
    `details` is longer tool output (a traceback, the output tail); `level` is the tool's own
    severity word (bandit HIGH, mypy error, SARIF warning) that config maps to `severity`.
    """

    category: str
    severity: str
    tool: str
    message: str
    rule: str | None = None
    path: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None
    snippet: str | None = None
    details: str | None = None
    help_url: str | None = None
    level: str | None = None
    key: str | None = None  # identity text chosen by the parser (a test id); not stored

    @property
    def identity(self) -> str:
        """What identifies the problem besides tool, rule and path: the parser's key, else the
        source line with the message, else the message alone (never the line number)."""
        if self.key:
            return self.key
        if self.snippet:
            return f"{self.snippet}\n{self.message}"
        return self.message

    @property
    def fingerprint(self) -> str:
        """This finding's fingerprint (see `fingerprint`) over its identity."""
        return fingerprint(self.tool, self.rule, self.path, self.identity)


def assign_fingerprints(findings: Iterable[VerifyFinding], roots: Iterable[str] = ()) -> list[str]:
    """Fingerprints of a verification's findings; a repeat of the same one gets an occurrence suffix.

    Two identical problems on two identical lines of one file stay two findings (like GitHub's
    occurrence count in primaryLocationLineHash), while each keeps its id when lines move.
    """
    roots = list(roots)
    seen: dict[str, int] = {}
    out: list[str] = []
    for f in findings:
        base = fingerprint(f.tool, f.rule, f.path, f.identity, roots=roots)
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            base = hashlib.sha1(f"{base}#{count}".encode(), usedforsecurity=False).hexdigest()[:16]
        out.append(base)
    return out


# Order matters: the specific shapes (paths, times, addresses) go before bare numbers.
_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Temporary directories differ on every attempt: /tmp/..., macOS /var/folders/..., pytest's basetemp.
    (re.compile(r"(?:/private)?/(?:tmp|var/folders|var/tmp)/\S*"), "<tmp>"),
    (re.compile(r"\S*pytest-of-[^/\s]+/pytest-\d+\S*"), "<tmp>"),
    # ISO dates and clock times.
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        ),
        "<ts>",
    ),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<ts>"),
    # Durations such as 0.12s, 350ms, 1.5 seconds, 2m.
    (
        re.compile(
            r"\b\d+(?:\.\d+)?\s?(?:ms|us|µs|ns|s|sec|secs|seconds?|m|min|mins|minutes?|h)\b",
            re.IGNORECASE,
        ),
        "<t>",
    ),
    # Memory addresses and object ids.
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,64}\b"), "<hex>"),
    # Decimal numbers and digit-only tokens (line numbers, counts, pids).
    (re.compile(r"\b\d+\.\d+\b"), "<n>"),
    (re.compile(r"\b\d+\b"), "<n>"),
)
_SPACE = re.compile(r"\s+")


def normalise_message(message: str, roots: Iterable[str] = ()) -> str:
    """The message with volatile parts (numbers, timings, addresses, temp paths, given roots) masked."""
    text = message
    for root in sorted((r for r in roots if r), key=len, reverse=True):
        text = text.replace(root.rstrip("/") + "/", "").replace(root.rstrip("/"), "<root>")
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return _SPACE.sub(" ", text).strip()


def fingerprint(
    tool: str, rule: str | None, path: str | None, message: str, *, roots: Iterable[str] = ()
) -> str:
    """A 16-hex-digit id of tool, rule, path and normalised message, equal for the same failure across attempts."""
    key = "|".join((tool, rule or "", path or "", normalise_message(message, roots)))
    return hashlib.sha1(key.encode("utf-8", errors="replace"), usedforsecurity=False).hexdigest()[
        :16
    ]
