"""Ranking signals over whole files and over the rarity of words, for hybrid retrieval.

BM25 over chunks finds the best single chunk, but the file that answers a question often shows
it in several middling chunks (a long module quoting an error message among many common words),
which never reach the chunk pool; `file_ranking` adds files ranked by their best chunks' summed
scores, each represented by its best chunk, as one more list for reciprocal rank fusion.
`term_weights` gives each query word its inverse document frequency, so a symbol or path that
shares only the repository's everyday words with the query ("type" in a type checker) gains little.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

FILE_CHUNKS = 3  # a file's score is the sum of its best chunks' scores, this many
FILE_POOL = 5000  # chunks (best first) looked at to rank files


def file_ranking(
    ids: list[str],
    files: tuple[np.ndarray, list[str]],
    scores: np.ndarray | None,
    n: int,
    extra: Iterable[tuple[str, str, float]] = (),
) -> list[str]:
    """Up to n chunk ids, one per file: files ranked by the summed scores of their FILE_CHUNKS
    best chunks, each given by its best chunk. `scores` are the index's chunk scores in `ids`
    order and `files` each chunk's file code with the file of each code
    (`LexicalIndex.file_codes`); `extra` adds (chunk id, path, score) of chunks outside the
    index (a worktree's overlay, whose files the index's scores leave out)."""
    ranked: dict[str, tuple[float, str]] = {}
    if scores is not None and len(scores):
        take = min(FILE_POOL, int(np.count_nonzero(scores > 0)))
        if take:
            codes, names = files
            top = np.argpartition(-scores, take - 1)[:take]
            order = np.lexsort((-scores[top], codes[top]))  # by file, best chunk first
            top = top[order]
            code, best = codes[top], scores[top]
            starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
            first = np.repeat(starts, np.diff(np.r_[starts, len(code)]))
            counted = np.where(np.arange(len(code)) - first < FILE_CHUNKS, best, 0.0)
            sums = np.add.reduceat(counted, starts)
            for g in np.argsort(-sums, kind="stable")[:n]:
                ranked[names[code[starts[g]]]] = (float(sums[g]), ids[top[starts[g]]])
    more: dict[str, list[tuple[float, str]]] = {}
    for chunk_id, path, score in extra:
        more.setdefault(path, []).append((score, chunk_id))
    for path, found in more.items():
        found.sort(reverse=True)
        ranked[path] = (sum(sc for sc, _ in found[:FILE_CHUNKS]), found[0][1])
    return [ranked[p][1] for p in sorted(ranked, key=lambda p: (-ranked[p][0], p))[:n]]


def term_weights(
    doc_freq: dict[str, int], documents: int, terms: Iterable[str]
) -> dict[str, float]:
    """BM25's inverse document frequency of each term (a word no chunk holds weighs most)."""
    return {
        t: math.log(1.0 + (documents - doc_freq.get(t, 0) + 0.5) / (doc_freq.get(t, 0) + 0.5))
        for t in terms
    }


def weighted_share(matched: set[str], weights: dict[str, float]) -> float:
    """The share of the query's total term weight that `matched` holds."""
    whole = sum(weights.values())
    return sum(weights.get(t, 0.0) for t in matched) / whole if whole > 0 else 0.0


PHRASE_WORDS = 3  # a query of at least this many words may be quoted from the code


def quoted_phrase(query: str) -> str | None:
    """The query as a phrase to look for verbatim (lower-cased, spaces collapsed), when it is
    long enough to be a quoted message rather than a word or a name."""
    words = query.lower().split()
    return " ".join(words) if len(words) >= PHRASE_WORDS else None


_JOINED = re.compile(r"""["']\s*[rbfuRBFU]{0,2}["']""")  # adjacent string literals: `"a " "b"`
_PLACEHOLDER = re.compile(r"%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdrifgex]|\{[^{}]*\}")


def as_message(text: str) -> str:
    """A chunk's text as its messages read: lower-cased, spaces collapsed, adjacent string
    literals joined and format placeholders (`%s`, `%(name)r`, `{name}`) removed."""
    joined = _JOINED.sub("", " ".join(text.split()))
    return " ".join(_PLACEHOLDER.sub("", joined).lower().split())


def holds_phrase(text: str, phrase: str) -> bool:
    """True when the chunk's text holds the phrase verbatim, ignoring case and line breaks, or
    as a message that the code builds from literals and placeholders."""
    low = text.lower()
    words = re.findall(r"[a-z0-9_]+", phrase)
    if words and max(words, key=len) not in low:  # most chunks: no need to look closer
        return False
    return phrase in " ".join(low.split()) or phrase in as_message(text)
