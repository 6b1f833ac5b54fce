"""Where SQLite and PostgreSQL differ, in one place: the store's SQL is written for SQLite (`?`
and `:name` parameters, its functions) and translated here for PostgreSQL, once per statement.

What differs and how PostgreSQL gets it:
- parameters: `?` -> `%s`, `:name` -> `%(name)s` (a literal `%` becomes `%%`); psycopg binds
  them on the client, so a parameter's type comes from where it stands, as in SQLite;
- `INSERT OR IGNORE` -> `INSERT ... ON CONFLICT DO NOTHING`; `LIKE` -> `ILIKE` (SQLite's LIKE
  ignores ASCII case); `x COLLATE NOCASE` -> `lower(x)`; scalar `MAX(a, b)`/`MIN(a, b)` ->
  `GREATEST`/`LEAST`; `json_each(?)` over an array -> `json_array_elements_text`;
- DDL: `INTEGER PRIMARY KEY AUTOINCREMENT` -> an identity column, INTEGER -> BIGINT, REAL ->
  DOUBLE PRECISION, BLOB -> BYTEA, and every table gets a `rowid` identity column, so the reads'
  `ORDER BY created_at, rowid` keep insertion order;
- the SQL functions SQLite gets from Python or has built in (`owner_gone`, `owner_lives`,
  `julianday`, `json_set`/`json_remove` on one `$.key`, `instr`) are created by PG_FUNCTIONS.
  `owner_gone` and `owner_lives` are false on PostgreSQL: the server cannot see the clients'
  processes, so a lease is lost (and free to claim) exactly when it expires (writing commands on
  the same host still check the process). Statements write those two as FALSE and `instr` as
  `strpos` inline, so reads work on a database whose functions are older than this version;
- a multi-row insert's ids come from `RETURNING` (SQLite: the cursor's lastrowid);
- every write transaction first takes one advisory lock (WRITE_LOCK_SQL), so writes stay
  serialised across processes as SQLite's BEGIN IMMEDIATE serialises them;
- claiming runs: `FOR UPDATE SKIP LOCKED` only on PostgreSQL (SKIP_LOCKED).
"""

from __future__ import annotations

import re
from functools import lru_cache

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

# The lock every PostgreSQL write transaction takes first (an arbitrary fixed key: "orch").
WRITE_LOCK_SQL = "SELECT pg_advisory_xact_lock(1869771624)"

# Appended to a claim query's SELECT on PostgreSQL; SQLite's single writer needs nothing.
SKIP_LOCKED = {SQLITE: "", POSTGRESQL: " FOR UPDATE SKIP LOCKED"}

# The functions SQLite registers from Python or has built in, for PostgreSQL (idempotent).
PG_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION owner_gone(owner text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$ SELECT false $$""",
    """CREATE OR REPLACE FUNCTION owner_lives(owner text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$ SELECT false $$""",
    """CREATE OR REPLACE FUNCTION julianday(ts text) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS
    $$ SELECT (extract(epoch FROM ts::timestamptz) / 86400.0 + 2440587.5)::double precision $$""",
    """CREATE OR REPLACE FUNCTION json_set(doc text, path text, value json) RETURNS text
    LANGUAGE sql IMMUTABLE AS
    $$ SELECT jsonb_set(doc::jsonb, string_to_array(substr(path, 3), '.'), value::jsonb, true)::text $$""",
    """CREATE OR REPLACE FUNCTION json_remove(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE AS
    $$ SELECT (doc::jsonb #- string_to_array(substr(path, 3), '.'))::text $$""",
    """CREATE OR REPLACE FUNCTION instr(s text, sub text) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT strpos(s, sub) $$""",
]
# True when every function PG_FUNCTIONS creates exists (a database made by an older version lacks
# the newer ones until a writing open creates them; reads never need them, see _code_rewrites).
PG_FUNCTIONS_PRESENT = (
    "SELECT to_regprocedure('owner_lives(text)') IS NOT NULL"
    " AND to_regprocedure('instr(text,text)') IS NOT NULL"
)

# Migrations whose PostgreSQL statements cannot be translated from the portable ones, by name.
PG_OVERRIDES: dict[str, list[str]] = {}

_PLACEHOLDER = re.compile(r"\?|(?<![:\w]):([A-Za-z_]\w*)|%")
_STRING = re.compile(r"'(?:[^']|'')*'")
_MINMAX = re.compile(r"\b(MAX|MIN)\s*\(", re.IGNORECASE)


def _code_rewrites(code: str) -> str:
    """The word-level rewrites of SQL outside string literals."""
    code = re.sub(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", "INSERT INTO", code, flags=re.IGNORECASE)
    code = re.sub(r"\bLIKE\b", "ILIKE", code)
    code = re.sub(r"([\w.]+)\s+COLLATE\s+NOCASE", r"lower(\1)", code, flags=re.IGNORECASE)
    # The liveness functions are false on PostgreSQL (the server cannot see the clients'
    # processes) and instr is strpos: written inline, so no statement of this version needs
    # PG_FUNCTIONS' copies (kept for older versions sharing the database), not even a read on a
    # database no writing open has migrated yet.
    code = re.sub(r"(?<!FUNCTION )\bowner_(?:gone|lives)\(\s*[\w.]+\s*\)", "FALSE", code)
    code = re.sub(r"(?<!FUNCTION )\binstr\(", "strpos(", code)
    code = re.sub(
        r"\bjson_each\(\s*\?\s*\)",
        "json_array_elements_text(CAST(? AS json))",
        code,
        flags=re.IGNORECASE,
    )
    return _PLACEHOLDER.sub(_placeholder, code)


def _placeholder(match: re.Match[str]) -> str:
    """One `?`, `:name` or `%` in psycopg's format."""
    text = match.group(0)
    if text == "?":
        return "%s"
    if text == "%":
        return "%%"
    return f"%({match.group(1)})s"


def _closing_paren(sql: str, opened: int) -> tuple[int, int]:
    """The index of the `)` that closes the `(` at `opened`, and how many commas stand directly
    inside that pair; quoted text is skipped."""
    depth, commas, i = 0, 0, opened
    while i < len(sql):
        char = sql[i]
        if char == "'":
            i = sql.index("'", i + 1)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i, commas
        elif char == "," and depth == 1:
            commas += 1
        i += 1
    return len(sql), commas


def _scalar_minmax(sql: str) -> str:
    """`MAX(a, b)`/`MIN(a, b)` (two or more arguments) -> GREATEST/LEAST; aggregates stay."""
    out, pos = [], 0
    for match in _MINMAX.finditer(sql):
        if match.start() < pos:
            continue
        _, commas = _closing_paren(sql, match.end() - 1)
        if commas:
            name = "GREATEST" if match.group(1).upper() == "MAX" else "LEAST"
            out.append(sql[pos : match.start()] + name + "(")
            pos = match.end()
    out.append(sql[pos:])
    return "".join(out)


_SUBQUERY = re.compile(r"\b(FROM|JOIN)\s*\(\s*SELECT\b", re.IGNORECASE)
_NOT_ALIAS = frozenset(
    {"WHERE", "ORDER", "GROUP", "LIMIT", "OFFSET", "UNION", "JOIN", "LEFT", "INNER", "CROSS",
     "ON", "HAVING", "WINDOW", "EXCEPT", "INTERSECT", ""}
)  # fmt: skip


def _alias_subqueries(sql: str) -> str:
    """Give `FROM (SELECT ...)` an alias where it has none (PostgreSQL 15 requires one)."""
    ends: list[int] = []
    for match in _SUBQUERY.finditer(sql):
        i, _ = _closing_paren(sql, sql.index("(", match.start()))
        following = re.match(r"\s*(\w*)", sql[i + 1 :])
        if (following.group(1).upper() if following else "") in _NOT_ALIAS:
            ends.append(i + 1)
    for n, end in enumerate(sorted(ends, reverse=True)):
        sql = sql[:end] + f" AS _sub{n}" + sql[end:]
    return sql


@lru_cache(maxsize=2048)
def to_postgres(sql: str) -> str:
    """A statement written for SQLite, as psycopg runs it on PostgreSQL."""
    ignore = re.search(r"\bINSERT\s+OR\s+IGNORE\b", sql, re.IGNORECASE) is not None
    sql = _alias_subqueries(_scalar_minmax(sql))
    parts, pos = [], 0
    for literal in _STRING.finditer(sql):
        parts.append(_code_rewrites(sql[pos : literal.start()]))
        parts.append(literal.group(0).replace("%", "%%"))
        pos = literal.end()
    parts.append(_code_rewrites(sql[pos:]))
    out = "".join(parts)
    if ignore:
        out = _add_before_returning(out, " ON CONFLICT DO NOTHING")
    return out


def _add_before_returning(sql: str, clause: str) -> str:
    """Insert a clause before a trailing RETURNING (or at the end)."""
    match = re.search(r"\sRETURNING\s", sql, re.IGNORECASE)
    if match is None:
        return sql.rstrip().rstrip(";") + clause
    return sql[: match.start()] + clause + sql[match.start() :]


_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.IGNORECASE),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
]  # fmt: skip
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?\w+\s*\(", re.IGNORECASE)


def ddl_to_postgres(statement: str) -> str:
    """A portable DDL statement (CREATE TABLE/INDEX, ALTER TABLE ADD COLUMN) for PostgreSQL."""
    out = statement
    for pattern, replacement in _TYPES:
        out = pattern.sub(replacement, out)
    created = _CREATE_TABLE.match(out)
    if created and not re.search(r"\browid\b", out, re.IGNORECASE):
        # The rowid SQLite gives every table, so `ORDER BY ..., rowid` keeps insertion order.
        out = (
            out[: created.end()]
            + "\n rowid BIGINT GENERATED BY DEFAULT AS IDENTITY,"
            + out[created.end() :]
        )
    return out


def migration_for_postgres(name: str, statements: list[str]) -> list[str]:
    """The PostgreSQL statements of a named migration: its override, or the translated DDL."""
    if name in PG_OVERRIDES:
        return PG_OVERRIDES[name]
    return [ddl_to_postgres(s) for s in statements]
