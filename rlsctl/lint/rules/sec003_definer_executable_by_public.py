from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class DefinerExecutableByPublic(Rule):
    """A SECURITY DEFINER function can be executed by PUBLIC.

    PostgreSQL grants EXECUTE on every new function to PUBLIC. For a SECURITY
    DEFINER function that means every role in the cluster, including ones
    created later, can run code with the owner's privileges. Trigger
    functions are left out (they cannot be called directly); extensions'
    functions too (their grants are the extension's design).

    Bad:

        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;

    Good:

        CREATE ROLE app_role;
        CREATE FUNCTION tenant_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;
        REVOKE EXECUTE ON FUNCTION tenant_ids() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION tenant_ids() TO app_role;
    """

    id = "SEC003"
    name = "definer-executable-by-public"
    level = "warning"
    hint = "REVOKE EXECUTE ON FUNCTION ... FROM PUBLIC, then GRANT EXECUTE to the roles that need it"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for function in model.functions.values():
            if (
                function.security_definer
                and not function.from_extension
                and not function.is_trigger
                and PUBLIC in function.executors
            ):
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) and executable by PUBLIC: "
                    "every role can run it with its owner's privileges",
                )
