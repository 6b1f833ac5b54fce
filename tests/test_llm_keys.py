"""API keys: canary values for every provider go through whole runs (one call refused with 401)
and every command, and appear nowhere under the home folder nor in any output. Also the
`models` command and the masked keys of `config show`."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from pathlib import Path

from tests.cassette import new_file
from tests.clirun import cli
from tests.conftest import make_repo
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI
from tests.test_llm_runs import MODELS_YAML, PLAN

CANARIES = {
    "OPENAI_API_KEY": "canary-openai-7f3a9c1e5b",
    "ANTHROPIC_API_KEY": "canary-anthropic-2d8e4f6a0c",
    "OLLAMA_API_KEY": "canary-ollama-9b1c3e5d7f",
}


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_canary_keys_are_never_written_or_printed(tmp_path: Path) -> None:
    user_home = tmp_path / "user"  # HOME: the SDKs' caches and config folders would go here
    home = user_home / "orchestrator"
    home.mkdir(parents=True)
    (home / "models.yaml").write_text(MODELS_YAML)
    outputs: list[subprocess.CompletedProcess[str]] = []
    with (
        FakeOpenAI(["gpt-test"], api_key=CANARIES["OPENAI_API_KEY"]) as openai,
        FakeAnthropic(["claude-test"], api_key=CANARIES["ANTHROPIC_API_KEY"]) as anthropic,
        FakeOllama({"test-model": 8192, "qwen2.5-coder:7b": 32768}) as ollama,
    ):
        env = {
            **CANARIES,
            "HOME": str(user_home),
            "XDG_CACHE_HOME": str(user_home / ".cache"),
            "OLLAMA_HOST": ollama.url,
            "ORCHESTRATOR__LLM__OPENAI__BASE_URL": openai.base_url,
            "ORCHESTRATOR__LLM__ANTHROPIC__BASE_URL": anthropic.base_url,
            "ORCHESTRATOR__EXECUTION__ON_PHASE_FAILURE": "continue",
        }
        # Run 1: planner on Anthropic, executor on OpenAI, whose first answer is a 401 that
        # echoes the key it received (the error must be scrubbed before it is stored).
        anthropic.answers = [PLAN]
        openai.answers = [{"status": 401, "error": "Incorrect API key.", "echo_key": True}]
        first = make_repo(tmp_path / "first")
        cassette = home / "cassettes" / "run.jsonl"
        outputs.append(
            cli(
                home,
                "run",
                "two files",
                "--repo",
                str(first),
                "--headless",
                "-v",
                "--record",
                str(cassette),
                **env,
            )
        )
        assert outputs[-1].returncode == 1  # phase-001 failed for good; phase-002 was skipped
        assert "refused the API key in OPENAI_API_KEY" in outputs[-1].stdout + outputs[-1].stderr
        # Run 2: everything on Ollama, which sends OLLAMA_API_KEY as a Bearer header.
        ollama.chat_answers = [
            json.dumps({"phases": [{**json.loads(PLAN)["phases"][0]}]}),
            new_file("one.txt", "one\n"),
        ]
        second = make_repo(tmp_path / "second")
        outputs.append(
            cli(
                home,
                "run",
                "one file",
                "--repo",
                str(second),
                "--headless",
                "-v",
                "--provider",
                "ollama",
                "--model",
                "test-model",
                **env,
            )
        )
        assert outputs[-1].returncode == 0, outputs[-1].stdout + outputs[-1].stderr
        runs = json.loads(cli(home, "runs", "--json", **env).stdout)
        for run in runs:
            for args in (("show", run["id"], "--json"), ("export", run["id"])):
                outputs.append(cli(home, *args, **env))
        for args in (("interventions",), ("models",), ("config", "show")):
            outputs.append(cli(home, *args, **env))
            assert outputs[-1].returncode == 0, outputs[-1].stderr
        received = {
            "OPENAI_API_KEY": [r["headers"].get("authorization") for r in openai.requests],
            "ANTHROPIC_API_KEY": [
                r["headers"].get("authorization") or r["headers"].get("x-api-key")
                for r in anthropic.requests
            ],
            "OLLAMA_API_KEY": [r["headers"].get("authorization") for r in ollama.requests],
        }
    # The keys were really in use...
    for name, value in CANARIES.items():
        assert any(h and value in h for h in received[name]), name
    # ...and none of them is under the home folder or in any output.
    assert len(runs) == 2 and cassette.exists()
    for name, value in CANARIES.items():
        assert _files_holding(user_home, value.encode()) == [], name
        for proc in outputs:
            assert value not in proc.stdout and value not in proc.stderr, (name, proc.args)
    models_text = next(p.stdout for p in outputs if "REACHABLE" in p.stdout)
    assert "fake-claude" in models_text and "anthropic" in models_text
    config_show = next(p.stdout for p in outputs if "# API keys" in p.stdout)
    assert f"OPENAI_API_KEY: set (******, {len(CANARIES['OPENAI_API_KEY'])} characters)" in (
        config_show
    )


def test_models_lists_provider_presence_context_and_price(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    home = tmp_path / "home"
    with (
        FakeOllama({"qwen2.5-coder:7b": 32768, "nomic-embed-text:latest": 2048}) as ollama,
        FakeOpenAI(["gpt-4.1-mini"]) as openai,
    ):
        proc = cli(
            home,
            "models",
            "--json",
            OLLAMA_HOST=ollama.url,
            ORCHESTRATOR__LLM__OPENAI__BASE_URL=openai.base_url,
            ORCHESTRATOR__LLM__ANTHROPIC__BASE_URL=f"http://127.0.0.1:{closed}",
            ANTHROPIC_API_KEY="sk-ant-test-models-0000",
        )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    coder = rows["qwen2.5-coder:7b"]
    assert (coder["provider"], coder["reachable"], coder["present"]) == ("ollama", True, True)
    assert coder["context_length"] == 32768 and set(coder["roles"]) == {"planner", "executor"}
    assert rows["llama3.1:8b"]["present"] is False
    assert "ollama pull llama3.1:8b" in rows["llama3.1:8b"]["note"]
    assert rows["nomic-embed-text"]["present"] is True  # pulled as :latest
    gpt = rows["gpt-4.1-mini"]
    assert (gpt["reachable"], gpt["present"], gpt["input_per_mtok"]) == (True, True, 0.4)
    assert rows["gpt-4.1"]["present"] is False
    claude = rows["claude-sonnet-4-5"]
    assert claude["reachable"] is False and f"127.0.0.1:{closed}" in claude["note"]
    assert rows["all-minilm-l6-v2-int8"]["reachable"] is None


def test_missing_hosted_key_fails_before_the_run_is_stored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models.yaml").write_text(MODELS_YAML)
    repo = make_repo(tmp_path / "repo")
    proc = cli(
        home, "run", "x", "--repo", str(repo), "--headless", OPENAI_API_KEY="", ANTHROPIC_API_KEY=""
    )
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in proc.stderr and "llm.secrets_file" in proc.stderr
    with sqlite3.connect(home / "orchestrator.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_a_secrets_file_supplies_keys_that_config_show_masks(tmp_path: Path) -> None:
    home = tmp_path / "home"
    secrets = tmp_path / "keys.env"
    secrets.write_text("# provider keys\nexport ANTHROPIC_API_KEY='sk-ant-from-file-123456'\n")
    secrets.chmod(0o600)
    proc = cli(
        home,
        "config",
        "show",
        ORCHESTRATOR__LLM__SECRETS_FILE=str(secrets),
        ANTHROPIC_API_KEY="",
        OPENAI_API_KEY="",
    )
    assert proc.returncode == 0, proc.stderr
    assert "ANTHROPIC_API_KEY: set (******, 23 characters) from secrets file" in proc.stdout
    assert "OPENAI_API_KEY: not set" in proc.stdout
    assert "sk-ant-from-file" not in proc.stdout
