"""Tool outputs in each format, written to files in chunks so even 50 MB ones cost little memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path


def _junit(n: int) -> Iterator[str]:
    yield '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
    yield f'<testsuite name="pytest" tests="{n}">'
    for i in range(n):
        if i % 2:
            yield f'<testcase classname="tests.test_app" name="test_{i}" file="tests/test_app.py" line="{i}" time="0.001"/>'
        else:
            yield (
                f'<testcase classname="tests.test_app" name="test_{i}" file="tests/test_app.py" '
                f'line="{i}" time="0.001"><failure message="assert {i} == 0">def test_{i}():\n'
                f">       assert {i} == 0\nE       assert {i} == 0\n\ntests/test_app.py:{i + 2}: "
                "AssertionError</failure></testcase>"
            )
    yield "</testsuite></testsuites>"


def _ruff_item(i: int) -> dict[str, object]:
    return {
        "cell": None,
        "code": "F401" if i % 3 else "E501",
        "end_location": {"column": 10, "row": i + 1},
        "filename": "app.py",
        "fix": None,
        "location": {"column": 8, "row": i + 1},
        "message": f"`mod{i}` imported but unused",
        "noqa_row": i + 1,
        "url": "https://docs.astral.sh/ruff/rules/unused-import",
    }


def _ruff(n: int) -> Iterator[str]:
    yield "["
    for i in range(n):
        yield ("," if i else "") + json.dumps(_ruff_item(i))
    yield "]"


def _bandit_item(i: int) -> dict[str, object]:
    return {
        "code": f"{i} subprocess.call(cmd, shell=True)\n",
        "col_offset": 4,
        "filename": "./app.py",
        "issue_confidence": "HIGH",
        "issue_cwe": {"id": 78, "link": "https://cwe.mitre.org/data/definitions/78.html"},
        "issue_severity": ("HIGH", "MEDIUM", "LOW")[i % 3],
        "issue_text": "subprocess call with shell=True identified, security issue.",
        "line_number": i + 1,
        "line_range": [i + 1],
        "more_info": "https://bandit.readthedocs.io/en/latest/plugins/b602.html",
        "test_id": "B602",
        "test_name": "subprocess_popen_with_shell_equals_true",
    }


def _bandit(n: int) -> Iterator[str]:
    yield '{"errors": [], "generated_at": "2026-11-24T00:00:00Z", "metrics": {}, "results": ['
    for i in range(n):
        yield ("," if i else "") + json.dumps(_bandit_item(i))
    yield "]}"


def _sarif(n: int) -> Iterator[str]:
    yield (
        '{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", '
        '"runs": [{"tool": {"driver": {"name": "Semgrep", "rules": [{"id": "py.shell", '
        '"defaultConfiguration": {"level": "error"}, "helpUri": "https://semgrep.dev/r"}]}}, '
        '"results": ['
    )
    for i in range(n):
        result = {
            "ruleId": "py.shell",
            "ruleIndex": 0,
            "level": "warning" if i % 2 else "error",
            "message": {"text": f"shell=True in call {i}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": "app.py", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": i + 1, "startColumn": 5},
                    }
                }
            ],
        }
        yield ("," if i else "") + json.dumps(result)
    yield "]}]}"


def _mypy(n: int) -> Iterator[str]:
    for i in range(n):
        yield (
            json.dumps(
                {
                    "file": "app.py",
                    "line": i + 1,
                    "column": 4,
                    "message": f"Name 'x{i}' is not defined",
                    "hint": None,
                    "code": "name-defined",
                    "severity": "error",
                }
            )
            + "\n"
        )


def _compiler(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"app.py:{i + 1}:5: error: use of undeclared identifier 'x{i}'\n"


def _unittest(n: int) -> Iterator[str]:
    yield "." * 10 + "\n"
    for i in range(n):
        yield (
            "======================================================================\n"
            f"FAIL: test_{i} (test_app.T.test_{i})\n"
            "----------------------------------------------------------------------\n"
            "Traceback (most recent call last):\n"
            f'  File "tests/test_app.py", line {i % 2 + 1}, in test_{i}\n'
            f"    self.assertEqual({i}, 0)\n"
            f"AssertionError: {i} != 0\n\n"
        )
    yield "----------------------------------------------------------------------\n"
    yield f"Ran {n} tests in 0.010s\n\nFAILED (failures={n})\n"


GENERATORS: dict[str, Callable[[int], Iterator[str]]] = {
    "unittest": _unittest,
    "junit": _junit,
    "ruff": _ruff,
    "bandit": _bandit,
    "sarif": _sarif,
    "mypy": _mypy,
    "compiler": _compiler,
}


def write(path: Path, fmt: str, n: int) -> Path:
    """Write n entries (junit: n test cases, half failing) of a format to path."""
    with path.open("w", encoding="utf-8") as fh:
        buffer: list[str] = []
        for part in GENERATORS[fmt](n):
            buffer.append(part)
            if len(buffer) >= 2000:
                fh.write("".join(buffer))
                buffer.clear()
        fh.write("".join(buffer))
    return path


def write_size(path: Path, fmt: str, size: int) -> int:
    """Write a file of at least `size` bytes in a format; returns how many entries it holds."""
    sample = path.with_suffix(".sample")
    write(sample, fmt, 200)
    per_entry = max(1, sample.stat().st_size // 200)
    sample.unlink()
    n = size // per_entry + 1
    write(path, fmt, n)
    return n


def failing(fmt: str, n: int) -> int:
    """How many findings n entries of a format should give."""
    return (n + 1) // 2 if fmt == "junit" else n
