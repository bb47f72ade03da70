"""The project's `explain:` section, checked without a database: every statement parses, every
parameter it names exists, every principal can be found in a tenancy the project declares.

A mistake here is exit 2 naming the file and line of the declaration, before rlsctl explain
connects: a run never starts on a declaration it would have to abandon halfway.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from rlsctl.errors import PolicyFileError, UsageError
from rlsctl.explain.statement import Statement, StatementError, compile_statement
from rlsctl.policy.model import ExplainPrincipal
from rlsctl.policy.project import Project

SECTION = "explain"
# What every principal brings, computed from the data when explain runs (docs/policy-format.md#explain).
BUILTIN = ("user_id", "tenant_id", "tenants", "key_tenant", "key_scopes")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Param:
    """A parameter the connecting role computes per principal: the first value its query returns."""

    name: str
    statement: Statement
    where: str  # file:line


@dataclass(frozen=True)
class Query:
    name: str
    sql: Statement
    baseline: Statement
    principals: tuple[str, ...]
    params: tuple[Param, ...]  # the shared ones first, then the query's own
    where: str  # file:line of the query's declaration


@dataclass(frozen=True)
class Declared:
    principals: dict[str, ExplainPrincipal]
    queries: tuple[Query, ...]


def builtin_params(project: Project) -> tuple[str, ...]:
    """The parameters every principal has: its user, its tenant, its tenants (`tenants_<RANK>`:
    those where it holds at least that rank), an API key's tenant and scopes."""
    ranks = project.tenancy.ranks if project.tenancy is not None else ()
    return BUILTIN + tuple(f"tenants_{rank}" for rank in ranks if _NAME.match(f"tenants_{rank}"))


def declarations(project: Project, queries: Collection[str] = (), principals: Collection[str] = ()) -> Declared:
    """The checked declarations, narrowed to `queries` and `principals` when given (names the
    project must declare)."""
    explain = project.explain
    if explain is None:
        raise UsageError(
            f"{project.root}: the project declares no explain section, so there is nothing to plan "
            "(docs/policy-format.md#explain)"
        )
    _choose(explain.queries, queries, "query", "queries")
    _choose(explain.principals, principals, "principal", "principals")
    for name, principal in explain.principals.items():
        _check_principal(project, name, principal)
    known = set(builtin_params(project))
    shared = _params(project, explain.params, ("params",), known)
    found: list[Query] = []
    for name, declared in explain.queries.items():
        if queries and name not in queries:
            continue
        path = ("queries", name)
        own = _params(project, declared.params, (*path, "params"), known | {p.name for p in shared})
        visible = known | {p.name for p in shared} | {p.name for p in own}
        sql = _statement(project, (*path, "sql"), declared.sql, f"query {name!r}, sql", visible)
        baseline = _statement(project, (*path, "baseline"), declared.baseline, f"query {name!r}, baseline", visible)
        acting = declared.as_ if declared.as_ is not None else tuple(explain.principals)
        for principal in acting:
            if principal not in explain.principals:
                raise _error(
                    project, (*path, "as"),
                    f"query {name!r}: no principal {principal!r} is declared "
                    f"(principals: {', '.join(explain.principals)})",
                )  # fmt: skip
        chosen = tuple(p for p in acting if not principals or p in principals)
        if chosen:
            found.append(Query(name, sql, baseline, chosen, (*shared, *own), where(project, *path)))
    if not found:
        raise UsageError("no declared query runs as the principals chosen (--principal)")
    return Declared(dict(explain.principals), tuple(found))


def where(project: Project, *path: str | int) -> str:
    """file:line of a key of the explain section."""
    source = project.source(SECTION)
    if source is None:
        return str(project.root / "policies")
    line = source.line(*path)
    return f"{source.document.path}:{line}" if line else source.document.path


def _error(project: Project, path: tuple[str | int, ...], message: str) -> PolicyFileError:
    return project.error((SECTION, *path), message)


def _choose(declared: Collection[str], chosen: Collection[str], what: str, plural: str) -> None:
    unknown = sorted(set(chosen) - set(declared))
    if unknown:
        known = ", ".join(declared)
        raise UsageError(f"no {what} {unknown[0]!r} is declared in the explain section ({plural}: {known})")


def _statement(project: Project, path: tuple[str, ...], sql: str, what: str, known: set[str]) -> Statement:
    try:
        statement = compile_statement(sql)
    except StatementError as exc:
        raise _error(project, path, f"{what}: {exc}") from None
    unknown = [name for name in statement.names if name not in known]
    if unknown:
        raise _error(project, path, f"{what}: no parameter :{unknown[0]} (parameters here: {', '.join(sorted(known))})")
    return statement


def _params(project: Project, declared: dict[str, str], path: tuple[str, ...], known: set[str]) -> tuple[Param, ...]:
    """Each parameter may use the built-in ones and those declared before it."""
    found: list[Param] = []
    for name, sql in declared.items():
        if name in known:
            raise _error(project, (*path, name), f"parameter {name!r} is already defined (built in, or shared)")
        statement = _statement(project, (*path, name), sql, f"parameter {name!r}", known | {p.name for p in found})
        if not statement.read_only:
            # It runs as the connecting role with row security off: a read, never a write.
            raise _error(
                project, (*path, name),
                f"parameter {name!r}: its query must be a SELECT that only reads (no INSERT, UPDATE or DELETE, "
                "also not in a WITH, no SELECT INTO, no FOR UPDATE or FOR SHARE)",
            )  # fmt: skip
        found.append(Param(name, statement, where(project, *path, name)))
    return tuple(found)


def _check_principal(project: Project, name: str, principal: ExplainPrincipal) -> None:
    path = ("principals", name)
    if principal.role not in project.roles:
        raise _error(
            project, (*path, "role"),
            f"principal {name!r}: no role {principal.role!r} is declared (roles: {', '.join(sorted(project.roles))})",
        )  # fmt: skip
    tenancy = project.tenancy
    if (principal.rank or principal.tenant or principal.tenant_id) and tenancy is None:
        raise _error(project, path, f"principal {name!r}: a tenant or rank needs the project's tenancy section")
    if principal.rank is not None and tenancy is not None and principal.rank not in tenancy.ranks:
        raise _error(
            project, (*path, "rank"),
            f"principal {name!r}: rank {principal.rank!r} is not one of the tenancy's ranks {list(tenancy.ranks)}",
        )  # fmt: skip
    needs_members = principal.rank is not None or principal.tenant is not None
    if needs_members and tenancy is not None and tenancy.membership is None:
        raise _error(project, path, f"principal {name!r}: rank and tenant: need tenancy.membership to count members")
    if principal.api_key is not None:
        if project.settings.api_keys is None:
            raise _error(project, (*path, "api_key"), f"principal {name!r}: the project declares no api_keys")
        if principal.role != project.role_of_kind("app"):
            raise _error(
                project, (*path, "role"), f"principal {name!r}: an API-key session acts as the app role"
            )  # fmt: skip
