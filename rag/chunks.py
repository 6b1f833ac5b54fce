"""A chunk of a repository file with the metadata retrieval filters and formats by."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property


def text_hash(text: str) -> str:
    """SHA-256 hex of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One piece of a file: a function, class, method, module stretch or line window.

    `symbol` is the dotted name (`Class.method`) and None for a line-window chunk; lines are
    1-based and inclusive; `content_hash` is the SHA-256 of `text`.
    """

    path: str
    language: str
    symbol: str | None
    kind: str
    start_line: int
    end_line: int
    text: str
    content_hash: str

    @cached_property
    def id(self) -> str:
        """Stable identity: same path, start line and text give the same id (computed once)."""
        raw = f"{self.path}\0{self.start_line}\0{self.content_hash}"
        return hashlib.sha1(raw.encode("utf-8", errors="surrogatepass")).hexdigest()

    def embed_text(self) -> str:
        """What the embedder sees: where the chunk lives and what it defines, then its code."""
        head = f"{self.path}" + (f" {self.symbol}" if self.symbol else "")
        return f"{head}\n{self.text}"

    @cached_property
    def embed_hash(self) -> str:
        """text_hash of embed_text(): the key of the chunk's vector in the cache."""
        return text_hash(self.embed_text())


def make_chunk(
    path: str,
    language: str,
    symbol: str | None,
    kind: str,
    start_line: int,
    end_line: int,
    text: str,
) -> Chunk:
    """A Chunk with its content hash computed."""
    return Chunk(path, language, symbol, kind, start_line, end_line, text, text_hash(text))
