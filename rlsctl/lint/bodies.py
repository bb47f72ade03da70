"""What helper functions do, read from their bodies: the relations they query and the settings they read.

Policies often hand their work to helpers (`team_id = ANY ((SELECT my_teams()))`); what matters for recursion
(RLS017) and for missing settings (RLS016) then happens in the helper's body. Live bodies come from
pg_proc.prosrc, offline ones from CREATE FUNCTION statements. SQL bodies are parsed with pglast; PL/pgSQL
bodies with pglast's PL/pgSQL parser, whose embedded queries are parsed in turn. A body neither parser takes is
read with a pattern over its text (string literals and comments removed), which may name a table too many but
never misses one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pglast
from pglast import ast

from rlsctl.lint.model import Function, LintModel, Relation
from rlsctl.lint.sqlfiles import walk

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
_RELATION = re.compile(rf"\b(?:FROM|JOIN|UPDATE|INTO)\s+(?:ONLY\s+)?({_NAME})(?:\s*\.\s*({_NAME}))?", re.I)
_ONE_ARG_SETTING = re.compile(r"\bcurrent_setting\s*\(\s*('(?:[^']|'')*'|[\w.$]+)\s*\)", re.I)
_UNKNOWN_VARIABLE = re.compile(r'"([^"]+)" is not a known variable')
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_NOISE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", re.S)


@dataclass(frozen=True)
class Body:
    relations: frozenset[tuple[str | None, str]]  # (schema as written or None, name) the body queries
    settings_without_missing_ok: tuple[str, ...]  # names passed to one-argument current_setting()


def read_body(function: Function) -> Body:
    if function.language not in ("sql", "plpgsql"):
        return Body(frozenset(), ())
    return _read(function.language, function.body, "trigger" if function.is_trigger else "void")


@lru_cache(maxsize=4096)
def _read(language: str, body: str, returns: str) -> Body:
    statements = _statements(language, body, returns)
    if statements is None:
        return _by_pattern(body)
    relations: set[tuple[str | None, str]] = set()
    settings: list[str] = []
    for node in walk(statements):
        if isinstance(node, ast.CommonTableExpr):
            continue
        if isinstance(node, ast.RangeVar):
            relations.add((node.schemaname, node.relname))
        elif isinstance(node, ast.FuncCall) and _func_name(node) == "current_setting" and len(node.args or ()) == 1:
            name = _setting_name(node.args[0])
            if name not in settings:
                settings.append(name)
    ctes = {n.ctename for n in walk(statements) if isinstance(n, ast.CommonTableExpr)}
    return Body(frozenset(r for r in relations if not (r[0] is None and r[1] in ctes)), tuple(settings))


def _statements(language: str, body: str, returns: str) -> list[Any] | None:
    """The parsed statements of a body, or None when it cannot be parsed."""
    try:
        if language == "sql":
            return [raw.stmt for raw in pglast.parse_sql(body)]
        return [raw.stmt for query in _plpgsql_queries(body, returns) for raw in pglast.parse_sql(query)]
    except pglast.parser.ParseError:
        return None


def _plpgsql_queries(body: str, returns: str) -> list[str]:
    """The SQL a PL/pgSQL body runs."""
    return [_as_statement(expr) for expr in _plpgsql_exprs(_plpgsql_tree(body, returns))]


def _plpgsql_tree(body: str, returns: str) -> Any:
    """pglast's PL/pgSQL tree of a body. Its parameters are unknown here (the model keeps types, not names), so
    a variable the parser cannot resolve is declared in an enclosing block and the parse retried."""
    declared: list[str] = []
    for _ in range(20):
        names = " ".join(f"{v} pg_catalog.text;" for v in declared)
        block = body if not declared else f"DECLARE {names} BEGIN {body}; END"
        source = (
            f"CREATE FUNCTION pg_temp.lint_body() RETURNS {returns} LANGUAGE plpgsql AS $lint_body${block}$lint_body$"
        )
        try:
            return pglast.parse_plpgsql(source)
        except pglast.parser.ParseError as exc:
            unknown = _UNKNOWN_VARIABLE.search(str(exc))
            if unknown is None or "$lint_body$" in body:
                raise
            declared.append('"' + unknown.group(1).replace('"', '""') + '"')
    raise pglast.parser.ParseError("too many unknown variables", 0)


def _plpgsql_exprs(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        if "PLpgSQL_expr" in tree:
            yield tree["PLpgSQL_expr"]
        for value in tree.values():
            yield from _plpgsql_exprs(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_exprs(item)


def _as_statement(expr: dict[str, Any]) -> str:
    """A statement for the SQL parser: whole statements as they are, expressions selected, and the value of an
    assignment (`target := value`, parse modes 3-5) selected without its target."""
    query, mode = expr.get("query", ""), expr.get("parseMode", 0)
    if mode == 0:
        return query
    if mode >= 3 and ":=" in query:
        query = query.split(":=", 1)[1]
    elif mode >= 3 and "=" in query:
        query = query.split("=", 1)[1]
    return f"SELECT {query}"


def _by_pattern(body: str) -> Body:
    text = _NOISE.sub("''", body)  # no table names from comments or messages
    settings = [m.group(1).strip("'") for m in _ONE_ARG_SETTING.finditer(_COMMENTS.sub("", body))]
    relations = {(_unquote(a) if b else None, _unquote(b or a)) for a, b in _RELATION.findall(text)}
    return Body(frozenset(relations), tuple(dict.fromkeys(settings)))


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _func_name(call: ast.FuncCall) -> str:
    names = [n.sval for n in call.funcname or () if isinstance(n, ast.String)]
    return names[-1].lower() if names else ""


def _setting_name(arg: Any) -> str:
    while isinstance(arg, ast.TypeCast):
        arg = arg.arg
    if isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String):
        return arg.val.sval
    return pglast.stream.RawStream()(arg)


# -- names without a schema -----------------------------------------------------------------------------

# PL/pgSQL statements whose SQL is a string built at run time: lint cannot see what they name.
_DYNAMIC = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors")


@dataclass(frozen=True)
class Unqualified:
    """The relations and types a body names without a schema: with pg_temp not on the search_path, PostgreSQL
    looks each up in the caller's temporary schema first. `unsure`: why lint could not read the whole body."""

    relations: tuple[str, ...]
    types: tuple[str, ...]
    unsure: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.relations + self.types


def unqualified_names(function: Function) -> Unqualified:
    """What a SQL or PL/pgSQL body names without a schema (conservative: unsure when it cannot tell)."""
    if function.language not in ("sql", "plpgsql"):
        return Unqualified((), (), f"it is written in {function.language}")
    if not function.body.strip():
        return Unqualified((), ())  # a SQL-standard body (BEGIN ATOMIC): names were bound at creation
    returns = "trigger" if function.is_trigger else function.returns or "void"
    found = _unqualified(function.language, function.body, returns)
    if found.unsure is not None and returns != "void":  # a return type the parser cannot take as written
        found = _unqualified(function.language, function.body, "void")
    return found


@lru_cache(maxsize=1024)
def _unqualified(language: str, body: str, returns: str) -> Unqualified:
    try:
        if language == "sql":
            statements = [raw.stmt for raw in pglast.parse_sql(body)]
            declared: list[str] = []
        else:
            tree = _plpgsql_tree(body, returns)
            if any(_has_key(tree, key) for key in _DYNAMIC) or _opens_dynamic_cursor(tree):
                return Unqualified((), (), "it runs dynamic SQL (EXECUTE), whose names lint cannot see")
            statements = [raw.stmt for expr in _plpgsql_exprs(tree) for raw in pglast.parse_sql(_as_statement(expr))]
            declared = _declared_types(tree)
    except pglast.parser.ParseError:
        return Unqualified((), (), "lint could not parse its body")
    ctes = {n.ctename for n in walk(statements) if isinstance(n, ast.CommonTableExpr)}
    relations = [n.relname for n in walk(statements) if isinstance(n, ast.RangeVar) and n.schemaname is None]
    relations = [name for name in relations if name not in ctes]
    types = [_type_text(n) for n in walk(statements) if isinstance(n, ast.TypeName) and len(n.names or ()) == 1]
    for text in declared:
        relation, type_name = _declared_name(text)
        relations += [relation] if relation else []
        types += [type_name] if type_name else []
    return Unqualified(tuple(dict.fromkeys(relations)), tuple(dict.fromkeys(types)))


def _has_key(tree: Any, key: str) -> bool:
    if isinstance(tree, dict):
        return key in tree or any(_has_key(value, key) for value in tree.values())
    if isinstance(tree, list):
        return any(_has_key(item, key) for item in tree)
    return False


def _opens_dynamic_cursor(tree: Any) -> bool:
    if isinstance(tree, dict):
        opened = tree.get("PLpgSQL_stmt_open")
        if isinstance(opened, dict) and "dynquery" in opened:
            return True
        return any(_opens_dynamic_cursor(value) for value in tree.values())
    if isinstance(tree, list):
        return any(_opens_dynamic_cursor(item) for item in tree)
    return False


def _declared_types(tree: Any) -> list[str]:
    """The types of the variables the body declares (parameters and implicit variables have no line)."""
    found: list[str] = []
    for function in tree if isinstance(tree, list) else [tree]:
        for datum in function.get("PLpgSQL_function", {}).get("datums", []):
            var = datum.get("PLpgSQL_var") or datum.get("PLpgSQL_rec") or {}
            typname = var.get("datatype", {}).get("PLpgSQL_type", {}).get("typname")
            if "lineno" in var and typname:
                found.append(typname)
    return found


def _declared_name(text: str) -> tuple[str | None, str | None]:
    """(relation, type) a declared variable's type names without a schema: `team%ROWTYPE` and `team.id%TYPE`
    name the relation team, `uuid` the type uuid; `x%TYPE` (another variable) nothing."""
    base, _, suffix = text.partition("%")
    parts = base.split(".")
    if suffix.upper() == "ROWTYPE":
        return (parts[0], None) if len(parts) == 1 else (None, None)
    if suffix.upper() == "TYPE":
        return (parts[0], None) if len(parts) == 2 else (None, None)
    try:
        cast = pglast.parse_sql(f"SELECT NULL::{text}")[0].stmt
    except pglast.parser.ParseError:
        return None, text
    names = [n for n in walk([cast]) if isinstance(n, ast.TypeName)]
    return (None, text) if names and len(names[0].names or ()) == 1 else (None, None)


def _type_text(node: ast.TypeName) -> str:
    return "".join(n.sval for n in node.names or () if isinstance(n, ast.String)) + ("[]" if node.arrayBounds else "")


# -- resolved against the model ------------------------------------------------------------------


def relations_read(model: LintModel, function: Function) -> list[Relation]:
    """The model's relations a function's body queries: qualified names as written, unqualified ones through
    its fixed search_path (else its own schema, then public)."""
    path = [s for s in function.search_path_entries or (function.schema, "public") if s not in ("pg_temp", "$user")]
    found: list[Relation] = []
    for schema, name in sorted(read_body(function).relations, key=lambda r: (r[0] or "", r[1])):
        candidates = [schema] if schema else path
        relation = next((model.relations[f"{s}.{name}"] for s in candidates if f"{s}.{name}" in model.relations), None)
        if relation is not None and relation not in found:
            found.append(relation)
    return found


@dataclass(frozen=True)
class Run:
    """A helper as a policy runs it: directly or through other helpers, as the querying role (None) or as the
    owner of the innermost SECURITY DEFINER function on the way."""

    function: Function
    as_role: str | None
    chain: tuple[str, ...]  # qualified names, the policy's call first


def helper_runs(model: LintModel, texts: tuple[str | None, ...]) -> list[Run]:
    """Every user function the expressions call, transitively through bodies, with the role it runs as.
    Live expressions are deparsed with search_path pg_catalog, so an unqualified call there is a built-in."""
    frontier: list[Run] = []
    for text in texts:
        for qualified in sorted(model.function_calls(text or "", unqualified=not model.live)):
            function = model.functions[qualified]
            frontier.append(Run(function, _runs_as(function, None), (qualified,)))
    found: list[Run] = []
    seen: set[tuple[str, str | None]] = set()
    while frontier:
        run = frontier.pop(0)
        if (run.function.qualified, run.as_role) in seen or run.function.from_extension:
            continue
        seen.add((run.function.qualified, run.as_role))
        found.append(run)
        if run.function.language in ("c", "internal"):
            continue
        path = run.function.search_path_entries
        for qualified in sorted(model.function_calls(run.function.body, search_path=path)):
            called = model.functions[qualified]
            frontier.append(Run(called, _runs_as(called, run.as_role), (*run.chain, qualified)))
    return found


def _runs_as(function: Function, caller: str | None) -> str | None:
    return function.owner if function.security_definer else caller
