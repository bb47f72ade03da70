from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class DefinerWithoutSearchPath(Rule):
    """A SECURITY DEFINER function does not fix its search_path.

    The function runs with its owner's privileges but resolves unqualified
    names through the caller's search_path. A caller who can create objects in
    any schema on that path (their own temporary schema always qualifies)
    can make the function call their function or read their table, running
    code or feeding data with the owner's rights. Functions in the platform's
    trusted schemas (`project.lint.trusted_schemas`; auth and storage on
    Supabase) are its design and not reported.

    Bad:

        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            AS $$ SELECT ARRAY[1, 2] $$;

    Good:

        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;
        REVOKE EXECUTE ON FUNCTION tenant_ids() FROM PUBLIC;
    """

    id = "SEC001"
    name = "definer-without-search-path"
    level = "error"
    hint = "ALTER FUNCTION ... SET search_path = pg_catalog, pg_temp (and schema-qualify what the body uses)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for function in model.functions.values():
            if model.trusted(function):
                continue
            if function.security_definer and not function.from_extension and function.search_path is None:
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) without a fixed "
                    "search_path: it resolves names through the caller's search_path, so a caller who can create "
                    "objects on that path makes it run their code with the owner's privileges",
                )
