"""Runs on a repository named by git URL: a clone per home, the run branch pushed to the origin
after each phase, a refused push stored truthfully, a run continued in another home, apply from
another checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.git.remote_url import clean_url, is_url, split_credentials
from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli, cli_json, spawn
from tests.conftest import git, make_repo
from tests.waiting import wait_until

TASK = "Add two files"


def make_origin(tmp_path: Path) -> Path:
    """A bare `origin` repository holding one commit on main, as a team's server would."""
    work = make_repo(tmp_path / "seed", {"README.md": "hello\n"})
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(work, "push", "-q", str(origin), "main")
    return origin


def phase_commits(origin: Path, branch: str) -> list[str]:
    """The Orchestrator-Phase trailer of every commit on `branch` after main, one per commit."""
    out = git(
        origin,
        "log",
        "--format=%(trailers:key=Orchestrator-Phase,valueonly,separator=%x2C)",
        f"main..{branch}",
    )
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def run_args(url: str, cassette: Path) -> list[str]:
    return [
        "run",
        TASK,
        "--repo",
        url,
        "--headless",
        "--yes",
        "--provider",
        "replay",
        "--replay",
        str(cassette),
    ]


def test_urls_are_told_from_paths_and_stored_without_credentials(tmp_path: Path) -> None:
    assert is_url("file:///srv/git/app.git") and is_url("https://example.com/team/app.git")
    assert is_url("git@example.com:team/app.git") and is_url("ssh://git@example.com/app.git")
    assert not is_url(str(tmp_path)) and not is_url("./app") and not is_url("app")
    clean, creds = split_credentials("https://alice:s3cr%40t@example.com:8443/team/app.git")
    assert clean == "https://example.com:8443/team/app.git"
    assert creds is not None and (creds.username, creds.password) == ("alice", "s3cr@t")
    assert "s3cr" not in repr(creds)
    clean, creds = split_credentials("https://ghp_token123@example.com/app.git")
    assert clean == "https://example.com/app.git" and creds is not None
    assert creds.password == "ghp_token123"
    assert clean_url("ssh://git:pw@example.com/app.git") == "ssh://git@example.com/app.git"
    assert clean_url("git@example.com:team/app.git") == "git@example.com:team/app.git"


def share_database(source: Path, target: Path) -> None:
    """Give `target` the database of `source`, as homes on several machines share one store."""
    target.mkdir(exist_ok=True)
    for old in target.glob("orchestrator.db*"):
        old.unlink()
    for db in source.glob("orchestrator.db*"):
        shutil.copy(db, target / db.name)


def test_each_phase_is_pushed_before_it_is_recorded_and_a_refused_push_is_stored(
    tmp_path: Path,
) -> None:
    origin = make_origin(tmp_path)
    url = origin.as_uri()
    # The origin refuses any push whose tip holds a file listed in its refuse-list.
    refuse = origin / "refuse-list"
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n  for f in $(cat refuse-list); do\n"
        '    if git cat-file -e "$new:$f" 2>/dev/null; then\n'
        '      echo "policy: $f may not be pushed here" >&2; exit 1\n    fi\n  done\ndone\n'
    )
    hook.chmod(0o755)
    phases = [
        phase("phase-001"),
        phase("phase-002", ["phase-001"]),
        phase("phase-003", ["phase-002"]),
    ]
    answers = {("phase-001", 1): new_file("a.txt", "a")}
    for attempt in (1, 2):
        answers[("phase-002", attempt)] = new_file("b.txt", "b")
        answers[("phase-003", attempt)] = new_file("c.txt", "c")
    cassette = write_cassette(tmp_path / "c.jsonl", phases, answers)

    # Home 1: phase-001 is pushed and recorded, the origin refuses phase-002.
    refuse.write_text("b.txt\n")
    home1 = tmp_path / "home1"
    proc = cli(home1, *run_args(url, cassette))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = proc.stdout.split()[1]
    branch = f"orchestrator/{run_id}"
    assert "policy: b.txt may not be pushed here" in proc.stderr
    assert f"orchestrator resume {run_id}" in proc.stderr
    doc = cli_json(home1, "show", run_id)
    assert doc["status"] == "interrupted" and doc["repo"] == url
    assert f"pushing {branch} to {url} failed" in doc["error"]
    assert "policy: b.txt may not be pushed here" in doc["error"]
    by_id = {p["plan_id"]: p for p in doc["phases"]}
    assert by_id["phase-001"]["status"] == "completed"
    assert by_id["phase-002"]["status"] == "pending" and by_id["phase-002"]["commit"] is None
    assert phase_commits(origin, branch) == ["phase-001"]  # pushed before it was recorded
    [clone] = (home1 / "repos").iterdir()
    assert git(clone, "config", "remote.origin.url") == url

    # Home 2 (another machine, the same store) continues from the origin: it does phase-002 again
    # and pushes it; the origin refuses phase-003.
    refuse.write_text("c.txt\n")
    home2 = tmp_path / "home2"
    share_database(home1, home2)
    proc = cli(home2, "resume", run_id, "--headless", "--yes")
    assert proc.returncode == 1 and "policy: c.txt may not be pushed here" in proc.stderr
    assert phase_commits(origin, branch) == ["phase-001", "phase-002"]

    # Back in home 1, whose run branch still holds its own unpushed phase-002: it starts from the
    # origin's branch instead, so phase-002 stays the one home 2 pushed.
    refuse.write_text("")
    share_database(home2, home1)
    proc = cli(home1, "resume", run_id, "--headless", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = cli_json(home1, "show", run_id)
    assert doc["status"] == "completed"
    assert [p["attempts"] for p in doc["phases"]] == [1, 2, 2]
    assert phase_commits(origin, branch) == ["phase-001", "phase-002", "phase-003"]
    tip = git(origin, "rev-parse", branch)
    assert tip == git(home1 / "worktrees" / run_id / "run", "rev-parse", "HEAD")
    for p in doc["phases"]:
        git(origin, "merge-base", "--is-ancestor", p["commit"], tip)  # each recorded commit pushed

    # apply from a checkout that never saw the run branch: it is fetched from that checkout's origin.
    mine = tmp_path / "mine"
    git(tmp_path, "clone", "-q", url, str(mine))
    applied = cli(home1, "apply", run_id, "--repo", str(mine))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [(mine / f).read_text() for f in ("a.txt", "b.txt", "c.txt")] == ["a\n", "b\n", "c\n"]


def test_a_phase_pushed_by_a_process_that_died_before_recording_it_is_adopted(
    tmp_path: Path,
) -> None:
    origin = make_origin(tmp_path)
    url = origin.as_uri()
    # Once the origin has taken phase-002 (its ref is updated), its post-receive hook holds the
    # pushing process until the test releases it (bounded at 60 s).
    hook = origin / "hooks" / "post-receive"
    hook.write_text(
        "#!/bin/sh\nwhile read old new ref; do\n"
        '  if git cat-file -e "$new:b.txt" 2>/dev/null; then\n'
        "    touch received; i=0\n"
        "    while [ ! -e release ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
        "  fi\ndone\n"
    )
    hook.chmod(0o755)
    phases = [phase("phase-001"), phase("phase-002", ["phase-001"])]
    answers = {("phase-001", 1): new_file("a.txt", "a"), ("phase-002", 1): new_file("b.txt", "b")}
    cassette = write_cassette(tmp_path / "c.jsonl", phases, answers)
    home1 = tmp_path / "home1"
    proc = spawn(home1, *run_args(url, cassette))
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        wait_until(lambda: (origin / "received").exists(), what="the origin took phase-002")
        proc.kill()  # the machine dies after the push, before the phase is recorded
        proc.wait(timeout=60)
    finally:
        (origin / "release").touch()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)
    branch = f"orchestrator/{run_id}"
    assert phase_commits(origin, branch) == ["phase-001", "phase-002"]

    home2 = tmp_path / "home2"
    share_database(home1, home2)
    proc2 = cli(home2, "resume", run_id, "--headless", "--yes")
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    doc = cli_json(home2, "show", run_id)
    assert doc["status"] == "completed" and [p["attempts"] for p in doc["phases"]] == [1, 1]
    assert phase_commits(origin, branch) == ["phase-001", "phase-002"]  # adopted, not redone
    assert doc["phases"][1]["commit"] in git(origin, "log", "--format=%H", branch).split()


def test_credentials_in_the_url_reach_git_and_are_written_nowhere(tmp_path: Path) -> None:
    from tests.fakes.git_http import GitHttpServer

    secret = "tok-9d1e77c0-remote-secret"
    origin = make_origin(tmp_path / "served")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a")}
    )
    home = tmp_path / "home"
    with GitHttpServer(origin.parent, "alice", secret) as server:
        given = server.url("origin.git", f"alice:{secret}")
        clean = server.url("origin.git")
        proc = cli(home, *run_args(given, cassette))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert server.refused >= 1, "the server asked for credentials"
        missing = cli(home, *run_args(server.url("nope.git", f"alice:{secret}"), cassette))
    assert missing.returncode != 0 and f"could not clone {server.url('nope.git')}" in missing.stderr
    assert secret not in missing.stdout + missing.stderr
    run_id = proc.stdout.split()[1]
    assert secret not in proc.stdout + proc.stderr
    [summary] = cli_json(home, "runs")
    assert summary["repo"] == clean and summary["status"] == "completed"
    assert phase_commits(origin, f"orchestrator/{run_id}") == ["phase-001"]
    [clone] = (home / "repos").iterdir()
    assert git(clone, "config", "remote.origin.url") == clean
    leaked = [p for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in cli(home, "export", run_id, "--format", "json", check=True).stdout


def test_doctor_finds_and_deletes_orphan_branches_in_the_clone_of_a_run_on_a_git_url(
    tmp_path: Path,
) -> None:
    import asyncio
    import json

    from config.paths import Paths
    from core.engine import Engine
    from core.git.remote import ensure_clone

    url = f"file://{make_origin(tmp_path)}"
    home = tmp_path / "home"
    paths = Paths(home)
    clone = ensure_clone(paths, url)

    async def make() -> str:
        async with await Engine.open(paths) as engine:
            return (await engine.store.create_run(TASK, url, {})).id

    run_id = asyncio.run(make())
    git(clone, "branch", f"orchestrator/{run_id}")
    git(clone, "branch", "orchestrator/rgone")
    report = cli(home, "doctor", "--json")
    assert report.returncode == 1, report.stderr  # unhealthy: an orphan branch
    doc = json.loads(report.stdout)
    assert doc["orphan_branches"] == [f"{clone}:orchestrator/rgone"]
    assert f"{clone}:orchestrator/{run_id}" in doc["branches"]
    cli(home, "doctor", "--fix", check=True)
    assert git(
        clone, "branch", "--format=%(refname:short)", "--list", "orchestrator/*"
    ).split() == [f"orchestrator/{run_id}"]
