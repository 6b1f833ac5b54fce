"""Is an agent installed, which version, does its Node suffice, does it look logged in (cheap checks)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from core.agents.presets import PRESETS, AgentPreset
from core.procenv import safe_env

_VERSION_TIMEOUT = 15.0
_PACKAGE_JSON_DEPTH = 6


@dataclass(frozen=True)
class AgentStatus:
    """One preset as `orchestrator agents` shows it."""

    name: str
    title: str
    installed: bool
    path: str | None
    version: str | None
    mode: str  # "acp" or "plain": what a run would use
    command: list[str]
    install: str
    login: str
    logged_in: bool | None  # None: no cheap way to tell
    login_evidence: str
    problem: str | None  # why it cannot run here (e.g. needs a newer Node)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def which(program: str, env: dict[str, str] | None = None) -> str | None:
    """The program's path on the agent's PATH, or None."""
    path = (env or os.environ).get("PATH")
    return shutil.which(program, path=path)


def _manifest(program_path: str) -> dict[str, object]:
    """The package.json of the npm package a program belongs to ({} when there is none)."""
    folder = Path(os.path.realpath(program_path)).parent
    for _ in range(_PACKAGE_JSON_DEPTH):
        manifest = folder / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
        if folder.parent == folder:
            break
        folder = folder.parent
    return {}


def node_requirement(program_path: str) -> int | None:
    """The major Node version the program's package.json `engines.node` asks for, when it has one."""
    engines = _manifest(program_path).get("engines")
    wanted = engines.get("node", "") if isinstance(engines, dict) else ""
    match = re.search(r"(\d+)", str(wanted))
    return int(match.group(1)) if match else None


def _is_node_script(program_path: str) -> bool:
    try:
        with open(os.path.realpath(program_path), "rb") as handle:
            return b"node" in handle.readline()
    except OSError:
        return False


async def _output(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Exit code and merged output of a short command (bounded in time; -1 when it did not finish)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return -1, str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _VERSION_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timed out"
    return proc.returncode or 0, out.decode("utf-8", errors="replace").strip()


async def node_major(env: dict[str, str]) -> int | None:
    """The major version of the `node` on the agent's PATH."""
    node = which("node", env)
    if node is None:
        return None
    code, out = await _output([node, "--version"], env)
    match = re.match(r"v?(\d+)", out) if code == 0 else None
    return int(match.group(1)) if match else None


async def node_problem(
    program_path: str, preset: AgentPreset | None, env: dict[str, str]
) -> str | None:
    """Why the program cannot run on this machine's Node (None when it can or is not a Node program)."""
    if not _is_node_script(program_path):
        return None
    needed = node_requirement(program_path) or (preset.min_node if preset else None)
    if needed is None:
        return None
    have = await node_major(env)
    if have is None:
        return f"{program_path} is a Node program but no `node` is on PATH; install Node {needed} or newer"
    if have < needed:
        return (
            f"{program_path} needs Node {needed} or newer, and the node on PATH is version {have}; "
            f"install a newer Node (e.g. `nvm install {needed}`) or an older release of the agent"
        )
    return None


def logged_in(preset: AgentPreset, env: dict[str, str] | None = None) -> tuple[bool | None, str]:
    """(looks logged in, why we think so) from its credential variables and files; None: cannot tell."""
    source = env if env is not None else os.environ
    for name in preset.env:
        if source.get(name) and any(
            part in name for part in ("KEY", "TOKEN", "CREDENTIALS", "PROVIDER")
        ):
            return True, f"${name} is set"
    home = Path(source.get("HOME") or Path.home())
    for rel in preset.credential_files:
        if (home / rel).is_file():
            return True, f"~/{rel} exists"
    if not preset.credential_files:
        return None, "no cheap check"
    return False, "no credential variable set and no " + ", ".join(
        f"~/{rel}" for rel in preset.credential_files
    )


async def status_of(preset: AgentPreset, mode: str = "auto") -> AgentStatus:
    """Installed or not (path, version), the mode a run would use, login and Node checks."""
    env = safe_env()
    acp_path = which(preset.acp[0], env) if preset.acp else None
    plain_path = which(preset.plain[0], env) if preset.plain else None
    use_acp = mode == "acp" or (mode == "auto" and (acp_path is not None or plain_path is None))
    command = preset.acp if use_acp and preset.acp else preset.plain
    path = acp_path if use_acp else plain_path
    version = problem = None
    if path is not None:
        if _is_node_script(path):  # an npm package: its manifest knows (ACP servers print none)
            version = str(_manifest(path).get("version") or "") or None
        if version is None:
            code, out = await _output([path, *preset.version_args], env)
            version = out.splitlines()[-1][:80] if code == 0 and out else None
        problem = await node_problem(path, preset, env)
    signed_in, evidence = logged_in(preset)
    return AgentStatus(
        name=preset.name,
        title=preset.title,
        installed=path is not None,
        path=path,
        version=version,
        mode="acp" if use_acp and preset.acp else "plain",
        command=command,
        install=preset.install,
        login=preset.login,
        logged_in=signed_in,
        login_evidence=evidence,
        problem=problem,
    )


async def all_statuses() -> list[AgentStatus]:
    """Every preset's status, checked concurrently."""
    return list(await asyncio.gather(*(status_of(p) for p in PRESETS.values())))
