"""SEARCH/REPLACE parsing, matching, atomic application and path safety."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import EditError
from core.executors.edits import (
    EditBlock,
    EditFormatError,
    apply_edit_blocks,
    parse_edit_blocks,
    safe_target,
)

ONE = """Here is the change.

src/app.py
```python
<<<<<<< SEARCH
def greet():
    return "hi"
=======
def greet():
    return "hello"
>>>>>>> REPLACE
```
"""


def test_parse_single_block() -> None:
    blocks = parse_edit_blocks(ONE)
    assert blocks == [
        EditBlock(
            path="src/app.py",
            search='def greet():\n    return "hi"\n',
            replace='def greet():\n    return "hello"\n',
        )
    ]


def test_parse_multiple_blocks_and_path_styles() -> None:
    text = """### `a.py`
```
<<<<<<< SEARCH
x = 1
=======
x = 2
>>>>>>> REPLACE
```

File: pkg/b.txt
```text
<<<<<<< SEARCH
old
=======
new
>>>>>>> REPLACE
<<<<<<< SEARCH
second
=======
2nd
>>>>>>> REPLACE
```
"""
    blocks = parse_edit_blocks(text)
    assert [(b.path, b.search, b.replace) for b in blocks] == [
        ("a.py", "x = 1\n", "x = 2\n"),
        ("pkg/b.txt", "old\n", "new\n"),
        ("pkg/b.txt", "second\n", "2nd\n"),
    ]


def test_parse_path_inside_fence_and_new_file() -> None:
    text = "```python\nnew/mod.py\n<<<<<<< SEARCH\n=======\nVALUE = 1\n>>>>>>> REPLACE\n```\n"
    assert parse_edit_blocks(text) == [EditBlock("new/mod.py", "", "VALUE = 1\n")]


def test_parse_no_blocks() -> None:
    assert parse_edit_blocks("I could not find anything to change.") == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a.py\n```\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n```\n", "line 3"),
        ("a.py\n```\n<<<<<<< SEARCH\nx\n=======\ny\n```\n", "missing '>>>>>>> REPLACE'"),
        ("Change it:\n```\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n```\n", "no file path"),
        ("a.py\n```\nx\n=======\ny\n>>>>>>> REPLACE\n```\n", "line 6"),
    ],
)
def test_parse_malformed_names_the_line(text: str, needle: str) -> None:
    with pytest.raises(EditFormatError) as info:
        parse_edit_blocks(text)
    assert needle in str(info.value)
    assert "line " in str(info.value)


def test_apply_exact(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    target = tmp_path / "src" / "app.py"
    target.write_text('def greet():\n    return "hi"\n\nprint(greet())\n')
    report = apply_edit_blocks(tmp_path, parse_edit_blocks(ONE))
    assert report.failures == [] and report.applied == ["src/app.py"]
    assert target.read_text() == 'def greet():\n    return "hello"\n\nprint(greet())\n'


def test_apply_creates_new_file_in_new_folder(tmp_path: Path) -> None:
    report = apply_edit_blocks(tmp_path, [EditBlock("pkg/sub/new.py", "", "A = 1\n")])
    assert report.ok
    assert (tmp_path / "pkg/sub/new.py").read_text() == "A = 1\n"


def test_empty_search_on_nonempty_file_fails(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    report = apply_edit_blocks(tmp_path, [EditBlock("a.py", "", "B = 2\n")])
    assert not report.ok and "already has content" in report.failures[0]
    assert (tmp_path / "a.py").read_text() == "A = 1\n"


def test_apply_ignores_trailing_whitespace(tmp_path: Path) -> None:
    target = tmp_path / "a.py"
    target.write_text("def f():   \n    return 1  \n")
    report = apply_edit_blocks(
        tmp_path, [EditBlock("a.py", "def f():\n    return 1\n", "def f():\n    return 2\n")]
    )
    assert report.ok, report.failures
    assert target.read_text() == "def f():\n    return 2\n"


def test_apply_reindents_by_indentation_delta(tmp_path: Path) -> None:
    target = tmp_path / "a.py"
    target.write_text("class A:\n    def f(self):\n        return 1\n")
    block = EditBlock(
        "a.py", "def f(self):\n    return 1\n", "def f(self):\n    x = 2\n    return x\n"
    )
    report = apply_edit_blocks(tmp_path, [block])
    assert report.ok, report.failures
    assert target.read_text() == "class A:\n    def f(self):\n        x = 2\n        return x\n"


def test_apply_keeps_missing_final_newline(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("one\ntwo")
    report = apply_edit_blocks(tmp_path, [EditBlock("a.txt", "two\n", "TWO\n")])
    assert report.ok, report.failures
    assert target.read_text() == "one\nTWO"


def test_apply_keeps_crlf(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_bytes(b"one\r\ntwo\r\n")
    report = apply_edit_blocks(tmp_path, [EditBlock("a.txt", "one\n", "uno\n")])
    assert report.ok, report.failures
    assert target.read_bytes() == b"uno\r\ntwo\r\n"


def test_sequential_blocks_on_one_file(tmp_path: Path) -> None:
    report = apply_edit_blocks(
        tmp_path,
        [EditBlock("n.py", "", "a = 1\n"), EditBlock("n.py", "a = 1\n", "a = 1\nb = 2\n")],
    )
    assert report.ok and report.applied == ["n.py"]
    assert (tmp_path / "n.py").read_text() == "a = 1\nb = 2\n"


def test_failure_is_atomic_and_reports_every_block(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    blocks = [
        EditBlock("a.py", "x = 1\n", "x = 2\n"),
        EditBlock("b.py", "nothing like this\nsecond line\n", "z\n"),
        EditBlock("c.py", "", "new\n"),
        EditBlock("../escape.py", "", "bad\n"),
    ]
    report = apply_edit_blocks(tmp_path, blocks)
    assert report.applied == []
    assert len(report.failures) == 2
    assert "SEARCH text not found in b.py" in report.failures[0]
    assert "nothing like this" in report.failures[0]
    assert "../escape.py" in report.failures[1]
    assert (tmp_path / "a.py").read_text() == "x = 1\n"
    assert (tmp_path / "b.py").read_text() == "y = 1\n"
    assert not (tmp_path / "c.py").exists()
    assert not (tmp_path.parent / "escape.py").exists()


@pytest.mark.parametrize(
    "rel", ["../x", "a/../../x", "/etc/passwd", ".git/config", "sub/.git/HEAD", ""]
)
def test_safe_target_refuses(tmp_path: Path, rel: str) -> None:
    with pytest.raises(EditError):
        safe_target(tmp_path, rel)


def test_safe_target_refuses_symlinks_leading_outside(tmp_path: Path) -> None:
    work = tmp_path / "work"
    outside = tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("s\n")
    os.symlink(outside, work / "linkdir")
    os.symlink(outside / "secret.txt", work / "linkfile")
    os.symlink(tmp_path / "missing", work / "dangling")
    for rel in ["linkdir/secret.txt", "linkdir/new/deep.txt", "linkfile", "dangling"]:
        with pytest.raises(EditError, match="outside the worktree"):
            safe_target(work, rel)
    report = apply_edit_blocks(work, [EditBlock("linkdir/secret.txt", "s\n", "changed\n")])
    assert not report.ok and (outside / "secret.txt").read_text() == "s\n"


def test_safe_target_accepts_inner_paths_and_inner_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert safe_target(tmp_path, "src/new.py") == tmp_path.resolve() / "src" / "new.py"
    assert safe_target(tmp_path, "alias/x.py").name == "x.py"
    assert safe_target(tmp_path, ".github/workflows/ci.yml").name == "ci.yml"


def test_exact_match_prefers_whole_lines(tmp_path: Path) -> None:
    target = tmp_path / "a.py"
    target.write_text("max = 1\nx = 1\n")
    report = apply_edit_blocks(tmp_path, [EditBlock("a.py", "x = 1\n", "x = 2\n")])
    assert report.ok
    assert target.read_text() == "max = 1\nx = 2\n"
