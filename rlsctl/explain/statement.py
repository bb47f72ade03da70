"""A declared query's SQL: `:name` parameters become PostgreSQL's own `$1..$n`, and the result
must be exactly one SELECT, INSERT, UPDATE or DELETE.

Values never enter the text: each `:name` is bound as a parameter when the statement runs, and
PostgreSQL plans an unnamed statement's parameters as the constants they are (a custom plan), so
EXPLAIN shows the plan the application gets for those values.

Parameters are found with PostgreSQL's own scanner (pglast), so `::text` casts, `':x'` inside
string literals and `--` comments are never taken for one. A `:` directly followed by a name is a
parameter; write array slices with spaces (`a[lo : hi]`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pglast
from psycopg.types.numeric import Int8

# The statements a representative query may be: what an application sends to read or write rows.
COMMANDS = {"SelectStmt": "SELECT", "InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class StatementError(ValueError):
    """The SQL of a declaration is not one statement rlsctl explain can plan; `str()` says why."""


@dataclass(frozen=True)
class Statement:
    """One declared statement, ready to run with bound parameters."""

    source: str  # as declared
    text: str  # with $1..$n in place of the :names
    names: tuple[str, ...]  # the parameter each $n stands for, in order
    command: str  # SELECT, INSERT, UPDATE or DELETE
    read_only: bool = True  # a SELECT that writes nothing: no data-modifying WITH, no INTO, no FOR UPDATE

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        return [_bound(params[name]) for name in self.names]


def _bound(value: Any) -> Any:
    """A value as bound: an integer as bigint. psycopg sends the smallest type that holds the value
    (42 as smallint, [1, 2] as smallint[]); bigint compares with every integer column through its
    index, as the application's own driver sends a bigint id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Int8(value)
    if isinstance(value, list):
        return [_bound(item) for item in value]
    return value


def compile_statement(sql: str) -> Statement:
    """The statement with its parameters numbered; StatementError when it is not exactly one
    SELECT, INSERT, UPDATE or DELETE, or already uses $n."""
    text, names = _number_parameters(sql)
    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        raise StatementError(f"does not parse: {_parse_message(exc, text)}") from None
    if len(parsed) != 1:
        raise StatementError(f"holds {len(parsed)} statements; declare one statement per query")
    kind = type(parsed[0].stmt).__name__
    if kind not in COMMANDS:
        raise StatementError(f"is {_named(kind)}; a representative query is a SELECT, INSERT, UPDATE or DELETE")
    if getattr(parsed[0].stmt, "intoClause", None) is not None:
        raise StatementError(
            "is a SELECT INTO, which creates a table; a representative query is a SELECT, INSERT, UPDATE or DELETE"
        )
    return Statement(sql, text, names, COMMANDS[kind], read_only=kind == "SelectStmt" and _reads_only(text))


# PostgreSQL's parse nodes whose name is not the command's words.
_COMMAND_WORDS = {"VariableSetStmt": "SET", "VariableShowStmt": "SHOW", "TransactionStmt": "transaction control",
                  "CreateTableAsStmt": "CREATE TABLE AS", "CreateStmt": "CREATE TABLE"}  # fmt: skip


def _named(kind: str) -> str:
    """A parse node's name as the command a user wrote: TruncateStmt -> `a TRUNCATE statement`."""
    words = _COMMAND_WORDS.get(kind) or re.sub(r"(?<=[a-z])(?=[A-Z])", " ", kind.removesuffix("Stmt")).upper()
    return f"{'an' if words[0] in 'AEIOU' else 'a'} {words} statement"


# What makes a SELECT write: a data-modifying WITH (at any depth), SELECT INTO, a row lock. Keys of
# the parse tree (node types and fields), never the text of a literal.
_WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "intoClause", "lockingClause"})


def _reads_only(text: str) -> bool:
    return not _keys(json.loads(pglast.parser.parse_sql_json(text))) & _WRITES


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for item in node for key in _keys(item)}
    return set()


def _number_parameters(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` -> `$n` (the same name, the same number). Token offsets are bytes: work on bytes."""
    raw = sql.encode()
    try:
        tokens = list(pglast.parser.scan(sql))
    except pglast.parser.ParseError as exc:
        raise StatementError(f"does not parse: {exc}") from None
    names: list[str] = []
    pieces: list[bytes] = []
    done = 0
    for index, token in enumerate(tokens):
        if token.name == "PARAM":
            raise StatementError(
                f"uses the positional parameter {raw[token.start : token.end + 1].decode()}; "
                "name parameters instead (:user_id, :tenant_id, or one of the query's params)"
            )
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.name != "ASCII_58" or after is None or after.start != token.end + 1:
            continue
        name = raw[after.start : after.end + 1].decode()
        if not _NAME.match(name):
            continue
        if name not in names:
            names.append(name)
        pieces.append(raw[done : token.start])
        pieces.append(f"${names.index(name) + 1}".encode())
        done = after.end + 1
    pieces.append(raw[done:])
    return b"".join(pieces).decode(), tuple(names)


def _parse_message(exc: pglast.parser.ParseError, text: str) -> str:
    """The parser's message, with the line of the statement it points at when there are several."""
    message = str(exc.args[0]) if exc.args else str(exc)
    location = exc.args[1] if len(exc.args) > 1 else None  # 1-based, in characters
    if isinstance(location, int) and text.count("\n"):
        line = text[: max(location - 1, 0)].count("\n") + 1
        return f"{message} (line {line} of the statement)"
    return message
