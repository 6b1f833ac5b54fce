"""Chunking: syntax-aware boundaries and metadata, line windows, markdown, custom processors."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.chunks import Chunk, make_chunk
from rag.processors import LineWindowProcessor, MarkdownProcessor, ProcessorRegistry
from rag.syntax import SyntaxProcessor
from rag.tokens import tokenize

ROOT = Path(__file__).resolve().parent.parent

PYTHON = '''"""Billing helpers."""
import math

TAX_RATE = 0.2


# Rounds to cents.
def round_cents(amount):
    return math.floor(amount * 100) / 100


@dataclass
class Invoice:
    """An invoice."""

    lines: list

    def total(self):
        return sum(self.lines)
'''


def by_symbol(chunks: list[Chunk]) -> dict[str | None, Chunk]:
    return {c.symbol: c for c in chunks}


def test_python_chunks_follow_definitions_with_metadata() -> None:
    chunks = SyntaxProcessor().process("src/billing.py", PYTHON)
    assert [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("module", None, 1, 6),
        ("function", "round_cents", 7, 9),
        ("class", "Invoice", 12, 19),
    ]
    func = by_symbol(chunks)["round_cents"]
    assert func.text.startswith("# Rounds to cents.\ndef round_cents(amount):")  # comment joins
    assert func.language == "python" and func.path == "src/billing.py"
    assert func.content_hash == hashlib.sha256(func.text.encode()).hexdigest()
    assert by_symbol(chunks)["Invoice"].text.startswith("@dataclass\nclass Invoice:")
    lines = PYTHON.splitlines(keepends=True)
    for chunk in chunks:  # line numbers point at exactly the chunk's text
        assert "".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.text


def test_a_long_class_is_split_into_methods() -> None:
    methods = "".join(f"    def step_{i}(self):\n        return {i}\n\n" for i in range(40))
    source = f"class Pipeline:\n    '''Steps.'''\n    name = 'p'\n\n{methods}"
    chunks = SyntaxProcessor(split_lines=80).process("p.py", source)
    head = chunks[0]
    assert (head.kind, head.symbol, head.start_line) == ("class", "Pipeline", 1)
    assert "name = 'p'" in head.text and "def step_0" not in head.text
    method_chunks = [c for c in chunks if c.kind == "method"]
    assert [c.symbol for c in method_chunks] == [f"Pipeline.step_{i}" for i in range(40)]
    assert method_chunks[1].start_line == 8 and method_chunks[1].end_line == 9


def test_a_very_long_function_is_windowed_and_keeps_its_symbol() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(300))
    chunks = SyntaxProcessor(max_lines=120).process("long.py", f"def huge():\n{body}")
    assert {c.symbol for c in chunks} == {"huge"}
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 301
    assert all(c.end_line - c.start_line + 1 <= 120 for c in chunks)


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "web/cart.js",
            (
                "// adds\nexport function addItem(a) { return a }\nconst removeItem = (a) => a;\n"
                "class Cart { total() { return 1 } }\n"
            ),
            [
                ("function", "addItem", 1, 2),
                ("function", "removeItem", 3, 3),
                ("class", "Cart", 4, 4),
            ],
        ),
        (
            "web/cart.ts",
            "interface Item { id: number }\ntype Id = number;\nexport class Cart {}\n",
            [("interface", "Item", 1, 1), ("type", "Id", 2, 2), ("class", "Cart", 3, 3)],
        ),
        (
            "web/view.tsx",
            "export function View() { return <div/> }\n",
            [("function", "View", 1, 1)],
        ),
        (
            "svc/main.go",
            (
                "package main\n\n// Run runs.\nfunc Run() {}\n\ntype Store struct{}\n\n"
                "func (s *Store) Get() {}\n"
            ),
            [
                ("module", None, 1, 2),
                ("function", "Run", 3, 4),
                ("type", "Store", 6, 6),
                ("method", "Store.Get", 8, 8),
            ],
        ),
        (
            "src/lib.rs",
            "/// Makes one.\nfn make() {}\nstruct Shelf;\nimpl Shelf { fn new() -> Shelf { Shelf } }\n",
            [("function", "make", 1, 2), ("struct", "Shelf", 3, 3), ("impl", "Shelf", 4, 4)],
        ),
    ],
)
def test_grammars_from_the_per_language_wheels(
    path: str, source: str, expected: list[tuple[str, str | None, int, int]]
) -> None:
    chunks = SyntaxProcessor().process(path, source)
    assert [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks] == expected


def test_line_windows_cover_every_line_with_overlap_and_no_symbol() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 131))
    chunks = LineWindowProcessor().process("notes/data.txt", text)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 60), (51, 110), (101, 130)]
    assert all(c.symbol is None and c.kind == "lines" and c.language == "text" for c in chunks)


def test_markdown_sections_are_named_by_their_heading() -> None:
    text = "# Guide\nintro\n\n## Install\npip install\n```\n# not a heading\n```\n## Use\nrun it\n"
    chunks = MarkdownProcessor().process("docs/guide.md", text)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
        ("Guide", 1, 3),
        ("Install", 4, 8),
        ("Use", 9, 10),
    ]


class CsvProcessor:
    """A custom processor: one chunk per CSV row."""

    name = "csv-rows"
    version = "1"

    def can_process(self, path: str) -> bool:
        return path.endswith(".csv")

    def process(self, path: str, text: str) -> list[Chunk]:
        return [
            make_chunk(path, "csv", row.split(",")[0], "row", n, n, row + "\n")
            for n, row in enumerate(text.splitlines(), 1)
        ]


def test_custom_processors_come_before_the_built_in_ones() -> None:
    registry = ProcessorRegistry(plugins=False)
    assert registry.for_path("a.csv").name == "lines"
    registry.register(CsvProcessor())
    assert registry.for_path("data/stock.csv").name == "csv-rows"
    assert registry.for_path("a.py").name == "syntax"
    assert "csv-rows@1" in registry.signature()
    with pytest.raises(TypeError, match="can_process"):
        registry.register(object())  # type: ignore[arg-type]


def test_tokenizer_splits_identifiers() -> None:
    assert tokenize("parseHttpResponse http_client.get_user HTTPServer2") == [
        "parsehttpresponse",
        "parse",
        "http",
        "response",
        "http_client",
        "http",
        "client",
        "get_user",
        "user",  # "get" is a stop word
        "httpserver2",
        "http",
        "server",
    ]


def test_processors_from_installed_entry_points(tmp_path: Path) -> None:
    """A package declaring `orchestrator.rag_processors` is picked up without code changes."""
    site = tmp_path / "site"
    (site / "rowproc-0.1.dist-info").mkdir(parents=True)
    (site / "rowproc.py").write_text(
        "from rag.chunks import make_chunk\n\n"
        "class RowProcessor:\n"
        "    name = 'rows'\n"
        "    version = '1'\n\n"
        "    def can_process(self, path):\n"
        "        return path.endswith('.rows')\n\n"
        "    def process(self, path, text):\n"
        "        return [make_chunk(path, 'rows', None, 'row', 1, 1, text)]\n"
    )
    (site / "rowproc-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rowproc\nVersion: 0.1\n"
    )
    (site / "rowproc-0.1.dist-info" / "entry_points.txt").write_text(
        "[orchestrator.rag_processors]\nrows = rowproc:RowProcessor\n"
    )
    code = (
        "from rag.processors import ProcessorRegistry\n"
        "r = ProcessorRegistry()\n"
        "print(r.for_path('a.rows').name, r.for_path('a.py').name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["rows", "syntax"]
