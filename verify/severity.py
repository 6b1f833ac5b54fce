"""Severity of a finding from config: by tool and rule, else by the tool's own level, else by category."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

SEVERITY_RANK = {"major": 0, "medium": 1, "minor": 2}

# Used when the configuration names no severity for a category.
CATEGORY_SEVERITY: dict[str, str] = {
    "build": "major",
    "test": "major",
    "lint": "minor",
    "security": "major",
    "custom": "medium",
}


def _specificity(pattern: str) -> tuple[int, int]:
    """How specific a glob is: fewer wildcards first, then longer."""
    return (-(pattern.count("*") + pattern.count("?")), len(pattern))


def _best_match(text: str, table: Mapping[str, str]) -> str | None:
    """The value of the most specific glob in table matching text (case-insensitive)."""
    text = text.lower()
    matches = [p for p in table if fnmatch.fnmatchcase(text, p.lower())]
    if not matches:
        return None
    return table[max(matches, key=_specificity)]


@dataclass(frozen=True)
class SeverityPolicy:
    """Maps (category, tool, rule, level) to major, medium or minor.

    by_rule globs match "tool:rule" (e.g. "ruff:F*"), by_level globs match "tool:level" (e.g.
    "bandit:HIGH", "*:warning"); the most specific matching glob wins, rule before level before
    the category's severity.
    """

    by_category: Mapping[str, str] = field(default_factory=lambda: dict(CATEGORY_SEVERITY))
    by_rule: Mapping[str, str] = field(default_factory=dict)
    by_level: Mapping[str, str] = field(default_factory=dict)

    def severity(self, category: str, tool: str, rule: str | None, level: str | None) -> str:
        """The severity of one finding."""
        if rule:
            found = _best_match(f"{tool}:{rule}", self.by_rule)
            if found:
                return found
        if level:
            found = _best_match(f"{tool}:{level}", self.by_level)
            if found:
                return found
        return self.by_category.get(category) or CATEGORY_SEVERITY.get(category, "medium")
