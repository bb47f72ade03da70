from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.bodies import unqualified_names
from rlsctl.lint.model import PUBLIC, Function, LintModel, shown_search_path
from rlsctl.lint.rule import Finding, Rule


class DefinerUnsafeSearchPath(Rule):
    """A SECURITY DEFINER function's search_path lists a schema others can create in, or does not end with pg_temp.

    A fixed search_path only protects the function if nobody but trusted roles
    can add objects to the schemas it lists: a role with CREATE on one of them
    can shadow a table or function the body uses, and the function then runs
    their object with its owner's rights. The session's temporary schema is
    searched FIRST for tables and views unless pg_temp is listed explicitly,
    and every role may create temporary tables, so pg_temp belongs last.

    The empty search_path (`SET search_path = ''`, Supabase's recommended
    form, printed as '') lists no schema: built-in functions and operators
    still resolve in pg_catalog, but relations and types are looked up in the
    caller's temporary schema first. It is safe only when the body names
    every table, view and type with its schema (`public.team`,
    `pg_catalog.uuid`): the finding names each one that is not, or says why
    lint cannot tell (dynamic SQL, a body it cannot parse). Functions in the
    platform's trusted schemas (`project.lint.trusted_schemas`) are not
    reported.

    Bad:

        CREATE ROLE tenant_role;
        CREATE SCHEMA scratch;
        GRANT USAGE, CREATE ON SCHEMA scratch TO tenant_role;
        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = scratch, pg_catalog
            AS $$ SELECT ARRAY[1, 2] $$;

    Good:

        CREATE ROLE tenant_role;
        CREATE SCHEMA scratch;
        GRANT USAGE, CREATE ON SCHEMA scratch TO tenant_role;
        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;
        REVOKE EXECUTE ON FUNCTION tenant_ids() FROM PUBLIC;
    """

    id = "SEC002"
    name = "definer-unsafe-search-path"
    level = "error"
    hint = (
        "SET search_path = pg_catalog, pg_temp (or only schemas nobody else can create in, then pg_temp last; "
        "or '' with every table and type schema-qualified)"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for function in model.functions.values():
            entries = function.search_path_entries
            if not function.security_definer or function.from_extension or entries is None:
                continue
            if model.trusted(function):
                continue
            problems = _writable_schemas(model, function, entries) + _temporary_schema(function, entries)
            if problems:
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) with search_path "
                    f"{shown_search_path(function.search_path or '')}: {'; '.join(problems)}",
                )


def _writable_schemas(model: LintModel, function: Function, entries: list[str]) -> list[str]:
    problems: list[str] = []
    for entry in entries:
        schema = model.schemas.get(function.owner if entry == "$user" else entry)
        if schema is None:
            continue
        creators = sorted(schema.creators - {schema.owner, function.owner})
        if creators:
            who = "every role (PUBLIC)" if PUBLIC in creators else ", ".join(creators)
            problems.append(f"{who} can create objects in schema {schema.name}, which it searches")
    return problems


def _temporary_schema(function: Function, entries: list[str]) -> list[str]:
    """Where the caller's temporary schema comes in: first unless listed, so last it must be; with an empty
    search_path, harmless only if the body names every relation and type with its schema."""
    temp = [e.lower() for e in entries]
    if not entries:
        names = unqualified_names(function)
        first = "the empty search_path has the caller's temporary schema searched first for tables and types"
        if names.unsure is not None:
            return [f"{first}, and {names.unsure}: schema-qualify every table and type it uses"]
        described = [f"table {name}" for name in names.relations] + [f"type {name}" for name in names.types]
        if described:
            return [f"{first}, and its body names {', '.join(described)} without a schema"]
        return []
    if "pg_temp" not in temp:
        return ["pg_temp is not listed, so the caller's temporary tables are searched first"]
    if temp[-1] != "pg_temp":
        return ["pg_temp is not last, so the caller's temporary tables shadow later schemas"]
    return []
