"""File extensions to language names, and the tree-sitter grammars shipped as per-language wheels.

Grammars come from `tree-sitter-python`, `-javascript`, `-typescript`, `-go` and `-rust`, which
bundle compiled parsers (no download at run time, unlike tree-sitter-language-pack 1.x).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "css",
    ".sh": "shell",
    ".bash": "shell",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".java": "java",
    ".kt": "kotlin",
    ".rb": "ruby",
    ".php": "php",
    ".sql": "sql",
    ".swift": "swift",
    ".cs": "csharp",
}

# language -> (module, function returning the grammar pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}


def known_languages() -> set[str]:
    """Every language name chunks can carry (custom processors may add their own)."""
    return {*EXTENSIONS.values(), "text", "makefile", "dockerfile"}


def language_of(path: str) -> str:
    """The language name of a path from its extension ("text" when unknown)."""
    name = path.rsplit("/", 1)[-1]
    if name in ("Makefile", "Dockerfile"):
        return name.lower()
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:].lower(), "text") if dot > 0 else "text"


@cache
def parser_for(language: str) -> Any:
    """A tree-sitter Parser for a language with a shipped grammar (cached per process)."""
    from tree_sitter import Language, Parser

    module_name, function = GRAMMARS[language]
    module = importlib.import_module(module_name)
    return Parser(Language(getattr(module, function)()))
