"""What the CLI promises scripts and people: --version, --json on listing and result commands,
quiet exits when the reader goes away, empty listings that say what was filtered, and provider
and model names checked by `config validate` (file and key named)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import ROOT, cli, cli_env, cli_json
from tests.tui.seed import COMPLETED_RUN, FAILED_RUN, seed


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the seed's runs (read-only for these tests)."""
    home = tmp_path_factory.mktemp("seeded") / "home"
    seed(home / "orchestrator.db", log_lines=50)
    return home


def test_version_names_the_installed_version() -> None:
    proc = cli(Path("/nonexistent-home"), "--version", check=True)
    assert proc.stdout.startswith("orchestrator ") and proc.stdout.split()[1][0].isdigit()


def test_listing_and_result_commands_print_json(seeded_home: Path) -> None:
    runs = cli_json(seeded_home, "runs")
    assert {COMPLETED_RUN, FAILED_RUN} <= {r["id"] for r in runs}
    assert cli_json(seeded_home, "show", COMPLETED_RUN)["status"] == "completed"
    assert all(i["run_id"] for i in cli_json(seeded_home, "interventions"))
    exported = cli(seeded_home, "export", COMPLETED_RUN, "--json", check=True).stdout
    as_format = cli(seeded_home, "export", COMPLETED_RUN, "--format", "json", check=True).stdout
    assert exported == as_format and json.loads(exported)["id"] == COMPLETED_RUN
    clash = cli(seeded_home, "export", COMPLETED_RUN, "--json", "--format", "markdown")
    assert clash.returncode == 2 and "--json and --format markdown" in clash.stderr
    assert cli_json(seeded_home, "config", "validate") == {
        "valid": True,
        "files": [],
        "notes": [],
    }


def test_a_closed_stdout_ends_quietly_without_a_traceback(seeded_home: Path) -> None:
    for args in (["show", COMPLETED_RUN], ["runs"], ["export", COMPLETED_RUN, "--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui.cli", *args],
            cwd=ROOT,
            env=cli_env(seeded_home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
        _, err = proc.communicate(timeout=60)
        assert err == "", (args, err)
        assert proc.returncode == 128 + signal.SIGPIPE, args


def test_empty_listings_say_what_was_filtered(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "no runs yet" in cli(home, "runs", check=True).stdout
    seed(home / "orchestrator.db", quick_runs=3, rich=False)
    assert cli(home, "runs", "--status", "failed", check=True).stdout.strip() == (
        "no failed runs (3 runs in all; `orchestrator runs` lists them)"
    )
    assert cli(home, "runs", "--recoverable", check=True).stdout.startswith(
        "no recoverable runs (3 runs in all"
    )
    assert cli(home, "interventions", "--pending", check=True).stdout.strip() == (
        "no pending interventions (0 interventions in all)"
    )


def test_config_validate_names_file_and_key_of_unknown_providers_and_models(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text("llm: {provider: nosuch}\n")
    bad = cli(home, "config", "validate")
    assert bad.returncode == 2
    assert f"{config}: llm.provider: unknown provider 'nosuch'" in bad.stderr
    assert "known: auto, anthropic, ollama, openai, replay" in bad.stderr
    as_json = cli(home, "config", "validate", "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["valid"] is False

    # A cloud provider serves only the models listed in models.yaml.
    config.write_text("llm: {provider: openai}\nmodels: {planner: nosuch}\n")
    bad = cli(home, "config", "validate")
    assert bad.returncode == 2
    assert f"{config}: models.planner: model 'nosuch' is not in models.yaml" in bad.stderr
    assert "gpt-4.1-mini" in bad.stderr  # what it could have been

    # Any Ollama tag stays allowed; validate says how it is taken.
    config.write_text("models: {planner: nosuch}\n")
    doc = cli_json(home, "config", "validate")
    assert doc["valid"] is True and "used as an Ollama tag" in doc["notes"][0]

    # A models.yaml entry with an unknown provider names that file and the entry's key.
    (home / "models.yaml").write_text("models:\n  mine: {provider: nope}\n")
    bad = cli(home, "config", "validate")
    assert bad.returncode == 2
    assert f"{home / 'models.yaml'}: models.mine.provider: unknown provider 'nope'" in bad.stderr


def test_a_run_with_an_unknown_provider_is_refused_naming_the_key(tmp_path: Path) -> None:
    from tests.conftest import make_repo

    repo = make_repo(tmp_path / "repo")
    proc = cli(
        tmp_path / "home", "run", "x", "--repo", str(repo), "--headless", "--provider", "nosuch"
    )
    assert proc.returncode == 2
    assert "cli --provider: llm.provider: unknown provider 'nosuch'" in proc.stderr
