"""LLM client benchmark against the fake provider servers; prints figures, asserts nothing.

Usage: python bench/llm.py [--tokens 5000] [--calls 50]

Figures, per provider (Ollama NDJSON, OpenAI SSE, Anthropic SSE):
- streamed pieces per second through the provider, the client and the text batcher, and how
  many batches reached the sink (the live log gets one line per batch, never one per token).
  Target: batches <= 1 per 50 ms of streaming plus one per 200 characters.
- client overhead per unstreamed call: wall time of `calls` sequential small calls.
- import time of the provider module (the SDKs are imported lazily, only when used).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.llm.anthropic import AnthropicProvider
from core.llm.base import ChatRequest, LLMProvider
from core.llm.client import LLMClient
from core.llm.ollama import OllamaProvider
from core.llm.openai_compat import OpenAICompatProvider
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI

MODEL = "bench-model"


def _request(content: str = "hi") -> ChatRequest:
    return ChatRequest(
        role="executor", model=MODEL, messages=[{"role": "user", "content": content}]
    )


async def _bench(name: str, provider: LLMProvider, server: Any, tokens: int, calls: int) -> None:
    client = LLMClient(provider, max_retries=0)
    text = "".join(f"tok{i % 1000:03d} " for i in range(tokens))
    server.stream_pieces = tokens
    if isinstance(server, FakeOllama):
        server.chat_answers = [text]
        server.default_answer = "ok"
    else:
        server.answers = [text]
        server.default_answer = "ok"
    batches: list[str] = []
    started = time.perf_counter()
    response = await client.chat(_request(), on_text=batches.append)
    streamed = time.perf_counter() - started
    assert response.content == text
    started = time.perf_counter()
    for _ in range(calls):
        await client.chat(_request())
    per_call = (time.perf_counter() - started) / calls
    await client.aclose()
    print(
        f"{name:<10} streamed {tokens} pieces in {streamed * 1000:.0f} ms "
        f"({tokens / streamed:,.0f} pieces/s) as {len(batches)} batches; "
        f"unstreamed call {per_call * 1000:.2f} ms"
    )


def _import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip()) * 1000


async def main(tokens: int, calls: int, with_imports: bool = True) -> None:
    with (
        FakeOllama({MODEL: 32768}) as ollama,
        FakeOpenAI([MODEL]) as openai,
        FakeAnthropic([MODEL], api_key="bench-key") as anthropic,
    ):
        await _bench("ollama", OllamaProvider(ollama.url, 30, 5), ollama, tokens, calls)
        await _bench(
            "openai",
            OpenAICompatProvider(
                openai.base_url, None, timeout_seconds=30, connect_timeout_seconds=5
            ),
            openai,
            tokens,
            calls,
        )
        await _bench(
            "anthropic",
            AnthropicProvider(
                anthropic.base_url, "bench-key", timeout_seconds=30, connect_timeout_seconds=5
            ),
            anthropic,
            tokens,
            calls,
        )
    if with_imports:
        for module in ("core.engine", "openai", "anthropic"):
            print(f"import {module}: {_import_ms(module):.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument(
        "--no-import-times", action="store_true", help="skip the import-time subprocesses"
    )
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.calls, not args.no_import_times))
