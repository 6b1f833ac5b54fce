"""Regenerate the README's screenshots: real CLI output of the offline demo, rendered to SVG.

Usage: .venv/bin/python screenshots/generate.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def orchestrator(home: Path, *args: str) -> str:
    """Run the CLI with an isolated home and return what it printed."""
    env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def save(name: str, title: str, command: str, output: str) -> None:
    """Render `$ command` and its output as a terminal screenshot."""
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(Text(f"$ {command}", style="bold green"))
    console.print(Text(output.rstrip("\n")))
    (HERE / name).write_text(console.export_svg(title=title))


PLANTED = {
    "pyproject.toml": "[project]\nname = 'calc'\nversion = '0.1'\n",
    "calc.py": (
        "import os\nimport subprocess\n\n\ndef add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def label(n: int) -> str:\n    return n\n\n\n"
        "def run(cmd: str) -> int:\n    return subprocess.call(cmd, shell=True)\n"
    ),
    "tests/test_calc.py": (
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_add_wrong():\n    assert add(2, 2) == 5\n"
    ),
}


def planted_repo(root: Path) -> Path:
    """A small Python project with one defect for each default tool, committed to git."""
    for rel, text in PLANTED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    return root


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        repo = planted_repo(Path(tmp) / "calc")
        env = {**os.environ, "ORCHESTRATOR_HOME": str(home), "PYTHONPATH": str(ROOT)}
        checked = subprocess.run(
            [sys.executable, "-m", "tui.cli", "verify", str(repo)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        checked = checked.replace(str(home), "~/.local/share/agent-orchestrator")
        save("verify.svg", "orchestrator verify", "orchestrator verify ~/src/calc", checked)
        demo = orchestrator(home, "demo", "--headless", "--yes")
        demo = demo.replace(str(home), "~/.local/share/agent-orchestrator")
        save("demo.svg", "orchestrator demo", "orchestrator demo --headless --yes", demo)
        run_id = json.loads(orchestrator(home, "runs", "--json"))[0]["id"]
        shown = orchestrator(home, "show", run_id).replace(
            str(home), "~/.local/share/agent-orchestrator"
        )
        save("show.svg", "orchestrator show", f"orchestrator show {run_id}", shown)
    print("wrote", ", ".join(str(p.relative_to(ROOT)) for p in sorted(HERE.glob("*.svg"))))


if __name__ == "__main__":
    main()
