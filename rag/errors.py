"""Errors of the rag package; each says what went wrong and what to do.

RagError
├── NotARepositoryError   the path is not a git working tree
├── EmbedderError         the embedding model cannot load or answer
└── IndexCorruptError     stored index files cannot be read (the index is rebuilt)
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every rag error."""


class NotARepositoryError(RagError):
    """The path to index is not inside a git working tree."""


class EmbedderError(RagError):
    """The embedding model failed to load or to embed."""


class IndexCorruptError(RagError):
    """Stored index files are unreadable or inconsistent."""
