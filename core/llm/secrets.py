"""Removing secret values from text that servers echo back (error messages may quote a key)."""

from __future__ import annotations

from collections.abc import Callable


def scrubber(*secrets: str | None) -> Callable[[str], str]:
    """A function removing the given secret values from text (server error messages may echo keys)."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for value in values:
            text = text.replace(value, "***")
        return text

    return scrub
