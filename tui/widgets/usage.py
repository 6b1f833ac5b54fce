"""Token and cost totals of a run, per role, from the store's usage ledger."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from core.records import Usage


def usage_cost(usage: Usage) -> float | None:
    """The cost in USD of a usage row, when the ledger records one (issue 5 adds it)."""
    for name in ("cost_usd", "cost"):
        value = getattr(usage, name, None)
        if isinstance(value, int | float):
            return float(value)
    return None


def usage_text(rows: Sequence[Usage]) -> Text:
    """One line: tokens in and out per role, the total, and the cost when known."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not rows:
        text.append("tokens: none recorded yet", style="dim")
        return text
    roles: dict[str, list[int]] = {}
    for u in rows:
        tally = roles.setdefault(u.role, [0, 0, 0])
        tally[0] += u.prompt_tokens
        tally[1] += u.completion_tokens
        tally[2] += u.calls
    text.append("tokens ", style="bold")
    for role, (prompt, completion, calls) in roles.items():
        text.append(f"{role} ", style="cyan")
        text.append(f"{prompt:,} in / {completion:,} out ({calls} call{'s' * (calls != 1)})  ")
    total = sum(u.prompt_tokens + u.completion_tokens for u in rows)
    text.append("total ", style="bold")
    text.append(f"{total:,}")
    costs = [c for c in (usage_cost(u) for u in rows) if c is not None]
    text.append("  cost ", style="bold")
    text.append(f"${sum(costs):,.4f}" if costs else "not recorded", style="" if costs else "dim")
    return text


class UsageBar(Static):
    """The run's token and cost totals; refreshed with the rest of the run view."""

    DEFAULT_CSS = """
    UsageBar { height: auto; padding: 0 1; }
    """

    def show_usage(self, rows: Sequence[Usage]) -> None:
        self.update(usage_text(rows))
