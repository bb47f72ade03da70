"""Statements a test hands to an actor's assertions without writing SQL.

`Delete("membership", "m_owner")` is rendered by rlsctl's own templates (every name and value
quoted) against the live schema, so the assertion knows the command, the table and the row it is
about, and can tell a denied statement from one aimed at a row that does not exist.

A key may be a primary key value or the name of a fixture row (policies/fixtures.yaml); in
`values`, as in the fixture file, "@name" stands for the key of fixture row `name`.
Standard library only: the plugin imports this module into every pytest session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Select:
    """Read one row by its key (the table's single-column primary key)."""

    command: ClassVar[str] = "SELECT"
    table: str
    key: Any


@dataclass(frozen=True)
class Insert:
    """Insert one row; NOT NULL columns without a default get a plain value, as fixture rows do."""

    command: ClassVar[str] = "INSERT"
    table: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Update:
    """Set columns of one row, found by its key."""

    command: ClassVar[str] = "UPDATE"
    table: str
    key: Any
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delete:
    """Delete one row, found by its key."""

    command: ClassVar[str] = "DELETE"
    table: str
    key: Any


Operation = Select | Insert | Update | Delete
