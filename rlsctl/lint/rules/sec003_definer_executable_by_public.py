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
    functions too (their grants are the extension's design), and those of the
    platform's trusted schemas (`project.lint.trusted_schemas`).

    In a schema the platform serves over its HTTP API
    (`project.lint.exposed_schemas`: public on Supabase), a SECURITY DEFINER
    function that an anonymous role (`project.lint.anonymous_roles`: anon)
    may execute, directly, as PUBLIC or through a membership, is an error:
    anyone holding the anon key, which ships in every browser, calls it over
    the API with its owner's privileges.

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
            if not function.security_definer or function.from_extension or function.is_trigger:
                continue
            if model.trusted(function):
                continue
            anonymous = model.anonymous_executors(function) if function.schema in model.exposed_schemas else []
            if anonymous:
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) in schema "
                    f"{function.schema}, which the platform serves over its API, and {', '.join(anonymous)} may "
                    "execute it: anyone with the anon key can call it over the API with its owner's privileges",
                    level="error",
                    hint=ANONYMOUS_HINT,
                )
            elif PUBLIC in function.executors:
                yield self.finding(
                    function.qualified,
                    f"{function.qualified} is SECURITY DEFINER (runs as {function.owner}) and executable by PUBLIC: "
                    "every role can run it with its owner's privileges",
                )


ANONYMOUS_HINT = (
    "REVOKE EXECUTE ON FUNCTION ... FROM PUBLIC, anon; GRANT EXECUTE to authenticated (or the roles that need it), "
    "or move the function to a schema the API does not serve"
)
