"""Every parser on valid, malformed, truncated and huge (50 MB) output: no crash, nothing lost silently,
peak memory under 300 MB; the runner caps what it keeps; plugin parsers load from entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.verify_support.outputs import failing, write, write_size
from verify.basic import VerifyStep
from verify.parsers.base import Collector, ParseInput
from verify.pipeline import VerifyOptions, parse_step
from verify.registry import parsers
from verify.runner import CommandResult, run_command

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ["junit", "ruff", "bandit", "sarif", "mypy", "unittest", "compiler"]
HUGE = 50 * 1024 * 1024


def parse_in_subprocess(parser: str, file: Path, cwd: Path, limit: int = 1000) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.verify_support.parse_one",
            parser,
            str(file),
            str(cwd),
            str(limit),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def parse_here(parser: str, file: Path, cwd: Path) -> tuple[list[Any], Any]:
    step = VerifyStep("lint", "tool {report}", tool="tool", parser=parser)
    src = ParseInput("lint", "tool", step.command, cwd, 1, "the tail", report=file)
    out, _used, parsed = parse_step(
        step, src, CommandResult(step.command, 1, "the tail", False, 0.1, False), VerifyOptions()
    )
    return out.findings, parsed


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    folder = tmp_path / "tree"
    (folder / "tests").mkdir(parents=True)
    (folder / "app.py").write_text("".join(f"x{i} = {i}\n" for i in range(300)))
    (folder / "tests" / "test_app.py").write_text("def test_0():\n    assert 0 == 0\n")
    return folder


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_output_gives_one_finding_per_problem(fmt: str, tree: Path, tmp_path: Path) -> None:
    file = write(tmp_path / f"out.{fmt}", fmt, 20)
    findings, parsed = parse_here(fmt, file, tree)
    assert parsed.recognised and parsed.error is None
    assert len(findings) == failing(fmt, 20)
    assert all(f.path in ("app.py", "tests/test_app.py") and f.line for f in findings)
    assert all(f.snippet for f in findings if f.path == "app.py")


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_output_keeps_what_was_read_and_says_so(
    fmt: str, tree: Path, tmp_path: Path
) -> None:
    file = write(tmp_path / f"out.{fmt}", fmt, 20)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])
    findings, _parsed = parse_here(fmt, file, tree)
    real = [f for f in findings if f.rule != "unparsed-output"]
    assert 0 < len(real) < failing(fmt, 20)
    if fmt in (
        "junit",
        "ruff",
        "bandit",
        "sarif",
    ):  # formats with one document: the cut is an error
        [notice] = [f for f in findings if f.rule == "unparsed-output"]
        assert (
            "could not be parsed" in notice.message and "truncated or malformed" in notice.message
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_output_becomes_a_finding_that_says_so(
    fmt: str, tree: Path, tmp_path: Path
) -> None:
    file = tmp_path / "garbage"
    file.write_bytes(b"\x00\xff<<{[ not what anyone expected ]}>>\n" * 50)
    findings, _parsed = parse_here(fmt, file, tree)
    assert findings, "a failed command with unreadable output is never silent"
    messages = " ".join(f.message for f in findings)
    assert "could not be parsed" in messages or "failed (exit 1)" in messages


def test_unrecognised_output_of_a_passing_tool_is_reported(tree: Path, tmp_path: Path) -> None:
    file = tmp_path / "report.json"
    file.write_text("this is not JSON at all\n")
    step = VerifyStep("lint", "tool {report}", tool="tool", parser="ruff")
    src = ParseInput("lint", "tool", step.command, tree, 0, "", report=file)
    out, _used, _parsed = parse_step(
        step, src, CommandResult(step.command, 0, "", False, 0.1, False), VerifyOptions()
    )
    [finding] = out.findings
    assert finding.rule == "unparsed-output" and "could not be parsed as ruff" in finding.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_valid_output_is_parsed_whole_in_bounded_memory(
    fmt: str, tree: Path, tmp_path: Path
) -> None:
    file = tmp_path / f"huge.{fmt}"
    n = write_size(file, fmt, HUGE)
    assert file.stat().st_size >= HUGE
    got = parse_in_subprocess(fmt, file, tree)
    assert got["recognised"] and got["error"] is None
    assert got["entries"] == failing(fmt, n)  # every entry was read
    assert got["kept"] == 1000 and got["dropped"] == failing(fmt, n) - 1000
    assert got["max_rss_mb"] < 300, got


@pytest.mark.parametrize("fmt", ["junit", "ruff", "compiler"])
def test_huge_garbage_does_not_crash(fmt: str, tree: Path, tmp_path: Path) -> None:
    file = tmp_path / "huge-garbage"
    with file.open("wb") as fh:
        for _ in range(50):
            fh.write(b"x" * (1024 * 1024))  # one 50 MB line, no newline
    got = parse_in_subprocess(fmt, file, tree)
    assert got["kept"] == 1 and got["max_rss_mb"] < 300, got
    assert "could not be parsed" in got["first"] or "failed (exit 1)" in got["first"]


async def test_runner_caps_memory_and_file(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    result = await run_command(
        "head -c 60000000 /dev/zero | tr '\\0' 'y'; echo; echo last line",
        tmp_path,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        max_output_bytes=1000,
        output_file=out,
        max_file_bytes=5_000_000,
    )
    assert result.exit_code == 0 and result.truncated and result.file_truncated
    assert len(result.output) <= 1000 and result.output.endswith("last line\n")
    assert out.stat().st_size == 5_000_000 and result.output_file == out


def test_runner_peak_memory_with_a_huge_output(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from verify.runner import run_command\n"
        "r = asyncio.run(run_command('head -c 80000000 /dev/zero', Path(sys.argv[1]), timeout=60,"
        " env={'PATH': '/usr/bin:/bin'}, max_output_bytes=1_000_000, on_line=lambda l: None,"
        " output_file=Path(sys.argv[1]) / 'o.log', max_file_bytes=60_000_000))\n"
        "from tests.verify_support.parse_one import peak_rss_mb\n"
        "print(len(r.output), r.truncated, int(peak_rss_mb()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    kept, truncated, peak = proc.stdout.split()
    assert int(kept) <= 1_000_000 and truncated == "True" and int(peak) < 300


def test_collector_drops_the_least_severe_past_its_limit(tree: Path) -> None:
    from verify.severity import SeverityPolicy

    out = Collector(category="lint", tool="t", cwd=tree, policy=SeverityPolicy(), limit=3)
    for severity in ("minor", "major", "minor", "medium", "major", "minor"):
        out.add(f"a {severity} one", severity=severity)
    assert [f.severity for f in out.findings] == ["major", "major", "medium"]
    assert out.dropped == 3 and out.dropped_by_severity == {"minor": 3}


def test_plugin_parser_from_an_entry_point(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "tap_parser-1.0.dist-info").mkdir(parents=True)
    (plugins / "tap_parser-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tap-parser\nVersion: 1.0\n"
    )
    (plugins / "tap_parser-1.0.dist-info" / "entry_points.txt").write_text(
        "[orchestrator.verify_parsers]\ntap = tap_parser\n"
    )
    (plugins / "tap_parser.py").write_text(
        "from verify.parsers.base import ParseResult\n"
        "def sniff(head):\n    return head.startswith(b'TAP version')\n"
        "def parse(src, out):\n"
        "    n = 0\n"
        "    for line in src.source().read_text().splitlines():\n"
        "        if line.startswith('not ok'):\n"
        "            n += 1\n"
        "            out.add(line, rule='tap-failure')\n"
        "    return ParseResult(True, None, n)\n"
    )
    (tmp_path / "out.tap").write_text("TAP version 13\nok 1 - a\nnot ok 2 - b\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from verify.registry import parsers, sniff_order\n"
        "assert 'tap' in parsers() and 'tap' in sniff_order()\n"
        "from tests.verify_support.parse_one import main\n"
        "sys.argv = ['x', 'auto', sys.argv[2], sys.argv[3]]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(plugins), str(tmp_path / "out.tap"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(proc.stdout)
    assert (got["parser"], got["kept"], got["rules"]) == ("tap", 1, ["tap-failure"])
    assert "tap" not in parsers()  # not installed in this process


def test_sarif_input_levels_rules_and_suppressions(tree: Path, tmp_path: Path) -> None:
    doc = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "CodeQL",
                        "rules": [
                            {"id": "py/sql", "properties": {"security-severity": "8.8"}},
                            {"id": "py/unused", "defaultConfiguration": {"level": "note"}},
                        ],
                    }
                },
                "results": [
                    {
                        "ruleId": "py/sql",
                        "message": {"text": "SQL built from input"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "app.py"},
                                    "region": {"startLine": 3},
                                }
                            }
                        ],
                    },
                    {
                        "ruleIndex": 1,
                        "message": {"text": "unused"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "file://" + str(tree / "app.py")},
                                    "region": {"startLine": 4},
                                }
                            }
                        ],
                    },
                    {
                        "ruleId": "py/sql",
                        "message": {"text": "accepted"},
                        "suppressions": [{"kind": "inSource"}],
                    },
                ],
            }
        ],
    }
    file = tmp_path / "codeql.sarif"
    file.write_text(json.dumps(doc))
    step = VerifyStep("security", "codeql {report}", tool="codeql", parser="auto")
    src = ParseInput("security", "codeql", step.command, tree, 0, "", report=file)
    from config.schema import VerificationConfig
    from core.verification import severity_policy

    out, used, _ = parse_step(
        step,
        src,
        CommandResult(step.command, 0, "", False, 0.1, False),
        VerifyOptions(policy=severity_policy(VerificationConfig())),
    )
    assert used == "sarif"
    got = [(f.tool, f.rule, f.path, f.line, f.severity) for f in out.findings]
    assert got == [
        ("codeql", "py/sql", "app.py", 3, "major"),
        ("codeql", "py/unused", "app.py", 4, "minor"),
    ]


def test_builtin_parsers_are_registered() -> None:
    assert set(FORMATS) <= set(parsers())


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_inputs_deep_nesting_and_random_bytes(fmt: str, tree: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(4)
    inputs = {
        "deep-array": b"[" * 200_000 + b"]" * 200_000,
        "deep-object": b'{"results": [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
        "random": bytes(rng.getrandbits(8) for _ in range(200_000)),
    }
    for name, data in inputs.items():
        file = tmp_path / name
        file.write_bytes(data)
        findings, _parsed = parse_here(fmt, file, tree)
        assert len(findings) == 1, (name, findings)
        message = findings[0].message
        assert "could not be parsed" in message or "failed (exit 1)" in message, (name, message)


def test_a_crashing_parser_becomes_a_finding(tree: Path, tmp_path: Path) -> None:
    from verify import registry
    from verify.registry import Parser, register_parser

    def explode(src: object, out: object) -> object:
        raise RuntimeError("plugin bug")

    register_parser(Parser("exploding", explode))
    try:
        file = tmp_path / "out.txt"
        file.write_text("anything\n")
        findings, _ = parse_here("exploding", file, tree)
    finally:
        del registry.parsers()["exploding"]
    [finding] = findings
    assert finding.rule == "parser-crash" and "RuntimeError: plugin bug" in finding.message
