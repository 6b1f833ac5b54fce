"""Default verification steps detected from a repository's files, for when none are configured.

Ecosystem detectors (Python, Node, Go, Rust) come first; a Makefile only fills the categories
they left empty, so the same suite never runs twice.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from verify.basic import VerifyStep

_PY_MARKERS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "pytest.ini",
    "tox.ini",
)
_NPM_PLACEHOLDER_TEST = "no test specified"
_MAKE_TARGET = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*:(?!=)", re.MULTILINE)


def _pyproject(repo: Path) -> dict[str, object]:
    """pyproject.toml as data, or {} when it is missing or not valid TOML."""
    try:
        return tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _mypy_targets(repo: Path) -> str:
    """Nothing when the project tells mypy what to check (files/packages), else the whole tree."""
    tool = _pyproject(repo).get("tool")
    mypy = tool.get("mypy") if isinstance(tool, dict) else None
    if isinstance(mypy, dict) and (mypy.get("files") or mypy.get("packages")):
        return ""
    for name in ("mypy.ini", ".mypy.ini", "setup.cfg"):
        try:
            text = (repo / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if re.search(r"^\[mypy\][^\[]*^files\s*=", text, re.MULTILINE):
            return ""
    return " ."


def is_python(repo: Path) -> bool:
    """A Python project: a packaging or test config file, Python files at the top, a package
    folder at the top, or Python files in src/ or tests/."""
    if any((repo / m).is_file() for m in _PY_MARKERS):
        return True
    return (
        any(repo.glob("*.py"))
        or any(repo.glob("*/__init__.py"))
        or any((repo / "src").glob("**/*.py"))
        or any((repo / "tests").glob("*.py"))
    )


def python_steps(repo: Path) -> list[VerifyStep]:
    """pytest (JUnit XML), ruff (JSON), mypy (JSON) and bandit (JSON), each run only when installed."""
    if not is_python(repo):
        return []
    src = "detected:python"
    return [
        VerifyStep(
            "test",
            "{python} -m pytest -q -p no:cacheprovider -o junit_family=xunit1 --junitxml={report}",
            tool="pytest",
            parser="junit",
            requires="pytest",
            ok_exit_codes=(0, 5),  # 5: no tests were collected
            source=src,
            report_ext="xml",
        ),
        VerifyStep(
            "lint",
            "ruff check --no-cache --output-format=json --output-file={report} .",
            tool="ruff",
            parser="ruff",
            requires="ruff",
            source=src,
        ),
        VerifyStep(
            "lint",
            "mypy --output json --no-error-summary --hide-error-context --ignore-missing-imports"
            " --cache-dir={cache}" + _mypy_targets(repo),
            tool="mypy",
            parser="mypy",
            requires="mypy",
            source=src,
        ),
        VerifyStep(
            "security",
            "bandit -q -f json -o {report} -r . -x ./.venv,./venv,./node_modules,./.git,./build,./dist"
            " --skip B101",
            tool="bandit",
            parser="bandit",
            requires="bandit",
            source=src,
        ),
    ]


def node_steps(repo: Path) -> list[VerifyStep]:
    """npm scripts: build, test (unless it is npm's placeholder) and lint."""
    try:
        data = json.loads((repo / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    scripts = data.get("scripts") if isinstance(data, dict) else None
    if not isinstance(scripts, dict):
        return []
    steps = []
    src = "detected:node"
    if "build" in scripts:
        steps.append(VerifyStep("build", "npm run build", tool="npm", requires="npm", source=src))
    test = scripts.get("test")
    if isinstance(test, str) and _NPM_PLACEHOLDER_TEST not in test:
        steps.append(VerifyStep("test", "npm test", tool="npm", requires="npm", source=src))
    if "lint" in scripts:
        steps.append(VerifyStep("lint", "npm run lint", tool="npm", requires="npm", source=src))
    return steps


def go_steps(repo: Path) -> list[VerifyStep]:
    """go build, go test and go vet over every package."""
    if not (repo / "go.mod").is_file():
        return []
    src = "detected:go"
    return [
        VerifyStep("build", "go build ./...", tool="go", requires="go", source=src),
        VerifyStep("test", "go test ./...", tool="go", requires="go", source=src),
        VerifyStep("lint", "go vet ./...", tool="go", requires="go", source=src),
    ]


def rust_steps(repo: Path) -> list[VerifyStep]:
    """cargo build and cargo test (compiler messages in the short file:line:col form), clippy when installed."""
    if not (repo / "Cargo.toml").is_file():
        return []
    src = "detected:rust"
    return [
        VerifyStep(
            "build",
            "cargo build --message-format=short",
            tool="cargo",
            requires="cargo",
            source=src,
        ),
        VerifyStep("test", "cargo test", tool="cargo", requires="cargo", source=src),
        VerifyStep(
            "lint",
            "cargo clippy --message-format=short",
            tool="clippy",
            requires="cargo-clippy",
            source=src,
        ),
    ]


def make_targets(repo: Path) -> set[str]:
    """The explicit target names of the repository's Makefile."""
    for name in ("GNUmakefile", "makefile", "Makefile"):
        try:
            text = (repo / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return {m.group("name") for m in _MAKE_TARGET.finditer(text)}
    return set()


def make_steps(repo: Path) -> list[VerifyStep]:
    """make build (or the default goal when only all exists), make test, make lint."""
    targets = make_targets(repo)
    src = "detected:make"
    steps = []
    if "build" in targets:
        steps.append(VerifyStep("build", "make build", tool="make", requires="make", source=src))
    elif "all" in targets:
        steps.append(VerifyStep("build", "make", tool="make", requires="make", source=src))
    for target, category in (("test", "test"), ("lint", "lint"), ("check", "custom")):
        if target in targets:
            steps.append(
                VerifyStep(category, f"make {target}", tool="make", requires="make", source=src)
            )
    return steps


BUILTIN_VERIFIERS: dict[str, Callable[[Path], list[VerifyStep]]] = {
    "python": python_steps,
    "node": node_steps,
    "go": go_steps,
    "rust": rust_steps,
}


def detect_steps(repo: Path) -> list[VerifyStep]:
    """Every detected step: ecosystems and plugin verifiers first, then Makefile targets for the
    categories still empty."""
    from verify.registry import plugin_verifiers

    steps: list[VerifyStep] = []
    for detector in [*BUILTIN_VERIFIERS.values(), *plugin_verifiers().values()]:
        try:
            steps.extend(detector(repo))
        except OSError:
            continue
    covered = {s.category for s in steps}
    steps.extend(s for s in make_steps(repo) if s.category not in covered)
    return steps
