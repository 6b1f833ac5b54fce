"""A run document written in one of the `export --format` formats."""

from __future__ import annotations

import json
from typing import Any

from core.errors import InputError
from core.reports.markdown import render_markdown
from verify.sarif_out import to_sarif

EXPORT_FORMATS = ("markdown", "json", "sarif")


def export_text(doc: dict[str, Any], fmt: str = "markdown") -> str:
    """The document as markdown, as the JSON of `show --json`, or as SARIF of its findings."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(doc)
    if fmt == "sarif":
        return json.dumps(to_sarif(doc["findings"], doc["repo"]), indent=2) + "\n"
    raise InputError(f"--format {fmt!r} is not supported; use markdown, json or sarif")
