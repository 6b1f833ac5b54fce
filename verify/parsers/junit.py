"""JUnit XML (pytest --junitxml, and any runner that writes it), read incrementally so huge files stay
cheap, with defusedxml so entity bombs and external references are refused."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # nosec B405 - only for types and ParseError; parsing is defusedxml's
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from verify.parsers.base import Collector, ParseInput, ParseResult

_OUTCOMES = ("failure", "error")


def sniff(head: bytes) -> bool:
    """Whether an output starts like a JUnit XML document."""
    text = head.lstrip()[:400]
    return text.startswith(b"<?xml") and b"<testsuite" in head or text.startswith(b"<testsuite")


def _local(tag: str) -> str:
    """An element name without its XML namespace."""
    return tag.rsplit("}", 1)[-1]


def _test_file(case: ET.Element, cwd: Path) -> str | None:
    """The test's file: the `file` attribute, else its classname as a module path that exists."""
    path = case.get("file")
    if path:
        return path
    classname = case.get("classname") or ""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        try:
            if len(candidate) < 1024 and (cwd / candidate).is_file():
                return candidate
        except (OSError, ValueError):
            return None
    return None


def _test_id(case: ET.Element, path: str | None) -> str:
    """A pytest-style id path::Class::name, or classname.name when the file is unknown."""
    name = case.get("name") or "?"
    classname = case.get("classname") or ""
    if path and path.endswith(".py"):
        module = path[:-3].replace("/", ".")
        rest = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
        return "::".join(p for p in (path, *rest.split("."), name) if p)
    return f"{classname}.{name}" if classname else name


def _failure_line(text: str, path: str | None) -> int | None:
    """The last `path:N:` frame of a traceback that points into the test's own file."""
    if not path or not text:
        return None
    last = None
    for match in re.finditer(rf"^{re.escape(path)}:(\d+):", text, re.MULTILINE):
        last = int(match.group(1))
    return last


def parse(src: ParseInput, out: Collector) -> ParseResult:
    """One finding per failed or erroring test case, at the line of the failing statement."""
    source = src.source()
    if source is None:
        return ParseResult(False)
    entries = 0
    seen_root = False
    zero_based = src.tool in ("pytest", "py.test")
    try:
        with source.open("rb") as fh:
            head = fh.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    if not head.startswith(b"<"):
        return ParseResult(False)  # not XML at all (and expat is slow to say so on huge tokens)
    try:
        for event, elem in iterparse(source, events=("start", "end")):
            tag = _local(elem.tag)
            if event == "start":
                if not seen_root:
                    if tag not in ("testsuites", "testsuite"):
                        return ParseResult(False)
                    seen_root = True
                    if "pytest" in (elem.get("name") or ""):
                        zero_based = True
                continue
            if tag == "testsuite":
                elem.clear()  # its cases are processed; free them
                continue
            if tag != "testcase":
                continue
            outcome = next((c for c in elem if _local(c.tag) in _OUTCOMES), None)
            if outcome is not None:
                entries += 1
                kind = _local(outcome.tag)
                path = out.relative(_test_file(elem, src.cwd))
                test_id = _test_id(elem, path)
                text = (outcome.text or "").strip()
                summary = (outcome.get("message") or "").strip().splitlines()
                first = summary[0] if summary else (text.splitlines()[-1] if text else kind)
                line = _failure_line(text, path)
                if line is None and (elem.get("line") or "").isdigit():
                    line = int(elem.get("line") or 0) + (1 if zero_based else 0)
                verb = "failed" if kind == "failure" else "errored"
                out.add(
                    f"{test_id} {verb}: {first}",
                    rule=f"test-{kind}",
                    path=path,
                    line=line,
                    level=kind,
                    details=text or None,
                    key=test_id,
                )
            elem.clear()
    except ET.ParseError as exc:
        if not seen_root:
            return ParseResult(False)
        return ParseResult(True, f"the JUnit XML is truncated or malformed ({exc})", entries)
    except DefusedXmlException as exc:  # DTDs, entity expansion, external references
        return ParseResult(True, f"the JUnit XML uses forbidden XML features ({exc})", entries)
    except OSError as exc:
        return ParseResult(False, f"cannot read {source}: {exc}")
    return ParseResult(seen_root, None, entries)
