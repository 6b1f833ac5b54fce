"""LLM settings that are wrong stop with a message naming the key, file or line, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_config
from config.paths import Paths
from config.secrets import api_key, read_secrets_file
from core.errors import ConfigError
from core.setup import preflight


def test_a_per_provider_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"llm\.concurrency\.openai: expected a value greater"):
        load_config(Paths(tmp_path), env={}, cli={"llm.concurrency": {"openai": 0}})


async def test_an_unknown_provider_lists_the_known_ones(tmp_path: Path) -> None:
    loaded = load_config(Paths(tmp_path), env={}, cli={"llm.provider": "mistral"})
    with pytest.raises(ConfigError, match="anthropic, ollama, openai, replay.*auto"):
        await preflight(loaded.config, loaded.catalog)


def test_secrets_file_problems_name_the_file_and_line_but_not_the_value(tmp_path: Path) -> None:
    missing = tmp_path / "none.env"
    with pytest.raises(ConfigError, match=f"{missing} does not exist"):
        api_key("OPENAI_API_KEY", missing, env={})
    bad = tmp_path / "bad.env"
    bad.write_text("OPENAI_API_KEY=sk-fine-value\nsk-a-pasted-key-without-a-name\n")
    with pytest.raises(ConfigError, match="line 2: expected NAME=value") as caught:
        read_secrets_file(bad)
    assert "sk-a-pasted" not in str(caught.value)
    good = tmp_path / "good.env"
    good.write_text('OPENAI_API_KEY="sk-from-file"\n')
    assert api_key("OPENAI_API_KEY", good, env={}) == "sk-from-file"
    assert api_key("OPENAI_API_KEY", good, env={"OPENAI_API_KEY": "sk-env"}) == "sk-env"
