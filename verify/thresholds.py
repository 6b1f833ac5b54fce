"""Compare open finding counts with the configured limits and say which limits were exceeded and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ACTIONS = ("abort", "ask", "warn")


@dataclass
class Breach:
    """One exceeded limit: kind is "major", "medium" or "category:<name>", action is abort, ask or warn."""

    kind: str
    limit: int
    actual: int
    action: str


def check_thresholds(
    counts: Mapping[str, int],
    by_category: Mapping[str, int],
    *,
    max_major: int | None,
    max_medium: int | None,
    on_major_exceeded: str,
    on_medium_exceeded: str,
    per_category: Mapping[str, int],
) -> list[Breach]:
    """Every limit whose count is strictly above it (None means no limit); category limits use the major action."""
    breaches: list[Breach] = []
    major = int(counts.get("major", 0))
    medium = int(counts.get("medium", 0))
    if max_major is not None and major > max_major:
        breaches.append(Breach("major", max_major, major, on_major_exceeded))
    if max_medium is not None and medium > max_medium:
        breaches.append(Breach("medium", max_medium, medium, on_medium_exceeded))
    for category, limit in per_category.items():
        actual = int(by_category.get(category, 0))
        if limit is not None and actual > limit:
            breaches.append(Breach(f"category:{category}", limit, actual, on_major_exceeded))
    return breaches
