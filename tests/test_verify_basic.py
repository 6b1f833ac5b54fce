"""Tests of verify.runner, verify.basic, verify.findings, verify.thresholds and core.procenv with real subprocesses."""

from __future__ import annotations

import asyncio
import os
import select
import sys
from pathlib import Path
from typing import Any

import pytest

from core.procenv import redact, safe_env
from verify.basic import VerifyStep, configured_steps, tool_name
from verify.capped import LINE_COST
from verify.findings import VerifyFinding, fingerprint, normalise_message
from verify.pipeline import VerifyOptions, run_steps
from verify.runner import run_command
from verify.severity import SeverityPolicy
from verify.thresholds import Breach, check_thresholds

ENV = safe_env()


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Block until a (non-child) process has exited, using a pidfd rather than polling; True when it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        # poll, not select: a long test session can hold file descriptors above select's 1024 limit.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


# --- run_command ------------------------------------------------------------------------------


async def test_run_command_success_and_streaming(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_command(
        "echo one; echo two >&2; printf 'three'",
        tmp_path,
        timeout=10,
        env=ENV,
        max_output_bytes=10_000,
        on_line=lines.append,
    )
    assert result.exit_code == 0 and result.ok and not result.timed_out and not result.truncated
    assert lines == ["one", "two", "three"]
    assert result.output == "one\ntwo\nthree"
    assert result.duration_seconds >= 0


async def test_run_command_failure_and_missing_program(tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("here")
    result = await run_command(
        "cat marker; exit 3", tmp_path, timeout=10, env=ENV, max_output_bytes=1000
    )
    assert result.exit_code == 3 and not result.ok
    assert result.output == "here"
    missing = await run_command(
        "definitely-not-a-program-xyz --flag", tmp_path, timeout=10, env=ENV, max_output_bytes=1000
    )
    assert missing.exit_code == 127
    assert "not found" in missing.output
    nowhere = await run_command(
        "true", tmp_path / "absent", timeout=10, env=ENV, max_output_bytes=1000
    )
    assert nowhere.exit_code == 127 and "cannot start" in nowhere.output


async def test_run_command_keeps_output_head_and_tail(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_command(
        "seq 1 5000", tmp_path, timeout=10, env=ENV, max_output_bytes=2000, on_line=lines.append
    )
    assert result.truncated
    assert len(result.output.encode()) <= 2000
    assert result.output.startswith("1\n2\n3\n") and result.output.endswith("4999\n5000\n")
    # The live lines are capped the same way: the head, how much was left out, the tail; each
    # line also costs what storing it costs (LINE_COST), so many short lines stay within bounds.
    [marker] = [line for line in lines if "bytes omitted" in line]
    assert marker in result.output
    assert lines[:3] == ["1", "2", "3"] and lines[-2:] == ["4999", "5000"]
    assert sum(len(line) + 1 + LINE_COST for line in lines if line != marker) <= 2000


async def test_timeout_kills_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 30 & echo $! > {pids}; sleep 30 & echo $! >> {pids}; echo ready; wait"
    # The timeout leaves the shell time to start both children even on a loaded machine.
    result = await run_command(command, tmp_path, timeout=3.0, env=ENV, max_output_bytes=1000)
    assert result.timed_out and result.exit_code is None and not result.ok
    assert "ready" in result.output
    children = read_pids(pids)
    assert len(children) == 2
    assert all(wait_gone(pid) for pid in children)


async def test_cancel_kills_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    ready = asyncio.Event()

    def on_line(line: str) -> None:
        if line == "ready":
            ready.set()

    command = f"sleep 30 & echo $! > {pids}; echo ready; wait"
    task = asyncio.create_task(
        run_command(command, tmp_path, timeout=30, env=ENV, max_output_bytes=1000, on_line=on_line)
    )
    await asyncio.wait_for(ready.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(wait_gone(pid) for pid in read_pids(pids))


async def test_background_child_holding_pipe_does_not_hang(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    result = await run_command(
        f"sleep 30 & echo $! > {pids}; echo done",
        tmp_path,
        timeout=20,
        env=ENV,
        max_output_bytes=1000,
    )
    assert result.exit_code == 0 and not result.timed_out
    assert result.output == "done\n"
    assert result.duration_seconds < 10
    assert all(wait_gone(pid) for pid in read_pids(pids))


async def test_env_is_passed(tmp_path: Path) -> None:
    env = dict(ENV, VERIFY_PROBE="probe-value")
    result = await run_command(
        "echo $VERIFY_PROBE", tmp_path, timeout=10, env=env, max_output_bytes=100
    )
    assert result.output.strip() == "probe-value"


# --- steps and exit-code findings -----------------------------------------------------------------------


def test_configured_steps_order_and_tool_name() -> None:
    steps = configured_steps(
        {
            "custom": ["./check.sh"],
            "lint": ["ruff check ."],
            "test": ["pytest -q", "  "],
            "build": ["make"],
            "security": [],
        }
    )
    assert [(s.category, s.command) for s in steps] == [
        ("build", "make"),
        ("test", "pytest -q"),
        ("lint", "ruff check ."),
        ("custom", "./check.sh"),
    ]
    assert tool_name("/usr/bin/python -m pytest") == "pytest"
    assert tool_name("python3.11 -m mypy .") == "mypy"
    assert tool_name("/usr/bin/python script.py") == "python"
    assert tool_name("CI=1 FOO=bar npm test") == "npm"
    assert tool_name("npx eslint .") == "eslint"
    assert tool_name("uv run ruff check .") == "ruff"
    assert tool_name("poetry install") == "poetry"


async def test_exit_code_findings_and_stable_fingerprints(tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    steps = [
        VerifyStep("build", "true"),
        VerifyStep("test", "sh fail.sh"),
        VerifyStep(
            "lint", f"{sys.executable} -c 'import sys; print(\"E501 long line\"); sys.exit(1)'"
        ),
    ]
    severity = {"build": "major", "test": "major", "lint": "minor"}
    fingerprints = []
    for line_no, took, addr in ((12, "0.12s", "0x7f3a2b"), (40, "3.5s", "0x55aa01")):
        script.write_text(
            "echo collecting\n"
            f"echo 'tests/test_x.py:{line_no}: AssertionError at {addr} in /tmp/pytest-of-u/pytest-{line_no}/t0'\n"
            f"echo '1 failed in {took}'\n"
            "exit 3\n"
        )
        streamed: list[str] = []
        report = await run_steps(
            steps,
            tmp_path,
            reports_dir=tmp_path / "reports",
            cache_dir=tmp_path / "cache",
            env=ENV,
            options=VerifyOptions(
                timeout=10,
                max_output_bytes=10_000,
                tail_lines=2,
                policy=SeverityPolicy(by_category=severity),
            ),
            on_line=streamed.append,
        )
        findings = report.findings
        assert [o.result.exit_code for o in report.outcomes if o.result] == [0, 3, 1]
        assert "[test] collecting" in streamed and "[lint] E501 long line" in streamed
        test_f, lint_f = findings
        assert (test_f.category, test_f.severity, test_f.tool, test_f.rule) == (
            "test",
            "major",
            "sh",
            "exit-3",
        )
        assert test_f.message.startswith("`sh fail.sh` failed (exit 3)\n")
        assert "collecting" not in test_f.message  # only the last two lines
        assert test_f.message.endswith(f"1 failed in {took}")
        assert (lint_f.category, lint_f.severity, lint_f.rule) == ("lint", "minor", "exit-1")
        assert lint_f.tool == os.path.basename(sys.executable)
        fingerprints.append(tuple(report.fingerprints))
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0][0] != fingerprints[0][1]


async def test_timeout_finding(tmp_path: Path) -> None:
    report = await run_steps(
        [VerifyStep("custom", "echo slow; sleep 30")],
        tmp_path,
        reports_dir=tmp_path / "reports",
        cache_dir=tmp_path / "cache",
        env=ENV,
        options=VerifyOptions(timeout=0.5, max_output_bytes=1000, tail_lines=5),
    )
    (finding,) = report.findings
    assert finding.rule == "timeout" and finding.severity == "medium" and finding.tool == "echo"
    assert "timed out" in finding.message and finding.message.endswith("slow")


def test_fingerprint_normalisation() -> None:
    a = fingerprint(
        "pytest", "exit-1", "a.py", "line 12: boom after 0.12s at 0x7ffde  in /tmp/abc123/x"
    )
    b = fingerprint(
        "pytest", "exit-1", "a.py", "line 99:  boom after 14ms at 0xdeadbeef in /tmp/zz9/y"
    )
    assert a == b and len(a) == 16
    assert fingerprint("pytest", "exit-1", "b.py", "line 12: boom") != fingerprint(
        "pytest", "exit-1", "a.py", "line 12: boom"
    )
    assert fingerprint("pytest", "exit-1", None, "boom") != fingerprint(
        "pytest", "exit-2", None, "boom"
    )
    assert fingerprint("ruff", None, None, "x in /w/run1/src", roots=["/w/run1"]) == fingerprint(
        "ruff", None, None, "x in /w/run2/src", roots=["/w/run2"]
    )
    assert normalise_message("  a\n\n b  42 ") == "a b <n>"
    f = VerifyFinding("lint", "minor", "ruff", "E501 at line 3", rule="E501", path="a.py", line=3)
    assert f.fingerprint == fingerprint("ruff", "E501", "a.py", "E501 at line 7")


# --- thresholds -------------------------------------------------------------------------------------


def test_check_thresholds() -> None:
    kwargs: dict[str, Any] = {
        "max_major": 0,
        "max_medium": 5,
        "on_major_exceeded": "abort",
        "on_medium_exceeded": "ask",
    }
    assert (
        check_thresholds({"major": 0, "medium": 5, "minor": 100}, {}, per_category={}, **kwargs)
        == []
    )
    assert check_thresholds({"major": 1, "medium": 6}, {}, per_category={}, **kwargs) == [
        Breach("major", 0, 1, "abort"),
        Breach("medium", 5, 6, "ask"),
    ]
    breaches = check_thresholds(
        {"major": 0, "medium": 0},
        {"security": 1, "lint": 3},
        per_category={"security": 0, "lint": 3},
        **kwargs,
    )
    assert breaches == [Breach("category:security", 0, 1, "abort")]
    assert (
        check_thresholds(
            {"major": 9, "medium": 9},
            {},
            max_major=None,
            max_medium=None,
            on_major_exceeded="warn",
            on_medium_exceeded="warn",
            per_category={},
        )
        == []
    )


# --- procenv -------------------------------------------------------------------------------------


def test_safe_env_drops_secrets_and_keeps_basics() -> None:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "FOO_API_KEY": "k1",
        "my_token": "t",
        "DB_PASSWORD": "p",
        "SOME_SECRET_X": "s",
        "NPM_AUTH": "a",
        "GH_CREDENTIALS": "c",
        "OLLAMA_API_KEY": "o",
        "OPENAI_BASE_URL": "u",
        "ANTHROPIC_MODEL": "m",
        "AWS_REGION": "r",
        "GITHUB_TOKEN": "g",
        "ORCHESTRATOR_HOME": "/h",
        "ORCHESTRATOR__LLM__MODEL": "x",
        "OLLAMA_HOST": "127.0.0.1",
        "GIT_TERMINAL_PROMPT": "1",
    }
    env = safe_env(["/opt/tools/bin", "/venv/bin"], base=base)
    assert env == {
        "PATH": "/opt/tools/bin:/venv/bin:/usr/bin:/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "OLLAMA_HOST": "127.0.0.1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    assert "PATH" in safe_env() and safe_env()["GIT_TERMINAL_PROMPT"] == "0"


def test_redact() -> None:
    env = {
        "FOO_API_KEY": "sk-abcdef123",
        "SHORT_TOKEN": "abc",
        "PATH": "/usr/bin/secretive",
        "X_SECRET": "sk-abc",
    }
    text = "calling with sk-abcdef123 and sk-abc and abc via /usr/bin/secretive"
    assert redact(text, env) == "calling with *** and *** and abc via /usr/bin/secretive"
    assert redact("", env) == ""
    assert redact("nothing here", {}) == "nothing here"
