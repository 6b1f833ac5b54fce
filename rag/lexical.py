"""The BM25 index over an index's chunks (bm25s), saved beside the catalog.

Documents are the chunks' token strings from `rag.tokens.tokenize`; filters become a weight mask
over all documents so filtered results are exact, not over-fetched.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import shutil
from pathlib import Path

import numpy as np

from rag.tokens import tokenize


class LexicalIndex:
    """BM25 scores over chunks, with each chunk's id, path and language kept in order."""

    def __init__(
        self,
        model: object,
        ids: list[str],
        paths: list[str],
        languages: list[str],
        avgdl: float = 100.0,
    ):
        self.model = model
        self.ids = ids
        self.paths = paths
        self.languages = languages
        self.avgdl = avgdl
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}

    @functools.cached_property
    def file_codes(self) -> tuple[np.ndarray, list[str]]:
        """Each chunk's file as an integer code, and the file of each code (for ranking files)."""
        names, codes = np.unique(np.array(self.paths, dtype=object), return_inverse=True)
        return codes.astype(np.int64), [str(name) for name in names]

    def doc_freq(self, words: list[str]) -> dict[str, int]:
        """How many chunks hold each word (for scoring a worktree's overlay alike)."""
        vocab = getattr(self.model, "vocab_dict", {})
        scores = getattr(self.model, "scores", None)
        if not scores:
            return {}
        indptr = scores["indptr"]
        return {w: int(indptr[vocab[w] + 1] - indptr[vocab[w]]) for w in words if w in vocab}

    @classmethod
    def build(cls, rows: list[tuple[str, str, str, str]]) -> LexicalIndex:
        """Index (id, path, language, tokens) rows."""
        import bm25s

        ids = [r[0] for r in rows]
        corpus = [r[3].split() or ["_"] for r in rows]
        model = bm25s.BM25()
        if corpus:
            model.index(corpus, show_progress=False)
        avgdl = sum(map(len, corpus)) / len(corpus) if corpus else 100.0
        return cls(model, ids, [r[1] for r in rows], [r[2] for r in rows], avgdl)

    def save(self, folder: Path, generation: str) -> None:
        """Write the index to `folder` atomically (a new folder renamed over the old)."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self.model.save(str(tmp), show_progress=False)  # type: ignore[attr-defined]
        (tmp / "chunks.json").write_text(
            json.dumps(
                {
                    "generation": generation,
                    "ids": self.ids,
                    "paths": self.paths,
                    "languages": self.languages,
                    "avgdl": self.avgdl,
                }
            )
        )
        (tmp / "generation").write_text(generation)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    @staticmethod
    def saved(folder: Path, generation: str) -> bool:
        """Whether `folder` holds the index of this generation, without loading it (nor bm25s)."""
        try:
            return (folder / "generation").read_text() == generation
        except OSError:  # saved before the marker existed: its metadata says
            try:
                return bool(
                    json.loads((folder / "chunks.json").read_text()).get("generation") == generation
                )
            except (OSError, ValueError):
                return False

    @classmethod
    def load(cls, folder: Path, generation: str) -> LexicalIndex | None:
        """The saved index, or None when missing, unreadable or from another generation."""
        import bm25s

        try:
            meta = json.loads((folder / "chunks.json").read_text())
            if meta.get("generation") != generation:
                return None
            model = bm25s.BM25.load(str(folder)) if meta["ids"] else bm25s.BM25()
        except (OSError, ValueError, KeyError):
            return None
        return cls(model, meta["ids"], meta["paths"], meta["languages"], meta.get("avgdl", 100.0))

    def mask(
        self,
        path_glob: str | None,
        language: str | None,
        hidden: set[str] | frozenset[str] = frozenset(),
    ) -> np.ndarray | None:
        """1.0 for chunks passing the filters and not in a hidden path, 0.0 otherwise (None when
        nothing is filtered)."""
        if not path_glob and not language and not hidden:
            return None
        keep = np.ones(len(self.ids), dtype=np.float32)
        if hidden:
            keep *= np.fromiter((p not in hidden for p in self.paths), np.float32)
        if language:
            keep *= np.fromiter((lang == language for lang in self.languages), np.float32)
        if path_glob:
            allowed = {p for p in set(self.paths) if path_matches(p, path_glob)}
            keep *= np.fromiter((p in allowed for p in self.paths), np.float32)
        return keep

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray | None:
        """Every chunk's BM25 score for the query, in `ids` order (None when no word of the
        query is indexed)."""
        if not self.ids:
            return None
        words = [w for w in tokenize(query) if w in self.model.vocab_dict]  # type: ignore[attr-defined]
        if not words:
            return None
        scores: np.ndarray = self.model.get_scores(words)  # type: ignore[attr-defined]
        return scores * mask if mask is not None else scores

    def search(self, query: str, n: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Up to n (chunk id, BM25 score) pairs with a positive score, best first."""
        scores = self.scores(query, mask)
        return [] if scores is None else self.best(scores, n)

    def best(self, scores: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Up to n (chunk id, score) pairs of a `scores` array with a positive score, best first."""
        n = min(n, len(scores))
        if n <= 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]


def path_matches(path: str, glob: str) -> bool:
    """Glob on the repository-relative path; `**` spans folders, a bare name matches anywhere."""
    if fnmatch.fnmatchcase(path, glob):
        return True
    if glob.startswith("**/") and fnmatch.fnmatchcase(path, glob[3:]):
        return True
    if "/" not in glob:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], glob)
    return False
