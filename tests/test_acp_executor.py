"""The ACP executor against a scripted ACP agent (tests/fakes/acp_agent.py) run as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from core.executors.acp import AcpExecutor, AgentSettings
from core.executors.acp_client import policy_decision
from core.executors.base import PhaseJob
from tests.conftest import make_repo
from tests.waiting import eventually

FAKE_AGENT = Path(__file__).parent / "fakes" / "acp_agent.py"


class Log:
    """Collects (message, level) pairs the executor logs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append((message, level))

    def text(self) -> str:
        return "\n".join(m for m, _ in self.lines)


class Host:
    """An AttemptHost whose permission answers come from a script (or wait on an event)."""

    def __init__(self, repo: Path, home: Path, answer: bool | None = True) -> None:
        self.repo = repo
        self.home = home
        self.answer = answer
        self.answered = asyncio.Event()
        self.asked: list[tuple[str, str, str, dict[str, Any]]] = []
        self.usage: list[tuple[Any, ...]] = []
        self.findings: list[tuple[str, str]] = []

    async def ask_permission(
        self, key: str, reason: str, action_required: str, payload: dict[str, Any]
    ) -> bool:
        self.asked.append((key, reason, action_required, payload))
        if self.answer is None:
            await self.answered.wait()
        return bool(self.answer)

    async def record_usage(self, *args: Any, **kwargs: Any) -> None:
        self.usage.append((*args, kwargs))

    async def report_finding(self, message: str, details: str) -> None:
        self.findings.append((message, details))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(user's repository, a phase worktree of it, the home, the markers folder)."""
    repo = make_repo(tmp_path / "repo", {"app.py": "print('hi')\n"})
    home = tmp_path / "home"
    home.mkdir()
    worktree = home / "worktrees" / "run-1" / "p1"
    worktree.parent.mkdir(parents=True)
    os.system(f"git -C {repo} worktree add -q -b phase {worktree} >/dev/null 2>&1")
    assert (worktree / "app.py").is_file()
    return repo, worktree, home, tmp_path / "markers"


def job_for(worktree: Path, host: Host | None) -> PhaseJob:
    return PhaseJob(
        run_id="run-1",
        task="Write the notes",
        phase_plan_id="p1",
        phase_name="Notes",
        phase_description="Write notes.txt",
        verification_criteria=["notes.txt exists"],
        attempt=1,
        worktree=worktree,
        host=host,
    )


def executor(scenario: str, **settings: Any) -> AcpExecutor:
    return AcpExecutor(
        [sys.executable, str(FAKE_AGENT), scenario],
        agent="fake",
        settings=AgentSettings(**settings),
    )


@pytest.fixture(autouse=True)
def markers_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ACP_MARKERS", str(tmp_path / "markers"))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))


async def test_streams_updates_as_lines_and_takes_the_edits(setup: Any) -> None:
    repo, worktree, home, markers = setup
    host = Host(repo, home)
    log = Log()
    result = await executor("edit").execute(job_for(worktree, host), log)
    assert result.ok, result.error
    assert result.changed_files == ["notes.txt"]
    assert (worktree / "notes.txt").read_text() == "hello\nfrom the agent\n"
    lines = [m for m, _ in log.lines]
    # Message chunks split mid-line come out as whole lines.
    assert "I will add the notes file." in lines
    assert "Then I am done." in lines
    assert "thinking: notes need a title" in lines
    assert "plan:" in lines and "  [in_progress] Write notes.txt" in lines
    assert any(line.startswith("tool: Write notes.txt [edit] pending") for line in lines)
    assert any(
        line.startswith("diff: ") and "notes.txt: new file, 2 lines" in line for line in lines
    )
    assert "Done: notes.txt written." in lines
    # Our capabilities, the session's cwd and the prompt the agent saw.
    caps = json.loads((markers / "capabilities").read_text())
    assert caps["fs"] == {"readTextFile": True, "writeTextFile": True} and caps["terminal"] is True
    assert (markers / "cwd").read_text() == str(worktree)
    assert "Write notes.txt" in (markers / "prompt").read_text()
    # The usage and cost the agent reported are recorded.
    assert host.usage and host.usage[0][:4] == ("acp:fake", "fake", 1200, 300)
    assert host.usage[0][4]["cost_usd"] == pytest.approx(0.0125)
    assert host.findings == []


@pytest.mark.parametrize("answer", [True, False])
async def test_permission_request_goes_to_the_host(setup: Any, answer: bool) -> None:
    repo, worktree, home, markers = setup
    host = Host(repo, home, answer)
    result = await executor("permission").execute(job_for(worktree, host), Log())
    assert result.ok, result.error
    _key, reason, action, payload = host.asked[0]
    assert reason == "agent fake asks to run a command: Run pytest -q"
    assert action.startswith("approve: the agent may run a command (Allow once); reject:")
    assert payload["tool_kind"] == "execute" and payload["title"] == "Run pytest -q"
    expected = "yes" if answer else "no"
    assert (worktree / "decision.txt").read_text() == f"answer: {expected}\n"
    assert (markers / "permission-answer").read_text() == expected


async def test_same_request_has_the_same_key(setup: Any) -> None:
    repo, worktree, home, _ = setup
    first, second = Host(repo, home), Host(repo, home)
    await executor("permission").execute(job_for(worktree, first), Log())
    await executor("permission").execute(job_for(worktree, second), Log())
    assert first.asked[0][0] == second.asked[0][0]


def test_policy_and_rules() -> None:
    assert policy_decision("execute", "ask", {}) == "ask"
    assert policy_decision("edit", "allow_edits", {}) == "allow"
    assert policy_decision("execute", "allow_edits", {}) == "ask"
    assert policy_decision("execute", "allow_all", {"execute": "deny"}) == "deny"
    assert policy_decision("fetch", "deny", {}) == "deny"
    assert policy_decision("read", "deny", {"read": "allow"}) == "allow"


@pytest.mark.parametrize(("policy", "expected"), [("allow_all", "yes"), ("deny", "no")])
async def test_policy_answers_without_asking(setup: Any, policy: str, expected: str) -> None:
    repo, worktree, home, _ = setup
    host = Host(repo, home)
    result = await executor("permission", permissions=policy).execute(
        job_for(worktree, host), Log()
    )
    assert result.ok, result.error
    assert host.asked == []
    assert (worktree / "decision.txt").read_text() == f"answer: {expected}\n"


async def test_cancel_sends_session_cancel_then_stops_the_agent(setup: Any) -> None:
    repo, worktree, home, markers = setup
    task = asyncio.create_task(
        executor("cancel").execute(job_for(worktree, Host(repo, home)), Log())
    )
    await eventually(lambda: (markers / "working").exists(), what="the agent to start working")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (markers / "cancel-received").read_text() == "sess-1"
    assert (markers / "stopped-politely").exists()
    pid = int((markers / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_silent_agent_times_out_and_is_killed(setup: Any) -> None:
    repo, worktree, home, markers = setup
    result = await executor("hang", silence_seconds=1, cancel_grace_seconds=0.5).execute(
        job_for(worktree, Host(repo, home)), Log()
    )
    assert not result.ok and result.retriable
    assert "sent nothing for 1 s" in (result.error or "")
    assert (markers / "cancel-received").exists()  # it was asked politely first
    with pytest.raises(ProcessLookupError):
        os.kill(int((markers / "pid").read_text()), 0)


async def test_overall_timeout(setup: Any) -> None:
    repo, worktree, home, _ = setup
    result = await executor("hang", timeout_seconds=1, cancel_grace_seconds=0).execute(
        job_for(worktree, Host(repo, home)), Log()
    )
    assert not result.ok and "ran longer than 1 s" in (result.error or "")


async def test_an_agent_that_exits_at_once_is_a_configuration_error(setup: Any) -> None:
    repo, worktree, home, _ = setup
    result = await executor("exit").execute(job_for(worktree, Host(repo, home)), Log())
    assert not result.ok and not result.retriable
    error = result.error or ""
    assert "the agent fake exited at once (code 3)" in error
    assert "it looks not logged in" in error
    assert "No authentication information found" in error


async def test_not_installed_is_a_configuration_error(setup: Any) -> None:
    repo, worktree, home, _ = setup
    missing = AcpExecutor(["no-such-agent-xyz", "--acp"], agent="ghost")
    result = await missing.execute(job_for(worktree, Host(repo, home)), Log())
    assert not result.ok and not result.retriable
    assert "the agent ghost is not installed: `no-such-agent-xyz` is not on PATH" in (
        result.error or ""
    )


async def test_not_logged_in_is_a_configuration_error(setup: Any) -> None:
    repo, worktree, home, _ = setup
    result = await executor("auth").execute(job_for(worktree, Host(repo, home)), Log())
    assert not result.ok and not result.retriable
    assert "the agent fake is not logged in" in (result.error or "")


async def test_input_we_cannot_give_is_said(setup: Any) -> None:
    repo, worktree, home, _ = setup
    result = await executor("elicit").execute(job_for(worktree, Host(repo, home)), Log())
    assert not result.ok and not result.retriable
    assert "asked for input the orchestrator cannot give: Which database should I use?" in (
        result.error or ""
    )


async def test_files_outside_the_worktree_are_refused(setup: Any) -> None:
    repo, worktree, home, markers = setup
    log = Log()
    result = await executor("outside").execute(job_for(worktree, Host(repo, home)), log)
    assert result.ok, result.error
    refused = (markers / "refused").read_text().splitlines()
    assert len(refused) == 3, refused
    assert not (worktree.parent / "escaped.txt").exists()
    assert "refused: the agent tried to read /etc/passwd outside the worktree" in log.text()


async def test_terminals_run_in_the_worktree_without_our_secrets(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, worktree, home, _ = setup
    monkeypatch.setenv("ORCHESTRATOR_TEST_API_KEY", "sk-very-secret-value")
    result = await executor("terminal").execute(job_for(worktree, Host(repo, home)), Log())
    assert result.ok, result.error
    out = (worktree / "terminal.txt").read_text()
    assert out.startswith("exit 0\n" + str(worktree) + "\n")
    assert "sk-very-secret-value" not in out and "done" in out


async def test_changes_outside_the_worktree_are_a_major_finding(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, worktree, home, _ = setup
    monkeypatch.setenv("FAKE_ACP_ESCAPE", str(repo / "sneaky.txt"))
    host = Host(repo, home)
    result = await executor("escape").execute(job_for(worktree, host), Log())
    assert result.ok, result.error
    assert len(host.findings) == 1
    message, details = host.findings[0]
    assert message == "agent fake changed 1 path(s) outside its worktree"
    assert f"{repo}: sneaky.txt (??)" in details


async def test_needing_a_newer_node_is_a_configuration_error(setup: Any, tmp_path: Path) -> None:
    repo, worktree, home, _ = setup
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "package.json").write_text(json.dumps({"engines": {"node": ">=99"}}))
    entry = package / "agent.js"
    entry.write_text("#!/usr/bin/env node\n")
    entry.chmod(0o755)
    result = await AcpExecutor([str(entry)], agent="newer").execute(
        job_for(worktree, Host(repo, home)), Log()
    )
    assert not result.ok and not result.retriable
    assert f"the agent newer cannot run here: {entry} needs Node 99 or newer" in (
        result.error or ""
    )


def _config(**agent: Any) -> Any:
    from config.schema import OrchestratorConfig

    config = OrchestratorConfig()
    config.execution.agent = config.execution.agent.model_copy(update=agent)
    return config


def test_presets_build_acp_or_plain_executors() -> None:
    from core.executors.base import executor_factory
    from core.executors.external import ExternalAgentExecutor
    from core.setup import executor_name

    config = _config(name="opencode", mode="acp")
    assert executor_name(config) == "acp"  # naming an agent alone selects the acp executor
    acp_executor = executor_factory("acp")(config, None, None)
    assert isinstance(acp_executor, AcpExecutor)
    assert acp_executor.command == ["opencode", "acp"] and acp_executor.agent == "opencode"
    plain = executor_factory("acp")(_config(name="codex", mode="plain"), None, None)
    assert isinstance(plain, ExternalAgentExecutor)
    assert plain.command == ["codex", "exec", "--full-auto", "{prompt}"]
    assert "OPENAI_API_KEY" in plain.pass_env
    own = executor_factory("acp")(_config(command=["my-agent", "--stdio"]), None, None)
    assert isinstance(own, AcpExecutor) and own.agent == "my-agent" and own.preset is None


def test_unknown_or_missing_agent_is_a_config_error() -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown agent 'vim'; known agents: claude, codex"):
        AcpExecutor.from_config(_config(name="vim"))
    with pytest.raises(ConfigError, match="no agent is named"):
        AcpExecutor.from_config(_config())


def test_agent_env_passes_only_named_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.procenv import agent_env

    monkeypatch.setenv("OPENAI_API_KEY", "sk-agents-own")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-not-for-this-agent")
    env = agent_env(("OPENAI_API_KEY", "OPENAI_BASE_URL"))
    assert env["OPENAI_API_KEY"] == "sk-agents-own"
    assert "ANTHROPIC_API_KEY" not in env and "OPENAI_BASE_URL" not in env
