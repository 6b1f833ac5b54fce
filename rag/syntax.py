"""Syntax-aware chunking with tree-sitter: one chunk per function, class and method.

Top-level definitions become chunks of their own (with any decorators and the comment right above
them); a class-like container longer than `split_lines` is split into its members (`Class.method`),
with the lines between members kept as chunks of the class. Code between definitions becomes
`module` chunks. Anything longer than `max_lines` is cut into overlapping windows that keep the
symbol. Files whose grammar fails to parse fall back to line windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rag.chunks import Chunk
from rag.languages import GRAMMARS, language_of, parser_for
from rag.processors import line_windows

MAX_LINES = 120
SPLIT_LINES = 80


@dataclass(frozen=True)
class Grammar:
    """Which node types define symbols in a language, and how to find their names and bodies."""

    definitions: dict[str, str]  # node type -> chunk kind
    containers: dict[str, str]  # node type -> field holding the member list
    wrappers: dict[str, str] = field(default_factory=dict)  # node type -> field of the wrapped def
    comments: frozenset[str] = frozenset({"comment", "line_comment", "block_comment"})


_JS_DEFS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "method",
    "lexical_declaration": "function",
    "variable_declaration": "function",
}
_TS_DEFS = {
    **_JS_DEFS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
    "module": "module",
    "function_signature": "function",
}
_JS_WRAP = {"export_statement": "declaration"}

GRAMMAR_TABLE: dict[str, Grammar] = {
    "python": Grammar(
        definitions={"function_definition": "function", "class_definition": "class"},
        containers={"class_definition": "body"},
        wrappers={"decorated_definition": "definition"},
    ),
    "javascript": Grammar(_JS_DEFS, {"class_declaration": "body"}, _JS_WRAP),
    "typescript": Grammar(
        _TS_DEFS,
        {"class_declaration": "body", "abstract_class_declaration": "body"},
        _JS_WRAP,
    ),
    "tsx": Grammar(
        _TS_DEFS,
        {"class_declaration": "body", "abstract_class_declaration": "body"},
        _JS_WRAP,
    ),
    "go": Grammar(
        {
            "function_declaration": "function",
            "method_declaration": "method",
            "type_declaration": "type",
        },
        {},
    ),
    "rust": Grammar(
        {
            "function_item": "function",
            "struct_item": "struct",
            "enum_item": "enum",
            "trait_item": "trait",
            "impl_item": "impl",
            "mod_item": "module",
            "macro_definition": "macro",
            "const_item": "constant",
            "static_item": "constant",
            "type_item": "type",
        },
        {"impl_item": "body", "trait_item": "body", "mod_item": "body"},
        {},
    ),
}

_FUNCTION_VALUES = {
    "arrow_function",
    "function_expression",
    "function",
    "class",
    "generator_function",
}


def _text(node: Any) -> str:
    raw: bytes = node.text or b""
    return raw.decode("utf-8", errors="replace")


def _name(node: Any, language: str) -> str | None:
    """The symbol a definition node introduces, or None when it introduces none we chunk by."""
    kind = node.type
    if kind in ("lexical_declaration", "variable_declaration"):
        for child in node.named_children:
            if child.type == "variable_declarator":
                value = child.child_by_field_name("value")
                name = child.child_by_field_name("name")
                if value is not None and value.type in _FUNCTION_VALUES and name is not None:
                    return _text(name)
        return None
    if kind == "impl_item":
        target = node.child_by_field_name("type")
        trait = node.child_by_field_name("trait")
        if target is None:
            return None
        return f"{_text(trait)} for {_text(target)}" if trait is not None else _text(target)
    if kind == "type_declaration":
        for child in node.named_children:
            if child.type in ("type_spec", "type_alias"):
                name = child.child_by_field_name("name")
                return _text(name) if name is not None else None
        return None
    if kind == "method_declaration" and language == "go":
        name = node.child_by_field_name("name")
        receiver = node.child_by_field_name("receiver")
        base = _text(name) if name is not None else None
        if base and receiver is not None:
            rtype = _text(receiver).strip("()").split()[-1].lstrip("*")
            return f"{rtype}.{base}"
        return base
    name = node.child_by_field_name("name")
    return _text(name) if name is not None else None


class SyntaxProcessor:
    """Chunks Python, JavaScript, TypeScript, Go and Rust along their syntax trees."""

    name = "syntax"
    version = "1"

    def __init__(self, max_lines: int = MAX_LINES, split_lines: int = SPLIT_LINES) -> None:
        self.max_lines = max_lines
        self.split_lines = split_lines

    def can_process(self, path: str) -> bool:
        return language_of(path) in GRAMMARS

    def process(self, path: str, text: str) -> list[Chunk]:
        language = language_of(path)
        lines = text.splitlines(keepends=True)
        if not lines:
            return []
        try:
            tree = parser_for(language).parse(text.encode("utf-8", errors="surrogatepass"))
        except (ValueError, RuntimeError):
            return line_windows(path, language, lines, 0, len(lines) - 1)
        grammar = GRAMMAR_TABLE[language]
        out: list[Chunk] = []
        self._block(
            tree.root_node.named_children, path, language, grammar, lines, None, "module", out
        )
        return out

    def _block(
        self,
        nodes: list[Any],
        path: str,
        language: str,
        grammar: Grammar,
        lines: list[str],
        owner: str | None,
        gap_kind: str,
        out: list[Chunk],
        lead: tuple[int, int] | None = None,
    ) -> None:
        """Chunk sibling nodes: each definition alone, the lines between them grouped.

        `lead` is a row range (a container's header) that opens the first group.
        """
        gap_first, gap_last = lead if lead else (None, -1)
        comment_start: int | None = None  # first row of the comments right at the gap's end

        def flush(last: int) -> None:
            if gap_first is not None and last >= gap_first:
                out.extend(
                    line_windows(
                        path,
                        language,
                        lines,
                        gap_first,
                        last,
                        symbol=owner,
                        kind=gap_kind,
                        size=self.max_lines,
                    )
                )

        for node in nodes:
            target = node
            wrapper_field = grammar.wrappers.get(node.type)
            if wrapper_field is not None:
                inner = node.child_by_field_name(wrapper_field)
                if inner is not None:
                    target = inner
            kind = grammar.definitions.get(target.type)
            name = _name(target, language) if kind else None
            row, end_row = node.start_point[0], node.end_point[0]
            if not kind or not name:
                if node.type in grammar.comments:
                    if comment_start is None or row > gap_last + 1:
                        comment_start = row
                else:
                    comment_start = None
                if gap_first is None:
                    gap_first = row
                gap_last = max(gap_last, end_row)
                continue
            start = row
            # A comment right above the definition documents it: it joins the definition.
            if comment_start is not None and gap_last + 1 >= row:
                start = comment_start
                flush(comment_start - 1)
            else:
                flush(gap_last)
            gap_first, gap_last, comment_start = None, -1, None
            symbol = f"{owner}.{name}" if owner else name
            if owner and kind == "function":
                kind = "method"
            self._definition(node, target, start, symbol, kind, path, language, grammar, lines, out)
        flush(gap_last)

    def _definition(
        self,
        node: Any,
        target: Any,
        start: int,
        symbol: str,
        kind: str,
        path: str,
        language: str,
        grammar: Grammar,
        lines: list[str],
        out: list[Chunk],
    ) -> None:
        """One definition: whole when short, split into its members when a long container."""
        end = node.end_point[0]
        body_field = grammar.containers.get(target.type)
        body = target.child_by_field_name(body_field) if body_field else None
        if body is not None and end - start + 1 > self.split_lines and body.named_children:
            members = body.named_children
            lead = (start, members[0].start_point[0] - 1)
            self._block(members, path, language, grammar, lines, symbol, kind, out, lead)
            return
        out.extend(
            line_windows(
                path, language, lines, start, end, symbol=symbol, kind=kind, size=self.max_lines
            )
        )
