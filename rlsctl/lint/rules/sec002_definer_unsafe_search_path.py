from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class DefinerUnsafeSearchPath(Rule):
    """A SECURITY DEFINER function's search_path lists a schema others can create in, or does not end with pg_temp.

    A fixed search_path only protects the function if nobody but trusted roles
    can add objects to the schemas it lists: a role with CREATE on one of them
    can shadow a table or function the body uses, and the function then runs
    their object with its owner's rights. The session's temporary schema is
    searched FIRST for tables and views unless pg_temp is listed explicitly,
    and every role may create temporary tables, so pg_temp belongs last.

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
    hint = "SET search_path = pg_catalog, pg_temp (or only schemas nobody else can create in, then pg_temp last)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for function in model.functions.values():
            entries = function.search_path_entries
            if not function.security_definer or function.from_extension or entries is None:
                continue
            problems: list[str] = []
            for entry in entries:
                schema = model.schemas.get(function.owner if entry == "$user" else entry)
                if schema is None:
                    continue
                creators = sorted(schema.creators - {schema.owner, function.owner})
                if creators:
                    who = "every role (PUBLIC)" if PUBLIC in creators else ", ".join(creators)
                    problems.append(f"{who} can create objects in schema {schema.name}, which it searches")
            temp = [e.lower() for e in entries]
            if "pg_temp" not in temp:
                problems.append("pg_temp is not listed, so the caller's temporary tables are searched first")
            elif temp[-1] != "pg_temp":
                problems.append("pg_temp is not last, so the caller's temporary tables shadow later schemas")
            if problems:
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) with search_path "
                    f"{function.search_path!r}: {'; '.join(problems)}",
                )
