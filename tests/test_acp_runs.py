"""Whole runs with the acp executor and the scripted ACP agent: a permission answered with
`orchestrator approve`, one pending across a kill -9 and resume, and `--yes` following the policy."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cassette import phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import git, make_repo
from tests.waiting import wait_until

FAKE_AGENT = Path(__file__).parent / "fakes" / "acp_agent.py"
FAST = {
    "ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "2",
    "ORCHESTRATOR__EXECUTION__HEARTBEAT_SECONDS": "0.5",
}


def _setup(
    tmp_path: Path, scenario: str, **extra: str
) -> tuple[Path, Path, list[str], dict[str, str]]:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo", {"app.py": "print('hi')\n"})
    cassette = write_cassette(tmp_path / "plan.jsonl", [phase("p1", name="Decide")], {})
    args = [
        "run",
        "Record the decision",
        "--repo",
        str(repo),
        "--headless",
        "--provider",
        "replay",
        "--replay",
        str(cassette),
    ]
    env = {
        **FAST,
        "ORCHESTRATOR__EXECUTION__AGENT__COMMAND": json.dumps(
            [sys.executable, str(FAKE_AGENT), scenario]
        ),
        "ORCHESTRATOR__EXECUTION__AGENT__NAME": "fake",
        "ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS": "2",
        "ORCHESTRATOR__VERIFICATION__TEST": json.dumps(["grep -q 'answer: yes' decision.txt"]),
        "FAKE_ACP_MARKERS": str(tmp_path / "markers"),
        **extra,
    }
    return home, repo, args, env


def _pending(home: Path) -> list[dict[str, Any]]:
    return [
        i for i in cli_json(home, "interventions", "--pending") if i["kind"] == "agent_permission"
    ]


def _decision_on_branch(repo: Path, doc: dict[str, Any]) -> str:
    return git(repo, "show", f"{doc['branch']}:decision.txt")


def test_permission_answered_with_orchestrator_approve(tmp_path: Path) -> None:
    home, repo, args, env = _setup(tmp_path, "permission")
    proc = spawn(home, *args, **env)
    try:
        asks = wait_until(lambda: _pending(home), what="the agent's permission request")
        ask = asks[0]
        assert ask["reason"] == "agent fake asks to run a command: Run pytest -q"
        assert ask["payload"]["tool_kind"] == "execute"
        assert ask["payload"]["options"][0] == {
            "id": "yes",
            "name": "Allow once",
            "kind": "allow_once",
        }
        cli(home, "approve", ask["id"], check=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    run_id = out.splitlines()[0].split()[1]
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    assert _decision_on_branch(repo, doc) == "answer: yes"
    assert [e["status"] for e in doc["executions"]] == ["succeeded"]


@pytest.mark.parametrize("answer_while_stopped", [False, True])
def test_pending_permission_survives_kill_and_resume(
    tmp_path: Path, answer_while_stopped: bool
) -> None:
    home, repo, args, env = _setup(tmp_path, "permission")
    proc = spawn(home, *args, **env)
    try:
        first = wait_until(lambda: _pending(home), what="the agent's permission request")[0]
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = out.splitlines()[0].split()[1]
    # The agent, in its own process group, sees its stdin close and ends; no orphan is left.
    agent_pid = int((tmp_path / "markers" / "pid").read_text())
    wait_until(lambda: not _alive(agent_pid), what="the orphaned agent to exit")
    wait_until(
        lambda: run_id in [r["id"] for r in cli_json(home, "runs", "--recoverable", **FAST)],
        what="the killed run to become recoverable",
    )
    (tmp_path / "markers" / "pid").unlink()
    if answer_while_stopped:  # the same request in the new attempt gets this answer at once
        cli(home, "approve", first["id"], check=True)
    resumed = spawn(home, "resume", run_id, "--headless", **env)
    try:
        if not answer_while_stopped:
            # The new attempt's agent asks the same thing: it waits on the same intervention.
            wait_until(lambda: (tmp_path / "markers" / "pid").exists(), what="the new agent")
            wait_until(
                lambda: cli_json(home, "show", run_id)["status"] == "waiting",
                what="the resumed run to wait for the permission",
            )
            assert [i["id"] for i in _pending(home)] == [first["id"]]
            cli(home, "approve", first["id"], check=True)
        out, err = resumed.communicate(timeout=120)
    finally:
        if resumed.poll() is None:
            resumed.kill()
    assert resumed.returncode == 0, out + err
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    assert _decision_on_branch(repo, doc) == "answer: yes"
    kinds = [i["kind"] for i in doc["interventions"]]
    assert kinds == ["agent_permission"]
    assert [e["status"] for e in doc["executions"]] == ["failed", "succeeded"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_yes_follows_the_policy(tmp_path: Path) -> None:
    home, repo, args, env = _setup(tmp_path, "permission")
    asked = cli(home, *args, "--yes", **env, timeout=120)
    assert asked.returncode == 1
    assert "agent_permission" in asked.stderr and "needs your input, which --yes cannot give" in (
        asked.stderr
    )
    allowed = cli(
        home, *args, "--yes", **env, ORCHESTRATOR__EXECUTION__AGENT__PERMISSIONS="allow_all"
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    run_id = allowed.stdout.splitlines()[0].split()[1]
    doc = cli_json(home, "show", run_id)
    assert _decision_on_branch(repo, doc) == "answer: yes"
    assert not [i for i in doc["interventions"] if i["kind"] == "agent_permission"]


def test_agent_not_installed_fails_at_once_without_retry(tmp_path: Path) -> None:
    home, _repo, args, env = _setup(tmp_path, "permission")
    env["ORCHESTRATOR__EXECUTION__AGENT__COMMAND"] = json.dumps(["no-such-agent-binary"])
    env["ORCHESTRATOR__EXECUTION__ON_PHASE_FAILURE"] = "abort"
    proc = cli(home, *args, **env)
    assert proc.returncode == 1
    run_id = proc.stdout.splitlines()[0].split()[1]
    doc = cli_json(home, "show", run_id)
    assert len(doc["executions"]) == 1
    assert (
        "is not installed: `no-such-agent-binary` is not on PATH" in (doc["executions"][0]["error"])
    )


def test_agents_lists_presets_installed_version_and_login(tmp_path: Path) -> None:
    bin_dir, user_home = tmp_path / "bin", tmp_path / "user"
    bin_dir.mkdir()
    opencode = bin_dir / "opencode"
    opencode.write_text("#!/bin/sh\necho 1.18.33\n")
    opencode.chmod(0o755)
    # A Node agent whose package asks for a Node far newer than any installed.
    package = tmp_path / "lib" / "qwen-code"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"engines": {"node": ">=99.0.0"}}))
    entry = package / "cli.js"
    entry.write_text("#!/usr/bin/env node\nconsole.log('0.24.4')\n")
    entry.chmod(0o755)
    (bin_dir / "qwen").symlink_to(entry)
    (user_home / ".local" / "share" / "opencode").mkdir(parents=True)
    (user_home / ".local" / "share" / "opencode" / "auth.json").write_text("{}")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(user_home)}
    listed = {a["name"]: a for a in cli_json(tmp_path / "home", "agents", **env)}
    assert sorted(listed) == sorted(
        ["copilot", "claude", "codex", "gemini", "qwen", "opencode", "goose"]
    )
    oc = listed["opencode"]
    assert (oc["installed"], oc["path"], oc["version"]) == (True, str(opencode), "1.18.33")
    assert (oc["mode"], oc["command"]) == ("acp", ["opencode", "acp"])
    assert (
        oc["logged_in"] is True
        and oc["login_evidence"] == "~/.local/share/opencode/auth.json exists"
    )
    assert "needs Node 99 or newer" in listed["qwen"]["problem"]
    goose = listed["goose"]
    assert goose["installed"] is False and goose["install"].startswith("curl -fsSL")
    text = cli(tmp_path / "home", "agents", check=True, **env).stdout
    assert "opencode  OpenCode\n  installed: " + str(opencode) + " (1.18.33)" in text
    assert "  run:       orchestrator run TASK --repo PATH --agent opencode" in text


def test_orchestrator_cancel_sends_session_cancel_and_stops_the_agent(tmp_path: Path) -> None:
    home, _repo, args, env = _setup(tmp_path, "cancel")
    markers = tmp_path / "markers"
    proc = spawn(home, *args, **env)
    try:
        wait_until(lambda: (markers / "working").exists(), what="the agent to start working")
        run_id = cli_json(home, "runs")[0]["id"]
        cli(home, "cancel", run_id, check=True)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert cli_json(home, "show", run_id)["status"] == "cancelled"
    assert (markers / "cancel-received").read_text() == "sess-1"
    assert (markers / "stopped-politely").exists()
    assert not _alive(int((markers / "pid").read_text()))
