"""What an assertion's failure says: who acted, on which table, with which command, and the
policies PostgreSQL applied to that role for that command, with their expressions.

A failing access test is only useful if it points at the policy to read, so the message lists
the policies as the server has them (pg_policy), not as the policy files declare them: a policy
someone added by hand, or an old one apply has not removed yet, shows up too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pglast
import psycopg
from pglast import ast

from rlsctl.testing import queries

# pg_policy.polcmd of the policies that decide each command. UPDATE and DELETE also apply the
# SELECT policies to the rows they read, so a widened SELECT policy shows up in their messages.
POLICY_COMMANDS = {
    "SELECT": ("r",),
    "INSERT": ("a",),
    "UPDATE": ("w", "r"),
    "DELETE": ("d", "r"),
    "MERGE": ("a", "w", "d", "r"),
}
# psycopg placeholders are not SQL: parsed as PostgreSQL's own parameters ($1) instead.
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


@dataclass(frozen=True)
class AppliedPolicy:
    name: str
    kind: str  # PERMISSIVE or RESTRICTIVE
    command: str  # SELECT, INSERT, UPDATE, DELETE or ALL
    roles: tuple[str, ...]
    using: str | None
    check: str | None

    def describe(self) -> str:
        parts = [f"{self.name} ({self.kind} {self.command} TO {', '.join(self.roles)})"]
        if self.using is not None:
            parts.append(f"USING ({self.using})")
        if self.check is not None:
            parts.append(f"WITH CHECK ({self.check})")
        return " ".join(parts)


@dataclass(frozen=True)
class Statement:
    """A statement an actor runs, with what its messages need to say about it."""

    sql: bytes | str
    command: str  # SELECT, INSERT, UPDATE, DELETE, MERGE, or the statement's first word
    table: str | None  # None: the statement names no table rlsctl could find
    params: object = None
    key: str | None = None  # the row an operation is about (None: raw SQL, or an INSERT)

    @property
    def text(self) -> str:
        return self.sql.decode() if isinstance(self.sql, bytes) else self.sql


def classify(sql: str) -> tuple[str, str | None]:
    """The command of a test's own SQL statement and the table it acts on, as PostgreSQL's parser
    reads them: the target of an INSERT, UPDATE, DELETE or MERGE, the first table a SELECT reads."""
    try:
        parsed = pglast.parse_sql(_PLACEHOLDER.sub("$1", sql))
    except pglast.parser.ParseError:
        return _first_word(sql), None
    if not parsed:
        return _first_word(sql), None
    node = parsed[0].stmt
    name = type(node).__name__
    command = name.removesuffix("Stmt").upper()
    if isinstance(node, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt):
        return command, node.relation.relname
    if isinstance(node, ast.SelectStmt):
        first = next(_range_vars(node.fromClause), None)
        return command, first.relname if first is not None else None
    return command, None


def _first_word(sql: str) -> str:
    words = sql.split()
    return words[0].upper() if words else ""


def _range_vars(node: object) -> Iterator[ast.RangeVar]:
    if isinstance(node, ast.RangeVar):
        yield node
    elif isinstance(node, ast.Node):
        for slot in node.__slots__:
            yield from _range_vars(getattr(node, slot))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _range_vars(item)


def policies_for(conn: psycopg.Connection, schema: str, table: str, role: str, command: str) -> list[AppliedPolicy]:
    """The policies on `table` that PostgreSQL applies to `role` for `command`."""
    commands = list(POLICY_COMMANDS.get(command, ("r", "a", "w", "d")))
    # A savepoint, rolled back: reading the catalog must leave the test's transaction as it was.
    with conn.transaction(force_rollback=True):
        rows = queries.run(conn, "policies_for", schema=schema, table=table, role=role, commands=commands)
    return [
        AppliedPolicy(
            row["name"], row["kind"], row["command"], tuple(row["roles"]), row["using_expr"], row["check_expr"]
        )
        for row in rows
    ]


def message(principal: str, role: str, statement: Statement, problem: str, policies: list[AppliedPolicy] | None) -> str:
    """The failure: one line naming principal, command, table and problem; the statement; the policies."""
    table = f'"{statement.table}"' if statement.table else "(no table found in the statement)"
    lines = [f"{principal}: {statement.command} on {table}: {problem}", f"  statement: {_one_line(statement.text)}"]
    if statement.params is not None:
        lines.append(f"  parameters: {statement.params!r}")
    if policies is None:
        return "\n".join(lines)
    scope = f"policies on {table} for role {role} and {statement.command}"
    if not policies:
        lines.append(f"  {scope}: none")
        return "\n".join(lines)
    lines.append(f"  {scope} (permissive ones ORed together, restrictive ones ANDed with them):")
    lines.extend(f"    {policy.describe()}" for policy in policies)
    return "\n".join(lines)


def _one_line(sql: str) -> str:
    return " ".join(sql.split())
