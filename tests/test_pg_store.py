"""The PostgreSQL backend as a user meets it: `--db URL` for every command and a demo run end to
end, `db copy --to URL`, `doctor`, the password never stored or shown, and code older than the
database's schema refusing to start (both backends). The store's own suite runs on both backends
in tests/test_state_store.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.errors import StateError
from core.records import RunStatus
from core.state import dialect
from core.state.pg_copy import copy_home
from core.state.store import StateStore
from tests.clirun import cli, cli_json
from tests.pg_support import PASSWORD, PgServer


def _files_holding(folder: Path, secret: str) -> list[Path]:
    """Files under a folder whose bytes contain the secret."""
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_demo_runs_end_to_end_on_postgresql_and_every_command_reads_it(
    tmp_path: Path, pg_url: str
) -> None:
    home = tmp_path / "home"
    proc = cli(home, "--db", pg_url, "demo", "--headless", "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = proc.stdout.splitlines()[0].split()[1]

    [summary] = cli_json(home, "--db", pg_url, "runs")
    assert summary["id"] == run_id and summary["status"] == "completed"
    assert summary["phases_completed"] == summary["phases_total"] >= 3
    doc = cli_json(home, "--db", pg_url, "show", run_id)
    assert any(p["attempts"] == 2 for p in doc["phases"]), "one phase fails verification once"
    assert [i["status"] for i in doc["interventions"]] == ["approved"]
    # The environment variable names the same database; the home's SQLite file has no runs.
    assert cli_json(home, "runs", ORCHESTRATOR__STATE__URL=pg_url)[0]["id"] == run_id
    assert cli_json(home, "runs") == []

    doctor = cli(home, "--db", pg_url, "doctor", check=True).stdout
    assert "(PostgreSQL," in doctor and "no problems found" in doctor
    assert PASSWORD not in doctor and "orchestrator:***@" in doctor
    # The password is in no file of the home (logs, reports, worktrees) nor in the stored run.
    assert _files_holding(home, PASSWORD) == []
    stored = cli(home, "--db", pg_url, "export", run_id, "--format", "json", check=True).stdout
    assert PASSWORD not in stored


def test_config_show_and_errors_mask_the_password(tmp_path: Path, pg_server: PgServer) -> None:
    home = tmp_path / "home"
    url = pg_server.url("postgres")
    shown = cli(home, "config", "show", check=True, ORCHESTRATOR__STATE__URL=url).stdout
    assert PASSWORD not in shown
    assert f"orchestrator:***@127.0.0.1:{pg_server.port}/postgres" in shown
    unreachable = url.replace(f":{pg_server.port}/", ":1/")
    refused = cli(home, "--db", unreachable, "runs")
    assert refused.returncode == 1
    assert "cannot connect to the state database postgresql://orchestrator:***@" in refused.stderr
    assert PASSWORD not in refused.stdout + refused.stderr


async def test_password_from_a_file_and_a_wrong_one_masked(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    bare = pg_url.replace(f":{PASSWORD}@", "@")
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    async with await StateStore.open(tmp_path / "x.db", url=bare, password_file=str(secret)) as s:
        run = await s.create_run("t", str(tmp_path), {})
        assert (await s.get_run(run.id)).status is RunStatus.PENDING
    wrong = pg_url.replace(PASSWORD, "not-the-password")
    with pytest.raises(StateError, match="password authentication failed") as caught:
        await StateStore.open(tmp_path / "x.db", url=wrong)
    assert "not-the-password" not in str(caught.value) and ":***@" in str(caught.value)
    with pytest.raises(StateError, match="state.password_file .* cannot be read"):
        await StateStore.open(tmp_path / "x.db", url=bare, password_file=str(tmp_path / "nope"))


async def test_a_schema_newer_than_the_program_is_refused(
    backend: tuple[Path, str | None],
) -> None:
    path, url = backend
    async with await StateStore.open(path, url=url) as store, store._write() as db:
        await db.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            ("from_a_newer_release", "2030-01-01T00:00:00Z"),
        )
    with pytest.raises(StateError, match="newer than this program") as caught:
        await StateStore.open(path, url=url)
    assert "from_a_newer_release" in str(caught.value)
    assert "upgrade the orchestrator" in str(caught.value)
    with pytest.raises(StateError, match="newer than this program"):
        await StateStore.open(path, url=url, read_only=True)


async def test_migrations_are_recorded_by_name_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    async with await StateStore.open(tmp_path / "x.db", url=pg_url) as store:
        rows = await store._fetch("SELECT name FROM schema_migrations ORDER BY rowid")
    assert [r["name"] for r in rows] == [name for name, _ in dialect_migrations()]
    # Opening again applies nothing twice.
    async with await StateStore.open(tmp_path / "x.db", url=pg_url) as store:
        assert len(await store._fetch("SELECT name FROM schema_migrations")) == len(rows)


def dialect_migrations() -> list[tuple[str, list[str]]]:
    """The one list of migrations both dialects apply."""
    from core.state.schema import MIGRATIONS

    return MIGRATIONS


async def test_db_copy_moves_a_home_into_postgresql_once(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    source = home / "orchestrator.db"
    async with await StateStore.open(source) as store:
        first = await store.create_run("first task", str(tmp_path), {"k": 1})
        second = await store.create_run("second task", str(tmp_path), {})
        await store.append_logs([(first.id, None, "info", f"line {i}") for i in range(3)])
        await store.cache_put("key", "answer")
    report = await copy_home(source, pg_url, None)
    assert report.rows["runs"] == 2 and report.rows["events"] == 3
    async with await StateStore.open(tmp_path / "x.db", url=pg_url) as pg:
        runs = [s.run.id for s in await pg.list_runs()]
        assert sorted(runs) == sorted([first.id, second.id])
        assert [r.message for r in await pg.get_logs(first.id)] == ["line 0", "line 1", "line 2"]
        # New rows continue after the copied ones.
        [more] = await pg.append_logs([(first.id, None, "info", "after the copy")])
        assert more.seq > (await pg.get_logs(first.id))[2].seq
        assert await pg.cache_get("key") == "answer"
    again = cli(home, "db", "copy", "--to", pg_url)
    assert again.returncode == 2
    assert "already holds 2 run(s); nothing was copied" in again.stderr
    assert PASSWORD not in again.stderr
    with sqlite3.connect(source) as conn:  # the source is left as it was
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


def test_sqlite_sql_is_translated_for_postgresql() -> None:
    to_pg = dialect.to_postgres
    assert to_pg("SELECT * FROM runs WHERE id = ? AND task LIKE :q ESCAPE '\\'") == (
        "SELECT * FROM runs WHERE id = %s AND task ILIKE %(q)s ESCAPE '\\'"
    )
    assert to_pg("UPDATE phases SET attempts = MAX(attempts, ?) WHERE id = ?") == (
        "UPDATE phases SET attempts = GREATEST(attempts, %s) WHERE id = %s"
    )
    assert to_pg("SELECT MAX(seq) FROM events WHERE message = '50%'") == (
        "SELECT MAX(seq) FROM events WHERE message = '50%%'"
    )
    assert to_pg("INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING a") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING a"
    )
    assert to_pg("SELECT * FROM (SELECT 1) ORDER BY 1").startswith("SELECT * FROM (SELECT 1) AS ")
    assert "::timestamptz" in to_pg("SELECT x::timestamptz FROM t")
    ddl = dialect.ddl_to_postgres("CREATE TABLE e (seq INTEGER PRIMARY KEY AUTOINCREMENT, v REAL)")
    assert "rowid BIGINT GENERATED BY DEFAULT AS IDENTITY" in ddl
    assert "seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in ddl
    assert "v DOUBLE PRECISION" in ddl


async def test_a_committed_write_wakes_a_listener_in_another_store_with_ids_only(
    tmp_path: Path, pg_url: str
) -> None:
    import asyncio

    from core.records import InterventionKind
    from core.state.pg import Changes

    async with (
        await StateStore.open(tmp_path / "a.db", url=pg_url) as writer,
        await StateStore.open(tmp_path / "b.db", url=pg_url) as reader,
    ):
        run = await writer.create_run("t", str(tmp_path), {})
        other = await writer.create_run("other", str(tmp_path), {})
        backend = reader._pg
        assert backend is not None
        # The listener connects on the first wait; this one ends by its timeout (polling).
        assert await backend.wait_for_change(0.01, run.id) is None

        async def wait_for_run() -> dict[str, object] | None:
            return await backend.wait_for_change(60, run.id)

        async def listening() -> bool:
            rows = await reader._fetch(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
            )
            return int(rows[0][0]) > 0

        from tests.waiting import eventually

        await eventually(listening, what="the reader's LISTEN connection")
        waiting = asyncio.create_task(wait_for_run())
        await writer.append_logs([(other.id, None, "info", "not this run")])
        ask = await writer.create_intervention(run.id, None, InterventionKind.RISK, "r", "a")
        change = await asyncio.wait_for(waiting, 30)
        assert change == {"e": {}, "i": {run.id: [ask.id]}}
        waiting = asyncio.create_task(wait_for_run())
        logged = await writer.append_logs([(run.id, None, "info", f"l{i}") for i in range(3)])
        change = await asyncio.wait_for(waiting, 30)
        assert change == {"e": {run.id: logged[-1].seq}, "i": {}}, "one NOTIFY, newest seq"
    # Payloads stay far below PostgreSQL's 8000 bytes, whatever a transaction wrote.
    many = Changes()
    for i in range(5000):
        many.event(f"r{i:010d}", i)
    payload = many.payload()
    assert payload is not None and len(payload.encode()) <= 4000


def test_an_approval_from_another_home_wakes_the_waiting_run_through_listen(
    tmp_path: Path, pg_url: str
) -> None:
    from tests.clirun import spawn
    from tests.waiting import wait_until

    driving, elsewhere = tmp_path / "machine-a", tmp_path / "machine-b"
    # Polling every 10 minutes: only the NOTIFY of the answer can wake the run in time.
    proc = spawn(
        driving, "--db", pg_url, "demo", "--headless", ORCHESTRATOR__EXECUTION__POLL_SECONDS="600"
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().split()[1]

    def pending() -> list[dict[str, str]]:
        assert proc.poll() is None, f"run {run_id} ended before asking: {proc.communicate()}"
        return list(cli_json(elsewhere, "--db", pg_url, "interventions", "--pending"))

    [ask] = wait_until(pending, what=f"a pending intervention of run {run_id}", timeout=120)
    cli(elsewhere, "--db", pg_url, "approve", ask["id"], "--note", "from b", check=True)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, out + err
    [summary] = cli_json(elsewhere, "--db", pg_url, "runs")
    assert summary["status"] == "completed"


async def test_a_server_restart_costs_a_store_nothing_but_a_reconnect(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    import asyncio

    async with (
        await StateStore.open(tmp_path / "a.db", url=pg_url) as writer,
        await StateStore.open(tmp_path / "b.db", url=pg_url) as reader,
    ):
        run = await writer.create_run("t", str(tmp_path), {})
        await reader.change_mark(run.id)  # the reader listens
        await asyncio.to_thread(pg_server.restart)
        # Pooled connections the restart dropped are replaced; the listener reconnects.
        assert (await reader.get_run(run.id)).id == run.id
        assert (await writer.set_run_metadata(run.id, after="restart")).metadata == {
            "after": "restart"
        }
        backend = reader._pg
        assert backend is not None

        async def notified() -> object:
            waiting = asyncio.create_task(backend.wait_for_change(2, run.id))
            [line] = await writer.append_logs([(run.id, None, "info", "after the restart")])
            change = await waiting
            return change is not None and change.get("e") == {run.id: line.seq}

        from tests.waiting import eventually

        await eventually(notified, what="a NOTIFY through the listener's new connection")
