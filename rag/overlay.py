"""A worktree's view of its repository's index: the files it changed, held in memory.

A run's worktrees share the index of the repository they were made from (content-addressed
chunks, one vector collection). What a worktree changed relative to the snapshot that index was
built from (`git diff` against the indexed commit, its untracked files, and files that were dirty
in the repository when it was indexed) is chunked here and searched beside the shared index,
hiding the shared index's copies of those paths. Nothing is written per worktree, so there is
nothing to clean, and one run never sees another run's changes.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.catalog import StoredChunk
from rag.chunks import Chunk
from rag.errors import NotARepositoryError
from rag.files import FileSelector, content_reason, decode
from rag.tokens import tokenize

Counts = dict[str, int]
INLINE_OVERLAY_CHUNKS = (
    64  # new vectors of a worktree's changed files embedded per refresh (~2 s of MiniLM)
)


def worktree_roots(path: Path) -> tuple[Path, Path | None]:
    """(working-tree root holding `path`, the repository's main working tree when that root is a
    linked worktree of it, else None), from one git call; NotARepositoryError outside git."""
    linked = _linked_worktree_roots(path)
    if linked is not None:
        return linked
    proc = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel", "--git-dir", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 3:
        raise NotARepositoryError(
            f"{path} is not inside a git repository; run `git init` there or pass the repository root"
        )
    root = Path(lines[0]).resolve()
    git_dir, common = (Path(path, line).resolve() for line in lines[1:])
    return _roots_of(root, git_dir, common)


def _roots_of(root: Path, git_dir: Path, common: Path) -> tuple[Path, Path | None]:
    if git_dir == common or common.name != ".git":
        return root, None  # the main worktree itself, or a bare repository's worktree
    main = common.parent
    return root, main if main.is_dir() and main != root else None


def _linked_worktree_roots(path: Path) -> tuple[Path, Path | None] | None:
    """worktree_roots of the root of a linked worktree read from its `.git` file, as git reads
    it, without starting git (a run asks this of every new phase worktree); None when `path` is
    not such a root or anything looks unusual, so git answers instead."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_COMMON_DIR"):
        return None
    try:
        root = path.resolve()
        head = (root / ".git").read_text(encoding="utf-8").splitlines()
        if len(head) != 1 or not head[0].startswith("gitdir: "):
            return None
        git_dir = (root / head[0][len("gitdir: ") :]).resolve()
        # git's own check that the worktree's record points back at this folder
        back = (git_dir / "gitdir").read_text(encoding="utf-8").strip()
        if (git_dir / Path(back)).resolve() != root / ".git":
            return None
        commondir = (git_dir / "commondir").read_text(encoding="utf-8").strip()
        common = (git_dir / commondir).resolve()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (common / "HEAD").is_file():
        return None
    return _roots_of(root, git_dir, common)


def changed_paths(root: Path, base_commit: str) -> set[str]:
    """Paths of `root`'s working tree that differ from `base_commit`, and untracked ones."""
    # Both git calls run at once: each costs milliseconds of process start on a busy machine.
    procs = [
        subprocess.Popen(
            ["git", *args], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        for args in (
            ["diff", "--name-only", "-z", "--no-renames", base_commit, "--"],
            ["ls-files", "-z", "--others", "--exclude-standard"],
        )
    ]
    out: set[str] = set()
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode == 0:
            out.update(p for p in stdout.decode("utf-8", "surrogateescape").split("\0") if p)
    return out


@dataclass
class Overlay:
    """The chunks of a worktree's changed files, with their lexical tokens and vectors."""

    root: Path
    signature: tuple[object, ...]  # the changed files' stats and the shared index's generation
    hidden: set[str]  # paths whose shared-index chunks this worktree does not see
    chunks: list[Chunk] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    counts: list[Counts] = field(default_factory=list)  # per chunk: token -> occurrences
    vectors: np.ndarray | None = None  # one row per chunk (zeros where not embedded yet)
    embedded: list[bool] = field(default_factory=list)
    _shadowed: int | None = None

    @property
    def paths(self) -> set[str]:
        return {c.path for c in self.chunks}

    def rows(self) -> dict[str, StoredChunk]:
        return {
            c.id: StoredChunk(
                c.id, c.path, c.language, c.symbol, c.kind, c.start_line, c.end_line, c.text, done
            )
            for c, done in zip(self.chunks, self.embedded, strict=True)
        }

    def shadowed(self, base_paths: list[str]) -> int:
        """How many of the shared index's chunks this overlay hides (counted once)."""
        if self._shadowed is None:
            self._shadowed = sum(1 for p in base_paths if p in self.hidden) if self.hidden else 0
        return self._shadowed

    @property
    def pending(self) -> int:
        return self.embedded.count(False)

    def lexical(
        self, query: str, df: dict[str, int], docs: int, avgdl: float
    ) -> list[tuple[str, float]]:
        """BM25 of the overlay's chunks with the shared index's document statistics, so their
        scores compare with the shared index's (k1 1.5, b 0.75 as bm25s uses)."""
        words = tokenize(query)
        out: list[tuple[str, float]] = []
        for chunk, tokens, counts in zip(self.chunks, self.tokens, self.counts, strict=True):
            score = 0.0
            for w in words:
                tf = counts.get(w, 0)
                if not tf:
                    continue
                n = df.get(w, 0) + 1
                idf = math.log(1 + (docs - n + 0.5) / (n + 0.5))
                score += idf * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * len(tokens) / max(avgdl, 1)))
            if score > 0:
                out.append((chunk.id, score))
        out.sort(key=lambda item: -item[1])
        return out

    def nearest(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        if self.vectors is None or not any(self.embedded):
            return []
        sims = self.vectors @ vector
        order = [i for i in np.argsort(-sims) if self.embedded[i]][:n]
        return [(self.chunks[i].id, float(sims[i])) for i in order]


def token_counts(tokens: list[str]) -> Counts:
    """How often each token occurs in a chunk's tokens."""
    counts: Counts = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    return counts


def stat_signature(root: Path, paths: set[str]) -> tuple[tuple[str, int, int], ...]:
    """What changed files look like on disk: (path, size, mtime) of each, -1 when gone."""
    out = []
    for path in sorted(paths):
        try:
            st = os.stat(root / path)
            out.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((path, -1, -1))
    return tuple(out)


class OverlayMemo:
    """What overlays learned about changed files, kept across the worktrees of a repository:
    a run's phase worktrees share most of their changed files, so each new overlay only reads
    and hashes them, and chunks and tokenizes only content it has not seen."""

    LIMIT = 20_000  # entries of each kind before the memo starts over

    def __init__(self) -> None:
        self.reasons: dict[str, str | None] = {}  # path -> why the selector skips it, or None
        self.files: dict[tuple[str, str], tuple[list[Chunk], list[list[str]], list[Counts]]] = {}

    def reason(self, selector: FileSelector, path: str) -> str | None:
        if path not in self.reasons:
            if len(self.reasons) > self.LIMIT:
                self.reasons.clear()
            self.reasons[path] = selector.path_reason(path)
        return self.reasons[path]

    def pieces(
        self, path: str, file_hash: str, text: str, chunker: object
    ) -> tuple[list[Chunk], list[list[str]], list[Counts]]:
        """The file's chunks, each chunk's lexical tokens and how often each token occurs."""
        key = (path, file_hash)
        found = self.files.get(key)
        if found is None:
            chunks: list[Chunk] = chunker(path, file_hash, text)  # type: ignore[operator]
            tokens = [
                tokenize(c.symbol or "") + tokenize(c.path) + tokenize(c.text) for c in chunks
            ]
            if len(self.files) > self.LIMIT:
                self.files.clear()
            found = self.files[key] = (chunks, tokens, [token_counts(t) for t in tokens])
        return found


def build_overlay(
    root: Path,
    paths: set[str],
    selector: FileSelector,
    chunker: object,
    files: tuple[tuple[str, int, int], ...],
    signature: tuple[object, ...],
    memo: OverlayMemo | None = None,
) -> Overlay:
    """Chunk the changed files that are indexable; every changed path hides the shared copy.
    With a memo (kept by the caller for one selector and chunker) known content is reused."""
    memo = memo or OverlayMemo()
    overlay = Overlay(root=root, signature=signature, hidden=set(paths))
    for path, size, _ in files:
        if size < 0 or memo.reason(selector, path) or size > selector.max_file_bytes:
            continue
        try:
            data = (root / path).read_bytes()
        except OSError:
            continue
        text = decode(data) if content_reason(data) is None else None
        if text is None:
            continue
        file_hash = hashlib.sha256(data).hexdigest()
        chunks, tokens, counts = memo.pieces(path, file_hash, text, chunker)
        overlay.chunks.extend(chunks)
        overlay.tokens.extend(tokens)
        overlay.counts.extend(counts)
    overlay.embedded = [False] * len(overlay.chunks)
    return overlay


def embed_hashes(chunks: list[Chunk]) -> list[str]:
    """The embed hash of each chunk (the hash of its embed text, as the shared index embeds
    them); kept on the chunk, which worktrees of one run share."""
    return [c.embed_hash for c in chunks]
