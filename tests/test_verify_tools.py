"""The real pytest, ruff, mypy and bandit on a repository with defects planted at known lines,
checked against the planted positions and against each tool's own report."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.verification import tool_env
from tests.conftest import git, make_repo
from verify.detect import detect_steps
from verify.pipeline import VerifyOptions, VerifyReport, run_steps
from verify.severity import SeverityPolicy

APP = """\
import os
import subprocess


def add(a: int, b: int) -> int:
    return a + b


def label(n: int) -> str:
    return n


def run(cmd: str) -> int:
    return subprocess.call(cmd, shell=True)
"""
TESTS = """\
from app import add


def test_add():
    assert add(1, 2) == 3


def test_add_wrong():
    assert add(2, 2) == 5
"""
# (tool, rule, path, line, severity) of every planted defect.
PLANTED = {
    ("ruff", "F401", "app.py", 1, "medium"),
    ("bandit", "B404", "app.py", 2, "minor"),
    ("mypy", "return-value", "app.py", 10, "medium"),
    ("bandit", "B602", "app.py", 14, "major"),
    ("pytest", "test-failure", "tests/test_app.py", 9, "major"),
}
BIN = Path(sys.executable).parent


def policy() -> SeverityPolicy:
    from config.schema import VerificationConfig
    from core.verification import severity_policy

    return severity_policy(VerificationConfig())


async def verify(repo: Path, tmp: Path, env: dict[str, str] | None = None) -> VerifyReport:
    return await run_steps(
        detect_steps(repo),
        repo,
        reports_dir=tmp / "reports",
        cache_dir=tmp / "cache",
        env=env or tool_env(repo),
        options=VerifyOptions(policy=policy()),
    )


def own_reports(repo: Path, tmp: Path) -> set[tuple[str, str, str, int]]:
    """What the tools say in their own human formats, parsed here independently of verify/."""

    def run(*args: str) -> str:
        proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, check=False)
        return proc.stdout

    found: set[tuple[str, str, str, int]] = set()
    out = run(str(BIN / "ruff"), "check", "--no-cache", "--output-format=concise", ".")
    for m in re.finditer(r"^(\S+):(\d+):\d+: (\w+)", out, re.MULTILINE):
        found.add(("ruff", m.group(3), m.group(1), int(m.group(2))))
    out = run(
        str(BIN / "mypy"),
        "--no-error-summary",
        "--ignore-missing-imports",
        f"--cache-dir={tmp / 'own-mypy'}",
        ".",
    )
    for m in re.finditer(r"^(\S+):(\d+): error: .*\[([\w-]+)\]$", out, re.MULTILINE):
        found.add(("mypy", m.group(3), m.group(1), int(m.group(2))))
    out = run(str(BIN / "bandit"), "-q", "-f", "csv", "-r", ".", "--skip", "B101")
    for row in csv.DictReader(io.StringIO(out)):
        found.add(
            ("bandit", row["test_id"], row["filename"].removeprefix("./"), int(row["line_number"]))
        )
    out = run(sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider")
    for m in re.finditer(r"^(\S+\.py):(\d+): \w+Error$", out, re.MULTILINE):
        found.add(("pytest", "test-failure", m.group(1), int(m.group(2))))
    return found


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": "[project]\nname = 'planted'\nversion = '0'\n",
            "app.py": APP,
            "tests/test_app.py": TESTS,
        },
    )


async def test_real_tools_find_the_planted_defects_as_the_tools_report_them(
    planted: Path, tmp_path: Path
) -> None:
    report = await verify(planted, tmp_path)
    got = {(f.tool, f.rule, f.path, f.line, f.severity) for f in report.findings}
    assert got == PLANTED
    assert len(report.findings) == len(PLANTED)  # one finding per problem, nothing twice
    own = own_reports(planted, tmp_path)
    assert {(t, r, p, n) for t, r, p, n, _s in got} == own
    by_tool = {o.step.tool_label: o for o in report.outcomes}
    assert {name: o.parser for name, o in by_tool.items()} == {
        "pytest": "junit",
        "ruff": "ruff",
        "mypy": "mypy",
        "bandit": "bandit",
    }
    failing = next(f for f in report.findings if f.tool == "pytest")
    assert failing.message.startswith("tests/test_app.py::test_add_wrong failed: assert 4 == 5")
    assert failing.snippet == "assert add(2, 2) == 5" and "AssertionError" in (
        failing.details or ""
    )
    ruff_f = next(f for f in report.findings if f.tool == "ruff")
    assert (ruff_f.column, ruff_f.snippet) == (8, "import os")
    mypy_f = next(f for f in report.findings if f.tool == "mypy")
    assert mypy_f.column == 12 and 'got "int", expected "str"' in mypy_f.message
    # The tools wrote their reports and caches under the given folders, nothing into the tree.
    assert git(planted, "status", "--porcelain", "--ignored") == ""
    assert (tmp_path / "reports" / "01-test-pytest.xml").is_file()


async def test_fingerprints_survive_lines_inserted_above(planted: Path, tmp_path: Path) -> None:
    before = await verify(planted, tmp_path / "a")
    header = '"""A module docstring pushed in above everything."""\n\nFLAG = 1\n'
    (planted / "app.py").write_text(header + APP)
    tests = planted / "tests" / "test_app.py"
    tests.write_text("# a comment\n# another\n" + TESTS)
    after = await verify(planted, tmp_path / "b")
    old = {fp: (f.tool, f.line) for f, fp in zip(before.findings, before.fingerprints, strict=True)}
    new = {fp: (f.tool, f.line) for f, fp in zip(after.findings, after.fingerprints, strict=True)}
    assert set(old) == set(new)
    for fp, (tool, line) in old.items():
        assert new[fp] == (tool, line + (2 if tool == "pytest" else 3))


async def test_missing_tools_are_skipped_with_a_note(planted: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    report = await verify(planted, tmp_path, env={"PATH": str(empty)})
    assert report.findings == []
    assert [o.skipped is not None for o in report.outcomes] == [True] * 4
    assert any("ruff is not installed" in n for n in report.notes)


async def test_repository_venv_comes_first_on_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"main.py": "print('hi')\n"})
    tool = repo / ".venv" / "bin" / "ruff"
    tool.parent.mkdir(parents=True)
    # A stand-in ruff in the repository's own environment reports one violation in JSON.
    tool.write_text(
        "#!/bin/sh\nfor a; do case $a in --output-file=*) out=${a#--output-file=};; esac; done\n"
        'echo \'[{"code":"E999","message":"from the repo venv","filename":"main.py",'
        '"location":{"row":1,"column":1},"end_location":{"row":1,"column":2}}]\' > "$out"\n'
        "exit 1\n"
    )
    tool.chmod(0o755)
    steps = [s for s in detect_steps(repo) if s.tool == "ruff"]
    report = await run_steps(
        steps,
        repo,
        reports_dir=tmp_path / "r",
        cache_dir=tmp_path / "c",
        env=tool_env(repo),
        options=VerifyOptions(policy=policy()),
    )
    [finding] = report.findings
    assert (finding.message, finding.rule, finding.severity) == (
        "from the repo venv",
        "E999",
        "medium",
    )
