"""The package boundaries of DESIGN.md section 3, checked in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "imports",
    [
        "import config.loader, config.schema",
        "import core.engine, core.driver, core.phase_runner, core.state.store, core.bus",
        "import verify.basic, verify.runner, verify.thresholds",
        "import verify.pipeline, verify.registry, verify.detect, verify.sarif_out, verify.report",
    ],
)
def test_engine_side_never_imports_textual(imports: str) -> None:
    modules = _loaded_after(imports)
    assert not any(m == "textual" or m.startswith("textual.") for m in modules)
    assert not any(m == "tui" or m.startswith("tui.") for m in modules)


def test_verify_imports_nothing_from_core() -> None:
    modules = _loaded_after(
        "import verify.basic, verify.runner, verify.thresholds, verify.findings, verify.pipeline,"
        " verify.registry, verify.detect, verify.sarif_out, verify.report, verify.criteria,"
        " verify.severity; verify.registry.parsers(); verify.registry.plugin_verifiers()"
    )
    assert not any(m == "core" or m.startswith("core.") for m in modules)


def test_cli_does_not_import_the_store_driver_directly() -> None:
    for path in (ROOT / "tui").rglob("*.py"):
        text = path.read_text()
        assert "import aiosqlite" not in text and "core.state" not in text, path


def test_rag_imports_nothing_from_core_and_never_textual() -> None:
    modules = _loaded_after(
        "import rag.index, rag.retrieve, rag.embedders, rag.syntax, rag.vectors, rag.lexical\n"
        "rag.vectors.embedding_function_class()"  # pulls in chromadb itself
    )
    assert "chromadb" in modules
    assert not any(m == "core" or m.startswith("core.") for m in modules)
    assert not any(m == "textual" or m.startswith("textual.") for m in modules)


def test_the_cli_reaches_chromadb_only_through_rag() -> None:
    for path in (ROOT / "tui").rglob("*.py"):
        assert "chromadb" not in path.read_text(), path


def _imports_of(path: Path) -> set[str]:
    """The modules a source file imports (absolute names, at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_store_renders_nothing() -> None:
    """Documents (JSON, Markdown, SARIF) are rendered in core.reports, never inside core/state/."""
    rendering = ("core.reports", "verify.sarif_out")
    assert not [m for m in _loaded_after("import core.state.store") if m.startswith(rendering)]
    for path in (ROOT / "core" / "state").rglob("*.py"):
        assert not [m for m in _imports_of(path) if m.startswith(rendering)], path
        assert "def render_" not in path.read_text(), path


def test_config_imports_only_core_errors_of_ours() -> None:
    """config/ is a leaf: of our packages it may import core.errors and nothing else."""
    ours = ("core", "rag", "verify", "tui")
    loaded = _loaded_after("import config, config.loader, config.show, config.secrets, config.keys")
    assert sorted(m for m in loaded if m.split(".")[0] in ours) == ["core", "core.errors"]
    for path in (ROOT / "config").rglob("*.py"):
        foreign = [m for m in _imports_of(path) if m.split(".")[0] in ours and m != "core.errors"]
        assert not foreign, f"{path.relative_to(ROOT)} imports {foreign}"
