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
    per_category: Mapping[str, int | tuple[int, str]],
) -> list[Breach]:
    """Every limit whose count is strictly above it (None means no limit).

    A category limit is a number (acting with the major action) or (limit, action).
    """
    breaches: list[Breach] = []
    major = int(counts.get("major", 0))
    medium = int(counts.get("medium", 0))
    if max_major is not None and major > max_major:
        breaches.append(Breach("major", max_major, major, on_major_exceeded))
    if max_medium is not None and medium > max_medium:
        breaches.append(Breach("medium", max_medium, medium, on_medium_exceeded))
    for category, value in per_category.items():
        if value is None:
            continue
        limit, action = value if isinstance(value, tuple) else (value, on_major_exceeded)
        actual = int(by_category.get(category, 0))
        if actual > limit:
            breaches.append(Breach(f"category:{category}", limit, actual, action))
    return breaches
