"""Real coding agents from npm driven by a real `orchestrator run --agent NAME` (not a test double).

For each pinned agent: npm installs it once into a cache folder; a scripted OpenAI-compatible model
server on 127.0.0.1 answers the agent's model calls (create subtract.py through the agent's own
write tool, then say it is done); `orchestrator run ... --agent NAME --headless` runs one phase;
the agent asks permission to write and `orchestrator approve ID` answers it, as a person would
(no policy, no --yes); the phase must commit subtract.py and pass verification (a test command).
The plan comes from a replay cassette: only the agent's model calls go to the scripted server.

Prints what each stage did and exits 0 when at least two agents completed.

    python bench/agents.py [--agents qwen,opencode] [--cache DIR]

The cache folder defaults to $ORCHESTRATOR_HOME/cache/bench-agents (when ORCHESTRATOR_HOME is set,
the runs are kept in that home too), else ~/.cache/agent-orchestrator/bench-agents.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cassette import phase, write_cassette
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripted import ScriptedServer

# The agents, pinned: qwen-code 0.15.10 is the last release that runs on Node 20 (later ones need
# Node 22); opencode ships a native binary; Claude Code runs through Zed's ACP adapter, whose
# Claude Agent SDK bundles the Claude Code it drives.
PINS = {
    "qwen": ("@qwen-code/qwen-code", "0.15.10"),
    "opencode": ("opencode-ai", "1.18.33"),
    "claude": ("@zed-industries/claude-code-acp", "0.16.2"),
}
ANTHROPIC_AGENTS = frozenset({"claude"})  # the others talk to an OpenAI-compatible server
MODEL = "bench-model"
API_KEY = "sk-bench-local-only"
TASK = "Add a subtract function"
SOURCE = 'def sub(a, b):\n    """a minus b."""\n    return a - b\n'
CHECK = "python3 -c 'from subtract import sub; assert sub(5, 3) == 2'"
RUN_TIMEOUT = 600.0
_ROOT_PATTERN = re.compile(r'(/[^\s"\\]*/worktrees/[^/\s"\\]+/[^/\s"\\]+)')


@dataclass
class Outcome:
    agent: str
    ok: bool = False
    seconds: float = 0.0
    run_id: str | None = None
    asked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


# ---- the scripted model ------------------------------------------------------------------------


def _write_tool(tools: dict[str, dict[str, Any]]) -> tuple[str, str, str] | None:
    """(name, path argument, content argument) of the agent's tool that writes a whole file."""
    for name, params in tools.items():
        props = params.get("properties") or {}
        path_key = next((k for k in props if "path" in k.lower()), None)
        if "write" in name.lower() and path_key and "content" in props:
            return name, path_key, "content"
    return None


def model_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model behind an OpenAI-compatible API."""
    tools = {
        t["function"]["name"]: t["function"].get("parameters") or {}
        for t in body.get("tools") or []
        if t.get("type") == "function"
    }
    messages = body.get("messages") or []
    done = any(m.get("role") == "tool" for m in messages)
    return _answer(tools, messages, done)


def model_answer_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model behind Anthropic's messages API (tool results come as user blocks)."""
    tools = {t["name"]: t.get("input_schema") or {} for t in body.get("tools") or [] if "name" in t}
    messages = body.get("messages") or []
    done = any(
        isinstance(m.get("content"), list)
        and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in m["content"])
        for m in messages
    )
    return _answer(tools, messages, done)


def _answer(
    tools: dict[str, dict[str, Any]], messages: list[dict[str, Any]], done: bool
) -> dict[str, Any]:
    """Write subtract.py with the agent's own write tool, then say it is done."""
    if not tools:  # side requests: session titles, summaries
        return {"content": "Subtract function"}
    if done:
        return {"content": "Done: subtract.py defines sub(a, b)."}
    write = _write_tool(tools)
    if write is None:
        return {"content": f"no write tool among {sorted(tools)}"}
    name, path_key, content_key = write
    roots = _ROOT_PATTERN.findall(json.dumps(messages))
    path = f"{roots[0]}/subtract.py" if roots else "subtract.py"
    return {
        "content": "I will create subtract.py.",
        "tool_calls": [{"name": name, "arguments": {path_key: path, content_key: SOURCE}}],
    }


def agent_env(name: str, base_url: str) -> dict[str, str]:
    """How each agent is pointed at the scripted server (its own variables, nothing of ours)."""
    if name == "claude":
        env = {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        if os.geteuid() == 0:  # Claude Code refuses its permission bypass mode as root otherwise
            env["IS_SANDBOX"] = "1"
        return env
    if name == "qwen":
        return {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": API_KEY, "OPENAI_MODEL": MODEL}
    config = {
        "provider": {
            "bench": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Bench",
                "options": {"baseURL": base_url, "apiKey": API_KEY},
                "models": {MODEL: {"name": "Bench model", "tool_call": True}},
            }
        },
        "model": f"bench/{MODEL}",
        "permission": {"edit": "ask", "bash": "ask"},
        "autoupdate": False,
        "share": "disabled",
    }
    return {
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    }


# ---- install -----------------------------------------------------------------------------------


def installed_version(cache: Path, package: str) -> str | None:
    manifest = cache / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install(cache: Path, names: list[str]) -> bool:
    """npm-install the pinned agents into the cache (once); False when npm is missing or fails."""
    missing = [
        f"{PINS[n][0]}@{PINS[n][1]}"
        for n in names
        if installed_version(cache, PINS[n][0]) != PINS[n][1]
    ]
    if not missing:
        say(f"install: {', '.join(names)} already in {cache}")
        return True
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"install: npm install {' '.join(missing)} into {cache} ...")
    try:
        proc = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), *missing],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"install: npm failed: {exc}")
        return False
    if proc.returncode != 0:
        say(f"install: npm exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        return False
    say(f"install: done in {time.monotonic() - started:.1f} s")
    return True


# ---- one run -----------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    git(
        path, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "init"
    )
    return path


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def drive(name: str, work: Path, home: Path, cache: Path, base_url: str) -> Outcome:
    """One real run with the agent: approve its permission requests through the CLI."""
    out = Outcome(name)
    repo = make_repo(work / f"repo-{name}")
    cassette = write_cassette(
        work / f"plan-{name}.jsonl",
        [
            {
                **phase("subtract", name="Add the subtract function"),
                "description": "Create subtract.py with sub(a, b) returning a - b",
                "verification_criteria": ["sub(5, 3) returns 2"],
            }
        ],
        {},
    )
    user_home = work / f"user-{name}"
    user_home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR__")},
        "ORCHESTRATOR_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "PATH": f"{cache / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(user_home),  # the agent's own config folders stay out of the real home
        "ORCHESTRATOR__MODELS__EMBEDDER": "hashing-256",
        "ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS": "1",
        "ORCHESTRATOR__EXECUTION__ON_PHASE_FAILURE": "abort",
        "ORCHESTRATOR__VERIFICATION__TEST": json.dumps([CHECK]),
        **agent_env(name, base_url),
    }
    log_path = work / f"run-{name}.log"
    started = time.monotonic()
    args = ["run", TASK, "--repo", str(repo), "--headless", "-v", "--agent", name]
    args += ["--provider", "replay", "--replay", str(cassette)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            while proc.poll() is None:
                if time.monotonic() - started > RUN_TIMEOUT:
                    proc.kill()
                    out.notes.append(f"no result after {RUN_TIMEOUT:.0f} s; killed")
                    break
                out.run_id = out.run_id or _run_id(log_path)
                if out.run_id:
                    _approve_pending(env, out)
                time.sleep(0.5)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
    out.seconds = time.monotonic() - started
    out.run_id = out.run_id or _run_id(log_path)
    lines = log_path.read_text(errors="replace").splitlines()
    for line in lines:
        if any(mark in line for mark in ("tool:", "diff:", "wrote ", "agent_permission", "usage")):
            out.notes.append(line.strip()[:200])
    if proc.returncode != 0 or out.run_id is None:
        out.notes.append(f"orchestrator exited {proc.returncode}; last lines:")
        out.notes.extend(line[:300] for line in lines[-15:])
        return out
    shown = cli(env, "show", out.run_id, "--json")
    doc = json.loads(shown.stdout)
    source = git(repo, "show", f"{doc['branch']}:subtract.py")
    report = home / "reports" / out.run_id / "subtract-attempt-1.txt"
    verified = report.is_file() and "exit: 0" in report.read_text()
    out.notes.append(
        f"run {out.run_id}: {doc['status']}; phase commit {doc['phases'][0]['commit'][:10]}"
    )
    out.notes.append(f"verification `{CHECK}`: {'exit 0' if verified else 'NOT PASSED'}")
    usage = (doc.get("usage") or {}).get("executor")
    if usage:
        out.notes.append(f"agent usage recorded: {usage}")
    out.ok = (
        doc["status"] == "completed" and "def sub(a, b)" in source and verified and bool(out.asked)
    )
    if not out.asked:
        out.notes.append("the agent asked no permission")
    return out


def _run_id(log_path: Path) -> str | None:
    first = log_path.read_text(errors="replace").split("\n", 1)[0]
    return first.split()[1] if first.startswith("run ") and len(first.split()) > 1 else None


def _approve_pending(env: dict[str, str], out: Outcome) -> None:
    """Answer the run's pending agent_permission interventions with `orchestrator approve`."""
    listed = cli(env, "interventions", "--run", str(out.run_id), "--pending", "--json")
    if listed.returncode != 0:
        return
    for item in json.loads(listed.stdout or "[]"):
        if item["kind"] != "agent_permission":
            continue
        answer = cli(env, "approve", item["id"], "--note", "approved by bench/agents.py")
        out.asked.append(f"{item['reason']} -> approve: exit {answer.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--agents", default=",".join(PINS), help="comma-separated: qwen,opencode,claude"
    )
    parser.add_argument("--cache", help="folder for the npm installs")
    args = parser.parse_args()
    names = [n for n in args.agents.split(",") if n]
    unknown = [n for n in names if n not in PINS]
    if unknown:
        parser.error(f"unknown agents {unknown}; pinned: {sorted(PINS)}")
    env_home = os.environ.get("ORCHESTRATOR_HOME")
    default_cache = (
        Path(env_home) / "cache" / "bench-agents"
        if env_home
        else Path.home() / ".cache" / "agent-orchestrator" / "bench-agents"
    )
    cache = Path(args.cache) if args.cache else default_cache
    say(
        f"node: {subprocess.run(['node', '--version'], capture_output=True, text=True, check=False).stdout.strip() or 'missing'}"
    )
    if not install(cache, names):
        return 1
    for name in names:
        package, version = PINS[name]
        say(f"{name}: {package}@{installed_version(cache, package)} (pinned {version})")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        work = Path(tmp)
        home = Path(env_home) if env_home else work / "home"
        openai = FakeOpenAI(models=[MODEL], api_key=API_KEY)
        openai.default_answer = model_answer
        anthropic = FakeAnthropic(models=[MODEL, "*"], api_key=API_KEY)  # it picks its own names
        anthropic.default_answer = model_answer_anthropic
        with openai, anthropic:
            for name in names:
                say(f"\n== {name}: orchestrator run {TASK!r} --agent {name}")
                server: ScriptedServer = anthropic if name in ANTHROPIC_AGENTS else openai
                base_url = (
                    openai.base_url if server is openai else f"http://127.0.0.1:{anthropic.port}"
                )
                calls_before = len(server.requests)
                outcome = drive(name, work, home, cache, base_url)
                calls = len(server.requests) - calls_before
                for line in outcome.asked:
                    say(f"  permission: {line}")
                for line in outcome.notes:
                    say(f"  {line}")
                say(f"  model calls answered by the scripted server: {calls}")
                say(
                    f"  {name}: {'COMPLETED' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f} s"
                )
                outcomes.append(outcome)
    done = [o.agent for o in outcomes if o.ok]
    say(f"\nagents completed: {len(done)} of {len(outcomes)} ({', '.join(done) or 'none'})")
    return 0 if len(done) >= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
