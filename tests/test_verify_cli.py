"""`orchestrator verify PATH`: the real tools on a tree, JSON and SARIF output, exit codes 0/1/2."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import cli
from tests.conftest import git, make_repo
from tests.test_verify_tools import APP, PLANTED, TESTS


def test_verify_reports_findings_thresholds_and_sarif(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": "[project]\nname = 'p'\nversion = '0'\n",
            "app.py": APP,
            "tests/test_app.py": TESTS,
        },
    )
    sarif_file = tmp_path / "out.sarif"
    proc = cli(home, "verify", str(repo), "--json", "--sarif", str(sarif_file))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    got = {(f["tool"], f["rule"], f["path"], f["line"], f["severity"]) for f in data["findings"]}
    assert got == PLANTED
    assert all(f["status"] == "new" and len(f["fingerprint"]) == 16 for f in data["findings"])
    s = data["summary"]
    assert s["by_severity"] == {"major": 2, "medium": 2, "minor": 1}
    assert s["by_category"] == {"build": 0, "test": 1, "lint": 2, "security": 2, "custom": 0}
    assert s["by_tool"] == {"pytest": 1, "ruff": 1, "mypy": 1, "bandit": 2}
    assert s["thresholds_exceeded"] == [{"kind": "major", "limit": 0, "actual": 2, "action": "ask"}]
    assert s["steps_from"] == "detected"
    # Reports live under the home folder; the tree is left exactly as it was.
    reports = Path(s["reports"])
    assert reports.is_relative_to(home / "reports") and (reports / "verify.json").is_file()
    assert any(reports.glob("*-pytest.xml")) and any(reports.glob("*-bandit.json"))
    assert git(repo, "status", "--porcelain", "--ignored") == ""

    sarif = json.loads(sarif_file.read_text())
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    by_tool = {r["tool"]["driver"]["name"]: r for r in sarif["runs"]}
    assert set(by_tool) == {"pytest", "ruff", "mypy", "bandit"}
    bandit = by_tool["bandit"]
    levels = {r["ruleId"]: r["level"] for r in bandit["results"]}
    assert levels == {"B602": "error", "B404": "note"}
    b602 = next(r for r in bandit["results"] if r["ruleId"] == "B602")
    location = b602["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "app.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 14, "startColumn": 12}
    assert len(b602["partialFingerprints"]["agentOrchestrator/v1"]) == 16
    assert bandit["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"
    rule_ids = [r["id"] for r in bandit["tool"]["driver"]["rules"]]
    assert [rule_ids[r["ruleIndex"]] for r in bandit["results"]] == [
        r["ruleId"] for r in bandit["results"]
    ]
    mypy_region = by_tool["mypy"]["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert mypy_region["startLine"] == 10 and mypy_region["endColumn"] > mypy_region["startColumn"]

    text = cli(home, "verify", str(repo), "--only", "security")
    assert text.returncode == 1
    assert "major  security/bandit B602 app.py:14:12:" in text.stdout
    assert "threshold exceeded: major 1 > 0 (ask)" in text.stdout
    assert "[test]" not in text.stdout


def test_verify_clean_tree_and_bad_input(tmp_path: Path) -> None:
    home = tmp_path / "home"
    clean = make_repo(
        tmp_path / "clean",
        {
            "calc.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
            "tests/test_calc.py": "from calc import add\n\n\ndef test_add() -> None:\n    assert add(1, 2) == 3\n",
        },
    )
    proc = cli(home, "verify", str(clean))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 finding(s)" in proc.stdout and "[test] pytest: exit 0" in proc.stdout
    (clean / "orchestrator.yaml").write_text('verification:\n  lint: ["echo lint-ok"]\n')
    configured = json.loads(cli(home, "verify", str(clean), "--json").stdout)
    assert configured["summary"]["steps_from"] == "configured"
    assert [s["command"] for s in configured["summary"]["steps"]] == ["echo lint-ok"]

    missing = cli(home, "verify", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    bad_only = cli(home, "verify", str(clean), "--only", "tests")
    assert bad_only.returncode == 2 and "unknown category tests" in bad_only.stderr
    (clean / "orchestrator.yaml").write_text("verification:\n  lint: 5\n")
    bad_config = cli(home, "verify", str(clean))
    assert bad_config.returncode == 2 and "verification.lint" in bad_config.stderr


def test_config_show_lists_detected_steps(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = make_repo(
        tmp_path / "repo",
        {
            "package.json": json.dumps({"scripts": {"test": "jest", "lint": "eslint ."}}),
            "Makefile": "build:\n\tcc -o app app.c\ntest:\n\t./app --selftest\n",
            "go.mod": "module example.com/x\n",
        },
    )
    text = cli(home, "config", "show", "--repo", str(repo), check=True).stdout
    assert "# verification steps for" in text
    assert "test: npm test" in text and "# detected:node" in text
    assert "build: go build ./..." in text and "lint: go vet ./..." in text
    steps = text.split("# verification steps for")[1]
    assert "make test" not in steps  # go and npm already test; make fills only empty categories
    data = json.loads(cli(home, "config", "show", "--repo", str(repo), "--json", check=True).stdout)
    commands = [(s["category"], s["command"]) for s in data["verification_steps"]]
    assert ("lint", "npm run lint") in commands and ("test", "go test ./...") in commands


def test_src_layout_is_imported_from_the_tree_being_verified(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": "[project]\nname = 'pkg'\nversion = '0'\n",
            "src/pkg/__init__.py": "def answer() -> int:\n    return 42\n",
            "tests/test_pkg.py": "from pkg import answer\n\n\ndef test_answer():\n    assert answer() == 41\n",
        },
    )
    data = json.loads(cli(home, "verify", str(repo), "--only", "test", "--json").stdout)
    [finding] = data["findings"]  # the test ran (pkg imported from src/) and failed where planted
    assert (finding["path"], finding["line"], finding["rule"]) == (
        "tests/test_pkg.py",
        5,
        "test-failure",
    )


def test_verify_never_writes_secrets_down(tmp_path: Path) -> None:
    secret = "tok-77ab12cd-verify-secret"
    home = tmp_path / "home"
    repo = make_repo(tmp_path / "repo", {"app.py": "x = 1\n"})
    (repo / "leak.sh").write_text(
        f"echo 'app.py:1:1: error: connecting with {secret}'\necho 'tail {secret}'\nexit 1\n"
    )
    (repo / "orchestrator.yaml").write_text('verification:\n  lint: ["sh leak.sh"]\n')
    sarif_file = tmp_path / "out.sarif"
    proc = cli(
        home, "verify", str(repo), "--json", "--sarif", str(sarif_file), "-v", API_TOKEN=secret
    )
    assert proc.returncode == 0  # one minor finding exceeds no threshold
    [finding] = json.loads(proc.stdout)["findings"]
    assert finding["message"] == "connecting with ***" and finding["path"] == "app.py"
    assert secret not in proc.stdout + proc.stderr + sarif_file.read_text()
    leaked = [p for p in home.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
