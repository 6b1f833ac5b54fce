"""Token and cost totals of a run, per role, from the store's usage ledger."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from core.records import Usage


def usage_text(rows: Sequence[Usage]) -> Text:
    """Tokens in and out per role, the total, and the cost when known (wrapped, never cut)."""
    text = Text()
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
    cost = sum(u.cost_usd for u in rows)
    text.append("  cost ", style="bold")
    # Local and replayed models have no price in models.yaml, so their calls cost nothing.
    text.append(f"${cost:,.4f}" if cost else "$0 (no priced model)", style="" if cost else "dim")
    return text


class UsageBar(Static):
    """The run's token and cost totals; refreshed with the rest of the run view."""

    DEFAULT_CSS = """
    UsageBar { height: auto; padding: 0 1; }
    """

    def show_usage(self, rows: Sequence[Usage]) -> None:
        self.update(usage_text(rows))
