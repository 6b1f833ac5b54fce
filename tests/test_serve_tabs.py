"""What `orchestrator serve` starts for each browser tab: the app on the same home with serve's
own `--db` and `--as`, the database password kept off the command line (it goes to the tab's
environment as PGPASSWORD, and the store connects with it)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.clirun import cli, cli_json
from tests.pg_support import PASSWORD
from tui.cli import build_parser
from tui.serve import app_command, tab_environment


def _tab_args(command: str) -> list[str]:
    """The arguments the tab's command gives `python -m tui.cli`."""
    words = shlex.split(command)
    return words[words.index("tui.cli") + 1 :]


def test_a_tab_gets_serves_home_db_and_as_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://team:pa%20ss@db.example:5433/orch?sslmode=require&password=other"
    command = app_command(tmp_path / "home", url, "Ann Lee")
    assert "pa%20ss" not in command and "other" not in command
    args = build_parser().parse_args(_tab_args(command))
    assert args.command is None  # the app itself
    assert args.home == str(tmp_path / "home")
    assert args.db == "postgresql://team@db.example:5433/orch?sslmode=require"
    assert args.as_name == "Ann Lee"
    assert tab_environment(url) == {"PGPASSWORD": "other"}  # the query's, as libpq would use

    plain = build_parser().parse_args(_tab_args(app_command(tmp_path / "home")))
    assert (plain.db, plain.as_name) == (None, None)
    assert tab_environment(None) == {} and tab_environment("postgresql://u@h/d") == {}


def test_the_tab_url_and_environment_reach_the_database(tmp_path: Path, pg_url: str) -> None:
    assert PASSWORD in pg_url
    db = build_parser().parse_args(_tab_args(app_command(tmp_path, pg_url))).db
    env = tab_environment(pg_url)
    assert env == {"PGPASSWORD": PASSWORD} and PASSWORD not in db
    home = tmp_path / "tab"
    assert cli_json(home, "--db", db, "runs", **env) == []
    refused = cli(home, "--db", db, "runs")
    assert refused.returncode != 0 and PASSWORD not in refused.stderr + refused.stdout
