"""The LLM executor with a scripted chat client, and the external executor with a real agent script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.errors import ConfigError, LLMRetriableError, ModelNotFoundError
from core.executors.base import PhaseJob, executor_factory
from core.executors.external import ExternalAgentExecutor
from core.executors.llm import LLMExecutor
from core.llm.base import ChatRequest, ChatResponse


class ScriptedLLM:
    """A chat client with the LLMClient.chat signature that answers from a script."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, on_text: Any = None) -> ChatResponse:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if on_text is not None:
            on_text(answer)
        return ChatResponse(content=answer, model=request.model, provider="scripted")


class Log:
    """Collects (message, level) pairs the executor logs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append((message, level))

    def at(self, level: str) -> list[str]:
        return [m for m, lv in self.lines if lv == level]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test")
    git(path, "config", "user.email", "test@example.com")
    (path / "README.md").write_text("# Demo\n")
    (path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def job_for(worktree: Path, **overrides: Any) -> PhaseJob:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "task": "Fix the add function",
        "phase_plan_id": "phase-001",
        "phase_name": "Fix add",
        "phase_description": "add() must return the sum",
        "verification_criteria": ["tests pass"],
        "attempt": 1,
        "worktree": worktree,
        "relevant_files": ["calc.py"],
    }
    values.update(overrides)
    return PhaseJob(**values)


FIX = """calc.py
```python
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
```
"""


async def test_llm_executor_applies_edits_and_sends_the_request(repo: Path) -> None:
    llm = ScriptedLLM(FIX)
    executor = LLMExecutor(
        llm, model="coder:7b", temperature=0.1, max_tokens=900, context_window=8192
    )
    log = Log()
    job = job_for(repo, attempt=2, relevant_files=["calc.py", "missing.py", "../outside.py"])
    result = await executor.execute(job, log)
    assert result.ok, result.error
    assert result.changed_files == ["calc.py"]
    assert result.summary == "applied 1 edit blocks to: calc.py"
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    (request,) = llm.requests
    assert (request.role, request.model, request.run_id, request.phase, request.attempt) == (
        "executor",
        "coder:7b",
        "run-1",
        "phase-001",
        2,
    )
    assert (request.temperature, request.max_tokens, request.context_window) == (0.1, 900, 8192)
    system, user = request.messages
    assert system["role"] == "system" and "<<<<<<< SEARCH" in system["content"]
    assert (
        "Fix the add function" in user["content"] and "add() must return the sum" in user["content"]
    )
    assert "- tests pass" in user["content"]
    assert "### calc.py\n```\ndef add(a, b):\n    return a - b\n```" in user["content"]
    assert "Your previous attempt failed" not in user["content"]
    assert log.at("llm") == [FIX]
    assert any("../outside.py" in m for m in log.at("warning"))


async def test_llm_executor_sends_previous_failure_and_findings(repo: Path) -> None:
    llm = ScriptedLLM(FIX)
    job = job_for(
        repo,
        previous_failure="verification failed: test_add expected 3, got -1",
        findings_feedback=["high: calc.py:2 wrong operator", "low: missing docstring"],
        context="Repository files:\ncalc.py",
    )
    await LLMExecutor(llm, model="m").execute(job, Log())
    user = llm.requests[0].messages[1]["content"]
    assert "Your previous attempt failed:\nverification failed: test_add expected 3, got -1" in user
    assert "- high: calc.py:2 wrong operator\n- low: missing docstring" in user
    assert "Repository files:\ncalc.py" in user


async def test_llm_executor_fails_clearly_without_blocks(repo: Path) -> None:
    result = await LLMExecutor(ScriptedLLM("Looks fine to me."), model="m").execute(
        job_for(repo), Log()
    )
    assert not result.ok and result.retriable
    assert "no SEARCH/REPLACE block" in (result.error or "")


async def test_llm_executor_reports_malformed_and_unmatched_blocks(repo: Path) -> None:
    malformed = "calc.py\n```\n<<<<<<< SEARCH\n    return a - b\n>>>>>>> REPLACE\n```\n"
    result = await LLMExecutor(ScriptedLLM(malformed), model="m").execute(job_for(repo), Log())
    assert not result.ok and "line 3" in (result.error or "") and "=======" in (result.error or "")

    unmatched = FIX.replace("return a - b", "return a * b")
    other = "README.md\n```\n<<<<<<< SEARCH\n# Demo\n=======\n# Calc\n>>>>>>> REPLACE\n```\n"
    result = await LLMExecutor(ScriptedLLM(other + unmatched), model="m").execute(
        job_for(repo), Log()
    )
    assert not result.ok
    assert "SEARCH text not found in calc.py" in (result.error or "")
    assert "return a * b" in (result.error or "")
    assert (repo / "README.md").read_text() == "# Demo\n"  # atomic: the good block was not written


async def test_llm_errors_become_failed_attempts(repo: Path) -> None:
    llm = ScriptedLLM(LLMRetriableError("timed out"), ModelNotFoundError("model 'x' is missing"))
    executor = LLMExecutor(llm, model="x")
    first = await executor.execute(job_for(repo), Log())
    second = await executor.execute(job_for(repo), Log())
    assert (first.ok, first.retriable, first.error) == (False, True, "timed out")
    assert (second.ok, second.retriable) == (False, False) and "missing" in (second.error or "")


async def test_llm_executor_skips_oversized_files(repo: Path) -> None:
    (repo / "big.txt").write_text("x" * 500)
    llm = ScriptedLLM(FIX)
    log = Log()
    await LLMExecutor(llm, model="m", max_file_bytes=100).execute(
        job_for(repo, relevant_files=["big.txt", "calc.py"]), log
    )
    assert "xxxx" not in llm.requests[0].messages[1]["content"]
    assert any("big.txt" in m for m in log.at("warning"))


def test_llm_executor_builds_from_config_and_as_entry_point_factory() -> None:
    config = SimpleNamespace(rag=SimpleNamespace(max_file_bytes=1234), execution=SimpleNamespace())
    model_def = SimpleNamespace(
        name="coder", model="coder:7b", temperature=0.2, max_tokens=None, context_window=4096
    )
    llm = ScriptedLLM()
    for executor in (
        LLMExecutor.from_config(config, llm, model_def),
        executor_factory("llm")(config, llm, model_def),
    ):
        assert isinstance(executor, LLMExecutor) and executor.name == "llm"
        assert (executor.model, executor.temperature, executor.context_window) == (
            "coder:7b",
            0.2,
            4096,
        )
        assert executor.max_file_bytes == 1234 and executor.llm is llm


AGENT = r"""
import json, os, pathlib, subprocess, sys, time
action, via = sys.argv[1], sys.argv[2]
if via == "stdin":
    prompt = sys.stdin.read()
elif via == "file":
    prompt = pathlib.Path(sys.argv[3]).read_text()
else:
    prompt = sys.argv[3]
print("agent starting", flush=True)
print("working in", os.getcwd(), file=sys.stderr, flush=True)
if action == "edit":
    pathlib.Path("calc.py").write_text("def add(a, b):\n    return a + b\n")
    pathlib.Path("notes").mkdir()
    pathlib.Path("notes/prompt.txt").write_text(prompt)
    pathlib.Path("notes/info.json").write_text(json.dumps({"env": dict(os.environ), "argv": sys.argv}))
    print("done", flush=True)
elif action == "commit":
    pathlib.Path("calc.py").write_text("def add(a, b):\n    return a + b\n")
    subprocess.run(["git", "commit", "-qam", "agent commit"], check=True)
elif action == "fail":
    print("boom: cannot continue", flush=True)
    sys.exit(3)
elif action == "flood":
    sys.stdout.write("z" * 5_000_000)
    print("LAST", flush=True)
    sys.exit(3)
elif action == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pathlib.Path(sys.argv[-1]).write_text(str(child.pid))
    print("hanging", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    return script


def external(
    agent: Path, action: str, via: str, *extra: str, timeout: float = 30
) -> ExternalAgentExecutor:
    tail = {"stdin": [], "file": ["{prompt_file}"], "arg": ["{prompt}"]}[via]
    return ExternalAgentExecutor(
        [sys.executable, str(agent), action, via, *tail, *extra],
        prompt_via=via,
        timeout_seconds=timeout,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("via", ["stdin", "file", "arg"])
async def test_external_agent_edits_and_gets_the_prompt(
    repo: Path, agent: Path, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", "sekrit-value-123")
    monkeypatch.setenv("MY_PLAIN_SETTING", "visible")
    log = Log()
    job = job_for(repo, previous_failure="tests failed", findings_feedback=["high: wrong operator"])
    result = await external(agent, "edit", via).execute(job, log)
    assert result.ok, result.error
    assert sorted(result.changed_files) == ["calc.py", "notes/info.json", "notes/prompt.txt"]
    prompt = (repo / "notes/prompt.txt").read_text()
    assert "Fix the add function" in prompt and "Edit the files directly" in prompt
    assert "tests failed" in prompt and "high: wrong operator" in prompt
    assert "SEARCH/REPLACE" not in prompt
    info = json.loads((repo / "notes/info.json").read_text())
    assert "MY_API_KEY" not in info["env"] and "sekrit-value-123" not in json.dumps(info)
    assert info["env"]["MY_PLAIN_SETTING"] == "visible"
    assert log.at("agent") == ["agent starting", f"working in {repo}", "done"]
    if via == "file":
        prompt_file = Path(info["argv"][3])
        assert not prompt_file.exists() and repo not in prompt_file.parents


async def test_external_agent_without_changes_fails(repo: Path, agent: Path) -> None:
    result = await external(agent, "noop", "arg").execute(job_for(repo), Log())
    assert not result.ok and "the agent made no changes" in (result.error or "")


async def test_external_agent_exit_code_and_last_lines(repo: Path, agent: Path) -> None:
    result = await external(agent, "fail", "stdin").execute(job_for(repo), Log())
    assert not result.ok
    assert "exited with code 3" in (result.error or "") and "boom: cannot continue" in (
        result.error or ""
    )


async def test_external_agent_output_is_stored_capped(repo: Path, agent: Path) -> None:
    log = Log()
    result = await external(agent, "flood", "stdin").execute(job_for(repo), log)
    said = log.at("agent")
    assert sum(len(line.encode()) for line in said) <= 262_144
    assert said[0] == "agent starting" and said[-1].endswith("zzzLAST")
    assert any(line.startswith("… ") and line.endswith(" bytes omitted …") for line in said)
    error = result.error or ""
    assert "exited with code 3" in error and error.endswith("zzzLAST")
    assert "bytes omitted" in error and len(error.encode()) <= 4096 + 100


async def test_external_agent_commits_become_changes(repo: Path, agent: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    result = await external(agent, "commit", "stdin").execute(job_for(repo), Log())
    assert result.ok and result.changed_files == ["calc.py"]
    assert git(repo, "rev-parse", "HEAD") == head


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_external_agent_timeout_kills_the_process_group(
    repo: Path, agent: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    log = Log()
    result = await external(agent, "hang", "stdin", str(pid_file), timeout=1.0).execute(
        job_for(repo), log
    )
    assert not result.ok and "timed out after 1 s" in (result.error or "")
    assert "hanging" in (result.error or "")
    assert not _alive(int(pid_file.read_text()))


async def test_external_agent_missing_program_is_not_retriable(repo: Path) -> None:
    executor = ExternalAgentExecutor(
        ["definitely-not-an-agent-xyz", "{prompt}"], prompt_via="arg", timeout_seconds=5
    )
    result = await executor.execute(job_for(repo), Log())
    assert (
        not result.ok
        and not result.retriable
        and "definitely-not-an-agent-xyz" in (result.error or "")
    )


def test_external_from_config() -> None:
    ext = SimpleNamespace(
        command=["claude", "-p", "{prompt}"], prompt_via="arg", timeout_seconds=12
    )
    config = SimpleNamespace(
        execution=SimpleNamespace(external=ext),
        verification=SimpleNamespace(max_output_bytes=5000),
    )
    for executor in (
        ExternalAgentExecutor.from_config(config),
        executor_factory("external")(config, None, None),
    ):
        assert executor.command == ["claude", "-p", "{prompt}"] and executor.timeout_seconds == 12.0
        assert executor.max_output_bytes == 5000
    empty = SimpleNamespace(
        execution=SimpleNamespace(
            external=SimpleNamespace(command=[], prompt_via="stdin", timeout_seconds=1)
        ),
        verification=config.verification,
    )
    with pytest.raises(ConfigError, match="execution.external.command is empty"):
        ExternalAgentExecutor.from_config(empty)
