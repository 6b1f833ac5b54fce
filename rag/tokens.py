"""The lexical tokenizer: words of code and prose with identifiers split into their parts.

`parse_http_response`, `parseHttpResponse` and `http.parse.response` all yield the parts
`parse`, `http`, `response`; a compound identifier also yields itself (lowercased, e.g.
`parse_http_response`) so an exact identifier match scores higher than scattered parts.
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARTS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "that",
        "the",
        "then",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "without",
        "should",
        "must",
        "can",
        "will",
        "use",
        "used",
        "using",
        "make",
        "makes",
        "new",
        "all",
        "any",
        "each",
        "not",
        "no",
        "there",
        "their",
        "them",
        "these",
        "those",
        "get",
        "gets",
        "set",
        "sets",
        "self",
        "cls",
        "def",
        "return",
        "none",
        "true",
        "false",
    ]
)


def split_identifier(word: str) -> list[str]:
    """The lowercase parts of one identifier (snake_case, camelCase, digits)."""
    return [p.lower() for p in _PARTS.findall(word)]


def _word_tokens(word: str, drop_stopwords: bool) -> tuple[str, ...]:
    """The tokens of one identifier: itself when compound, then its parts."""
    parts = _PARTS.findall(word)
    out: list[str] = []
    if len(parts) > 1:
        out.append(word.lower().strip("_"))
    for part in parts:
        low = part.lower()
        if len(low) > 1 and not (drop_stopwords and low in STOPWORDS):
            out.append(low)
    return tuple(out)


# Identifiers repeat a lot in code, so each one is split once per process (bounded memory).
_SEEN: dict[str, tuple[str, ...]] = {}
_SEEN_MAX = 500_000


def tokenize(text: str, *, drop_stopwords: bool = True) -> list[str]:
    """Lexical tokens of a text: identifier parts, plus each compound identifier whole."""
    if not drop_stopwords:
        return [t for word in _IDENT.findall(text) for t in _word_tokens(word, False)]
    seen = _SEEN
    if len(seen) > _SEEN_MAX:
        seen.clear()
    out: list[str] = []
    extend = out.extend
    for word in _IDENT.findall(text):
        tokens = seen.get(word)
        if tokens is None:
            tokens = seen[word] = _word_tokens(word, True)
        extend(tokens)
    return out
