"""SEARCH/REPLACE edit blocks: parse them from a model's answer and apply them inside a worktree.

The format (Aider-style, what most code models are trained on)::

    src/app.py
    ```python
    <<<<<<< SEARCH
    def old():
        pass
    =======
    def new():
        pass
    >>>>>>> REPLACE
    ```

Several blocks may share one fence (they reuse the last path); an empty SEARCH creates a file.
Application is atomic per call: if any block fails, nothing is written.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import EditError
from core.paths_safe import resolved_below

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_PATH_CHARS = re.compile(r"^[\w.\-/+@~=,]+$")
_EXTENSIONLESS = {"makefile", "dockerfile", "license", "readme", "gemfile", "procfile", "rakefile"}


class EditFormatError(EditError):
    """The answer held a malformed SEARCH/REPLACE block; the message names the line."""


@dataclass(frozen=True)
class EditBlock:
    """One edit: replace the first occurrence of `search` in `path` by `replace`."""

    path: str
    search: str
    replace: str


@dataclass
class ApplyReport:
    """What an apply did: the paths written, or one reason per block that failed."""

    applied: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every block applied."""
        return not self.failures


def _clean_path_line(line: str) -> str | None:
    """The file path named on a line, or None when the line does not look like a bare path."""
    s = line.strip()
    for prefix in ("###", "##", "#", "File:", "file:", "Path:", "path:", "Filename:", "filename:"):
        if s.startswith(prefix):
            s = s[len(prefix) :].strip()
            break
    s = s.strip("*").strip().strip("`").strip().rstrip(":").strip().strip("`").strip()
    if not s or len(s) > 300 or not _PATH_CHARS.match(s) or s.endswith("."):
        return None
    name = s.rsplit("/", 1)[-1]
    if (
        "/" in s
        or ("." in name.strip("."))
        or name.startswith(".")
        or name.lower() in _EXTENSIONLESS
    ):
        return s
    return None


def _join(lines: list[str]) -> str:
    """Lines of a block section as text with a trailing newline (empty section → empty text)."""
    return "".join(line + "\n" for line in lines)


def parse_edit_blocks(text: str) -> list[EditBlock]:
    """Every SEARCH/REPLACE block in a model's answer, in order; raises EditFormatError if malformed."""
    lines = text.splitlines()
    blocks: list[EditBlock] = []
    pending: str | None = None  # the latest path-like line since the previous block
    last_path: str | None = None
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence and not _SEARCH.match(line):
            info = fence.group(2).strip()
            if not in_fence and info and _clean_path_line(info) and "." in info:
                pending = _clean_path_line(info)
            in_fence = True if not in_fence else bool(info)
            i += 1
            continue
        if _REPLACE.match(
            line
        ):  # a stray "=======" may be a Markdown heading, so only this is an error
            raise EditFormatError(
                f"line {i + 1}: {line.strip()!r} without a preceding '<<<<<<< SEARCH' line"
            )
        if not _SEARCH.match(line):
            candidate = _clean_path_line(line)
            # Inside a fence only a line right before a SEARCH marker names a file.
            if candidate and (not in_fence or (i + 1 < len(lines) and _SEARCH.match(lines[i + 1]))):
                pending = candidate
            i += 1
            continue
        start = i + 1
        path = pending or last_path
        if path is None:
            raise EditFormatError(
                f"line {start}: SEARCH block with no file path; put the path on its own line "
                "before the fence"
            )
        search: list[str] = []
        i += 1
        while i < len(lines) and not _DIVIDER.match(lines[i]):
            if _SEARCH.match(lines[i]) or _REPLACE.match(lines[i]):
                raise EditFormatError(
                    f"line {start}: block for {path} is missing '=======' before line {i + 1}"
                )
            search.append(lines[i])
            i += 1
        if i >= len(lines):
            raise EditFormatError(f"line {start}: block for {path} is missing '======='")
        replace: list[str] = []
        i += 1
        while i < len(lines) and not _REPLACE.match(lines[i]):
            if _SEARCH.match(lines[i]) or _DIVIDER.match(lines[i]):
                raise EditFormatError(
                    f"line {start}: block for {path} is missing '>>>>>>> REPLACE' "
                    f"before line {i + 1}"
                )
            replace.append(lines[i])
            i += 1
        if i >= len(lines):
            raise EditFormatError(f"line {start}: block for {path} is missing '>>>>>>> REPLACE'")
        blocks.append(EditBlock(path=path, search=_join(search), replace=_join(replace)))
        last_path, pending = path, None
        i += 1
    return blocks


def _within(root: str, real: str) -> bool:
    """True when the resolved path `real` is `root` or below it, and not inside its .git."""
    if real == root:
        return True
    if not real.startswith(root.rstrip(os.sep) + os.sep):
        return False
    rest = real[len(root.rstrip(os.sep)) + 1 :]
    return not any(part.lower() == ".git" for part in rest.split(os.sep))


def safe_target(worktree: Path, rel: str, root: str | None = None) -> Path:
    """The absolute path for `rel` inside the worktree; raises EditError for anything that
    escapes it. `root` is os.path.realpath(worktree) when the caller already has it."""
    raw = rel.strip()
    if not raw:
        raise EditError("empty file path")
    if raw.startswith(("/", "\\", "~")) or Path(raw).is_absolute() or re.match(r"^[A-Za-z]:", raw):
        raise EditError(f"{raw}: absolute paths are refused; use a path relative to the repo root")
    parts = PurePosixPath(raw.replace("\\", "/")).parts
    if ".." in parts:
        raise EditError(
            f"{raw}: '..' components are refused; paths must stay inside the repository"
        )
    if any(p.lower() == ".git" for p in parts):
        raise EditError(f"{raw}: files inside .git/ may not be edited")
    root = root or os.path.realpath(worktree)
    if not _within(root, resolved_below(root, parts)):
        raise EditError(f"{raw}: resolves outside the worktree (through a symlink)")
    return Path(root).joinpath(*parts)


def _preview(search: str, n: int = 3) -> str:
    """The first lines of a SEARCH section, indented, for a failure message."""
    lines = search.splitlines()[:n]
    more = "\n    ..." if len(search.splitlines()) > n else ""
    return "\n".join("    " + line for line in lines) + more


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _delta(c: str, s: str) -> tuple[str, str] | None:
    """The (prefix to add, prefix to remove) turning the indentation of `s` into that of `c`."""
    ci, si = _indent_of(c), _indent_of(s)
    if ci == si:
        return "", ""
    if ci.endswith(si):
        return ci[: len(ci) - len(si)], ""
    if si.endswith(ci):
        return "", si[: len(si) - len(ci)]
    return None


def _match_lines(
    content: list[str], search: list[str], indent: bool
) -> tuple[int, str, str] | None:
    """Find `search` among `content` lines ignoring trailing whitespace (and, with `indent`, one
    consistent indentation delta); returns (start index, prefix to add, prefix to remove)."""
    n = len(search)
    for start in range(len(content) - n + 1):
        delta: tuple[str, str] | None = None
        for j in range(n):
            c, s = content[start + j].rstrip(), search[j].rstrip()
            if not indent:
                if c != s:
                    break
                continue
            if not c.strip() or not s.strip():
                if c.strip() or s.strip():
                    break
                continue
            d = _delta(c, s)
            if c.lstrip() != s.lstrip() or d is None or (delta is not None and d != delta):
                break
            delta = d
        else:
            add, remove = delta or ("", "")
            return start, add, remove
    return None


def _reindent(lines: list[str], add: str, remove: str) -> list[str]:
    """Shift replacement lines by the indentation delta found while matching."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif add:
            out.append(add + line)
        elif remove and line.startswith(remove):
            out.append(line[len(remove) :])
        elif remove:
            out.append(
                line.lstrip(" \t") if len(_indent_of(line)) <= len(remove) else line[len(remove) :]
            )
        else:
            out.append(line)
    return out


def _apply_one(content: str, block: EditBlock) -> str | None:
    """`content` with the block applied, or None when its SEARCH text is not found."""
    newline = "\r\n" if "\r\n" in content else "\n"
    search, replace = block.search, block.replace
    if newline != "\n":
        search, replace = search.replace("\n", newline), replace.replace("\n", newline)
    at = _find_at_line_start(content, search)
    if at >= 0:
        return content[:at] + replace + content[at + len(search) :]
    lines = content.splitlines(keepends=True)
    wanted = block.search.splitlines()
    while wanted and not wanted[-1].strip():
        wanted.pop()
    if not wanted:
        return None
    for indent in (False, True):
        found = _match_lines(lines, wanted, indent)
        if found is None:
            continue
        start, add, remove = found
        end = start + len(wanted)
        new = _reindent(block.replace.splitlines(), add, remove)
        text = "".join(line + newline for line in new)
        if end == len(lines) and not lines[-1].endswith(("\n", "\r")) and text:
            text = text[: -len(newline)]
        return "".join(lines[:start]) + text + "".join(lines[end:])
    if search in content:  # last resort: the text occurs, but not at the start of a line
        return content.replace(search, replace, 1)
    return None


def _find_at_line_start(content: str, search: str) -> int:
    """Index of the first occurrence of `search` that begins a line, or -1."""
    at = content.find(search)
    while at > 0 and content[at - 1] != "\n":
        at = content.find(search, at + 1)
    return at


def _read(target: Path) -> str | None:
    """A file's text (newlines untouched), '' when missing; raises EditError for binary/undecodable."""
    if not target.exists():
        return None
    if not target.is_file():
        raise EditError("is not a regular file")
    try:
        with open(target, encoding="utf-8", newline="") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise EditError("is not UTF-8 text") from exc


def _write(target: Path, text: str) -> None:
    """Write text as UTF-8; an existing file is replaced by rename so it is never half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        with open(target, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".edit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_edit_blocks(worktree: Path, blocks: Iterable[EditBlock]) -> ApplyReport:
    """Apply all blocks inside the worktree, or none of them if any block fails (reporting every failure)."""
    staged: dict[str, tuple[Path, str | None, str]] = {}  # rel -> (target, original, new text)
    failures: list[str] = []
    order: list[str] = []
    root = os.path.realpath(worktree)
    for block in blocks:
        try:
            target = safe_target(worktree, block.path, root)
        except EditError as exc:
            failures.append(f"{block.path}: refused: {exc}")
            continue
        key = str(target)
        if key in staged:
            original, content = staged[key][1], staged[key][2]
        else:
            try:
                original = _read(target)
            except EditError as exc:
                failures.append(f"{block.path}: {exc}")
                continue
            content = original or ""
        if not block.search.strip():
            if content.strip():
                failures.append(
                    f"{block.path}: empty SEARCH creates a file, but {block.path} already has "
                    "content; put the exact lines to change in SEARCH"
                )
                continue
            new = content + block.replace
        else:
            result = _apply_one(content, block)
            if result is None:
                where = (
                    "" if original is not None or key in staged else " (the file does not exist)"
                )
                failures.append(
                    f"SEARCH text not found in {block.path}{where}; it began with:\n"
                    f"{_preview(block.search)}"
                )
                continue
            new = result
        staged[key] = (target, original, new)
        if block.path not in order:
            order.append(block.path)
    if failures:
        return ApplyReport(applied=[], failures=failures)
    written: list[tuple[Path, str | None]] = []
    try:
        for target, original, new in staged.values():
            _write(target, new)
            written.append((target, original))
    except OSError as exc:
        for target, original in reversed(written):
            if original is None:
                target.unlink(missing_ok=True)
            else:
                _write(target, original)
        return ApplyReport(applied=[], failures=[f"{target}: could not be written: {exc}"])
    return ApplyReport(applied=order, failures=[])
