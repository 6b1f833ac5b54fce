"""Token and cost totals per role, from the ledger's usage rows."""

from __future__ import annotations

from core.records import Usage
from tui.widgets.usage import usage_text


def test_tokens_per_role_and_free_models() -> None:
    rows = [
        Usage("executor", "ollama", "qwen2.5-coder:7b", 3000, 900, 3),
        Usage("executor", "ollama", "llama3.1:8b", 120, 45, 1),
        Usage("planner", "ollama", "qwen2.5-coder:7b", 1840, 612, 1),
    ]
    text = usage_text(rows).plain
    assert "executor 3,120 in / 945 out (4 calls)" in text
    assert "planner 1,840 in / 612 out (1 call)" in text
    assert "total 6,517" in text
    assert text.endswith("cost $0 (no priced model)")
    assert usage_text([]).plain == "tokens: none recorded yet"


def test_cost_is_summed_from_the_ledger() -> None:
    rows = [
        Usage("planner", "openai", "gpt", 1000, 200, 1, cost_usd=0.0125),
        Usage("executor", "openai", "gpt", 4000, 800, 2, cost_usd=0.05),
    ]
    assert usage_text(rows).plain.endswith("cost $0.0625")
