"""The one quoting path for generated SQL.

Every identifier and literal that rlsctl writes into SQL goes through the
functions in this module, either directly or through the Jinja filters that
`rlsctl.pg.templates` registers from them. Nothing else in the package builds SQL
text from values.

Literals assume `standard_conforming_strings = on` (the default since
PostgreSQL 9.1); every transaction rlsctl opens sets it explicitly, so a
backslash in a literal can never escape the quote.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from rlsctl.errors import UsageError

__all__ = [
    "SqlText",
    "catalog_expression",
    "catalog_statement",
    "dollar_quoted",
    "ident",
    "literal",
    "qualified",
    "setting",
]


class SqlText(str):
    """A fragment of SQL that was produced by this module or a template.

    Templates insert `SqlText` values verbatim; any other value reaching a
    template goes through `literal` or `ident` first.
    """

    __slots__ = ()


def _reject_nul(value: str, what: str) -> None:
    if "\x00" in value:
        raise UsageError(f"{what} contains a NUL character: {value!r}")


def ident(name: str) -> SqlText:
    """Quote one identifier, always (embedded double quotes are doubled)."""
    if not isinstance(name, str) or name == "":
        raise UsageError(f"invalid SQL identifier: {name!r}")
    _reject_nul(name, "identifier")
    if len(name.encode()) > 63:
        raise UsageError(f"identifier longer than 63 bytes (PostgreSQL would truncate it): {name!r}")
    return SqlText('"' + name.replace('"', '""') + '"')


def qualified(*parts: str) -> SqlText:
    """A dotted name, each part quoted: `"public"."orders"`."""
    return SqlText(".".join(ident(part) for part in parts))


def literal(value: object) -> SqlText:
    """A SQL literal for a Python value (None, bool, int, Decimal, str, dates, lists)."""
    if value is None:
        return SqlText("NULL")
    if isinstance(value, bool):
        return SqlText("true" if value else "false")
    if isinstance(value, int | Decimal):
        return SqlText(str(value))
    if isinstance(value, float):
        return SqlText(repr(value))
    if isinstance(value, dt.datetime | dt.date):
        return _quote_string(value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat())
    if isinstance(value, str):
        return _quote_string(value)
    if isinstance(value, list | tuple):
        return array_literal(value)
    raise UsageError(f"cannot write a SQL literal for {type(value).__name__}: {value!r}")


def _quote_string(value: str) -> SqlText:
    _reject_nul(value, "string literal")
    return SqlText("'" + value.replace("'", "''") + "'")


def array_literal(values: Iterable[object]) -> SqlText:
    """`ARRAY['a', 'b']`; an empty list becomes `'{}'` so the target type decides."""
    items = [literal(value) for value in values]
    if not items:
        return SqlText("'{}'")
    return SqlText("ARRAY[" + ", ".join(items) + "]")


def join(fragments: Iterable[str], separator: str = ", ") -> SqlText:
    """Join fragments that are already SQL (quoted by this module or a template)."""
    return SqlText(separator.join(fragments))


DOLLAR_TAG = "rlsctl"


def dollar_quoted(body: str) -> SqlText:
    """`$rlsctl$<body>$rlsctl$`, with a tag the body cannot end early.

    Function bodies read back from the catalog (prosrc) are arbitrary text: one
    containing `$rlsctl$` would close the quote and let the rest run as SQL in a
    plan, or in the reverse of one. The first of `$rlsctl$`, `$rlsctl_1$`, ...
    whose closing tag first occurs at the very end is used, so rlsctl's own
    bodies keep `$rlsctl$` and render byte for byte as before.
    """
    _reject_nul(body, "function body")
    number = 0
    while True:
        tag = f"${DOLLAR_TAG}$" if number == 0 else f"${DOLLAR_TAG}_{number}$"
        # The scanner closes the quote at the first tag after the opening one: it must be ours.
        if (body + tag).find(tag) == len(body):
            return SqlText(tag + body + tag)
        number += 1


def catalog_expression(text: str) -> SqlText:
    """An expression the server deparsed (pg_get_expr), checked to be one expression.

    The server quotes every literal and identifier it prints, so its output
    cannot end the clause it is put in; this check makes that a guarantee
    rather than an assumption before the text is embedded in a statement."""
    select = _one_statement(f"SELECT ({text})", "SelectStmt", "expression")
    # One statement is not enough: `true) FROM t WHERE (x` parses as one SELECT too.
    clauses = [name for name in _SELECT_CLAUSES if getattr(select, name, None)]
    if len(select.targetList or ()) != 1 or clauses:
        raise UsageError(f"catalog expression is not exactly one expression: {text[:80]!r}")
    return SqlText(text)


# Every part of a SELECT beyond its one target: none may come from a catalog expression.
_SELECT_CLAUSES = (
    "distinctClause", "intoClause", "fromClause", "whereClause", "groupClause", "havingClause", "windowClause",
    "valuesLists", "sortClause", "limitOffset", "limitCount", "lockingClause", "withClause", "op", "larg", "rarg",
)  # fmt: skip


def catalog_statement(text: str, kind: str) -> SqlText:
    """A whole statement the server deparsed (pg_get_triggerdef), checked to be exactly
    one statement of `kind` (a pglast node name, e.g. CreateTrigStmt)."""
    _one_statement(text, kind, "statement")
    return SqlText(text)


def trigger_when(definition: str) -> str | None:
    """A trigger's WHEN condition as the server printed it (pg_get_triggerdef), without the
    parentheses WHEN requires; None when it has none.

    Read from the statement's parse tree (is there a whenClause?) and the grammar's own tokens
    (the text between the parentheses after WHEN, counted token by token), so a parenthesis
    or `) EXECUTE FUNCTION ` inside a string or an argument cannot mislead it. A definition
    that does not parse stands in whole: a WHEN is never read as absent."""
    import pglast

    try:
        statement = _one_statement(definition, "CreateTrigStmt", "trigger definition")
    except UsageError:
        return definition
    if statement.whenClause is None:
        return None
    raw = definition.encode()  # token offsets count bytes
    depth, start = 0, None
    tokens = iter(pglast.parser.scan(definition))
    for token in tokens:
        if token.name == "WHEN" and depth == 0:
            start = next(tokens).end + 1  # just inside its opening parenthesis
            depth = 1
            continue
        if start is None:
            continue
        depth += {"ASCII_40": 1, "ASCII_41": -1}.get(token.name, 0)
        if depth == 0:
            return raw[start : token.start].decode()
    return definition


def _one_statement(text: str, kind: str, what: str) -> Any:
    import pglast  # only when catalog text is embedded: rendering declared objects never needs it

    _reject_nul(text, what)
    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        raise UsageError(f"catalog {what} does not parse: {text[:80]!r}") from None
    if len(parsed) != 1 or type(parsed[0].stmt).__name__ != kind:
        raise UsageError(f"catalog {what} is not exactly one {kind}: {text[:80]!r}")
    # The server never deparses a comment; one here could swallow the SQL that
    # follows the text where it is embedded (`true) --` parses as one SELECT).
    if any(token.name in ("SQL_COMMENT", "C_COMMENT") for token in pglast.parser.scan(text)):
        raise UsageError(f"catalog {what} holds a comment: {text[:80]!r}")
    return parsed[0].stmt


_SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
_BARE_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def setting(entry: str) -> SqlText:
    """`name = value` for the SET clause of CREATE FUNCTION, from a pg_proc.proconfig entry.

    proconfig holds `name=value`; for search_path the value is a list that the
    server already wrote with quote_identifier (`"$user", public`), so each item
    is kept bare when it is a plain lower-case name and quoted again otherwise.
    Other settings are one literal.
    """
    name, sep, value = entry.partition("=")
    if not sep or not _SETTING_NAME.fullmatch(name):
        raise UsageError(f"invalid function setting: {entry!r}")
    if name != "search_path":
        return SqlText(f"{name} = {literal(value)}")
    return SqlText(f"{name} = " + ", ".join(_search_path_item(item) for item in _list_items(value)))


def _list_items(value: str) -> list[str]:
    """Split a flattened list setting on the commas outside double quotes."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted  # a doubled quote inside a name toggles twice
        if char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return items


def _search_path_item(item: str) -> SqlText:
    if item in ("", '""'):
        return SqlText("''")  # an empty search_path
    if len(item) >= 2 and item[0] == item[-1] == '"':
        return ident(item[1:-1].replace('""', '"'))
    return SqlText(item) if _BARE_NAME.fullmatch(item) else ident(item)
