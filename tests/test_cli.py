"""The CLI contract: the demo, listing and JSON outputs, approvals from another process, apply and clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.clirun import cli, cli_json, spawn
from tests.conftest import git, make_repo
from tests.waiting import wait_until


def test_demo_headless_yes_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = cli(home, "demo", "--headless", "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("run ")
    run_id = first.split()[1]

    [summary] = cli_json(home, "runs")
    assert summary["id"] == run_id and summary["status"] == "completed"
    assert summary["phases_total"] >= 3 and summary["phases_completed"] == summary["phases_total"]
    assert set(summary["findings"]) == {"major", "medium", "minor"}
    assert Path(summary["repo"]).is_absolute() and summary["created_at"].endswith("Z")

    doc = cli_json(home, "show", run_id)
    assert any(p["attempts"] == 2 for p in doc["phases"]), "one phase fails verification once"
    assert any(p["risk_level"] == "high" for p in doc["phases"])
    assert any(len(p["dependencies"]) > 0 for p in doc["phases"])
    assert len(doc["findings"]) >= 1
    assert {
        "id",
        "phase_id",
        "execution_id",
        "category",
        "severity",
        "tool",
        "rule",
        "path",
        "line",
        "column",
        "message",
        "fingerprint",
        "status",
        "location",
    } <= set(doc["findings"][0])
    [risk] = [i for i in doc["interventions"] if i["kind"] == "risk"]
    assert risk["status"] == "approved" and risk["note"] == "auto-approved"
    exported = cli(home, "export", run_id, "--format", "json", check=True).stdout
    assert '"phases"' in exported
    markdown = cli(home, "export", run_id, check=True).stdout
    assert "Add input validation" in markdown and "phase-002" in markdown

    # The sample's own tests pass on the run's branch.
    checkout = tmp_path / "checkout"
    subprocess.run(
        ["git", "clone", "-q", "-b", doc["branch"], doc["repo"], str(checkout)], check=True
    )
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-q"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stderr

    # apply brings the branch into the user's branch; clean removes worktrees and branches, history stays.
    assert cli(home, "apply", run_id).returncode == 0
    assert (Path(doc["repo"]) / "inventory" / "export.py").is_file()
    assert cli(home, "clean", run_id, check=True).stdout.startswith("cleaned 1")
    assert git(Path(doc["repo"]), "branch", "--list", "orchestrator/*") == ""
    assert cli_json(home, "show", run_id)["status"] == "completed"


def _pending_asks(home: Path, run_id: str, proc: subprocess.Popen[str]) -> list[Any]:
    """The run's pending interventions, asked of the CLI until there are some; fails at once
    with the process's output if it ended before asking."""

    def check() -> list[Any]:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"run {run_id} ended ({proc.returncode}) before asking:\n{out}{err}"
            )
        return list(cli_json(home, "interventions", "--run", run_id, "--pending"))

    return wait_until(check, what=f"a pending intervention in run {run_id}", timeout=120, step=0.2)


def test_headless_run_waits_for_an_approval_from_another_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = spawn(home, "demo", "--headless")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    pending = _pending_asks(home, run_id, proc)
    assert pending[0]["kind"] == "risk"
    assert cli_json(home, "runs")[0]["status"] == "waiting"
    assert (
        cli(home, "approve", pending[0]["id"], "--note", "looks fine", check=True).returncode == 0
    )
    second = cli(home, "reject", pending[0]["id"])
    assert second.returncode == 1 and "already answered" in second.stderr
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    [item] = cli_json(home, "interventions", "--run", run_id)
    assert item["status"] == "approved" and item["note"] == "looks fine" and item["resolved_at"]


def test_bad_input_gets_exit_code_2_and_a_clear_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = cli(home, "show", "r0000000000")
    assert missing.returncode == 2 and "r0000000000" in missing.stderr
    repo = make_repo(tmp_path / "repo")
    (repo / "orchestrator.yaml").write_text("execution:\n  max_paralel_phases: 3\n")
    bad = cli(home, "config", "validate", "--repo", str(repo))
    assert bad.returncode == 2
    assert "orchestrator.yaml" in bad.stderr and "max_parallel_phases" in bad.stderr
    not_git = tmp_path / "plain"
    not_git.mkdir()
    refused = cli(
        home,
        "run",
        "do it",
        "--repo",
        str(not_git),
        "--headless",
        "--provider",
        "replay",
        "--replay",
        str(tmp_path / "missing.jsonl"),
    )
    assert refused.returncode == 2
    assert cli(home, "runs", "--bogus").returncode == 2


def test_config_show_names_sources(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    (repo / "orchestrator.yaml").write_text("execution:\n  max_attempts: 5\n")
    out = cli(
        home,
        "config",
        "show",
        "--repo",
        str(repo),
        check=True,
        ORCHESTRATOR__LLM__TIMEOUT_SECONDS="42",
    ).stdout
    assert "max_attempts: 5" in out and str(repo / "orchestrator.yaml") in out
    assert "ORCHESTRATOR__LLM__TIMEOUT_SECONDS" in out


def test_secrets_from_the_environment_are_never_written_down(tmp_path: Path) -> None:
    from tests.cassette import new_file, phase, write_cassette

    secret = "tok-4f9a0c2b-very-secret-value"
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    leak = tmp_path / "leaky-tool.sh"  # a tool that prints the secret into its output and fails
    leak.write_text(f"#!/bin/sh\necho 'connecting with {secret}'\nexit 1\n")
    (repo / "orchestrator.yaml").write_text(f'verification:\n  lint: ["sh {leak}"]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a")}
    )
    proc = cli(
        home,
        "run",
        f"use the key {secret} carefully",
        "--repo",
        str(repo),
        "--headless",
        "--yes",
        "--provider",
        "replay",
        "--replay",
        str(cassette),
        SERVICE_TOKEN=secret,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = proc.stdout.split()[1]
    doc = cli_json(home, "show", run_id)
    assert doc["findings"] and "***" in doc["findings"][0]["message"]
    leaked = [p for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in cli(home, "export", run_id, check=True).stdout


def test_sigterm_interrupts_gracefully_and_resume_completes(tmp_path: Path) -> None:
    import signal

    home = tmp_path / "home"
    proc = spawn(home, "demo", "--headless")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]
    _pending_asks(home, run_id, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "interrupted" in err
    assert cli_json(home, "show", run_id)["status"] == "interrupted"
    assert run_id in [r["id"] for r in cli_json(home, "runs", "--recoverable")]
    resumed = cli(home, "resume", run_id, "--headless", "--yes", timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    doc = cli_json(home, "show", run_id)
    assert doc["status"] == "completed"
    assert [i["note"] for i in doc["interventions"]] == ["auto-approved"]
