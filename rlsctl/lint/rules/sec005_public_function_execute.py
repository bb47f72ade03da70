from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class PublicFunctionExecute(Rule):
    """A helper of the RLS layer (called by policies or by trigger functions on RLS tables) is executable by PUBLIC.

    Functions that policies call, and what those functions call in turn,
    are part of the security layer: any role can probe them to learn what
    the policies would decide (whose tenant ids, which memberships) and build
    on them. PostgreSQL grants EXECUTE on new functions to PUBLIC; grant
    it to the roles the policies apply to instead. Functions no policy or
    guarded-table trigger uses are application code and are not reported;
    SECURITY DEFINER functions are SEC003's, trigger functions cannot be
    called directly, and extensions' functions follow the extension's design,
    as do the functions of the platform's trusted schemas
    (`project.lint.trusted_schemas`: Supabase's auth.uid() is executable by
    PUBLIC on purpose).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE FUNCTION current_tenant() RETURNS int LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::int $$;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT current_tenant()));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE FUNCTION current_tenant() RETURNS int LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::int $$;
        REVOKE EXECUTE ON FUNCTION current_tenant() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION current_tenant() TO app_role;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT current_tenant()));
        CREATE FUNCTION slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE
            AS $$ SELECT lower(t) $$;
    """

    id = "SEC005"
    name = "public-function-execute"
    level = "warning"
    hint = "REVOKE EXECUTE ON FUNCTION ... FROM PUBLIC and GRANT EXECUTE to the roles its policies apply to"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for qualified, why in sorted(model.security_functions().items()):
            function = model.functions[qualified]
            if (
                function.from_extension
                or model.trusted(function)
                or function.security_definer  # SEC003
                or function.is_trigger
                or PUBLIC not in function.executors
            ):
                continue
            yield self.finding(
                qualified,
                f"{qualified} is part of the RLS layer ({why}) and executable by PUBLIC: every role can call it "
                "and see what the policies would decide",
            )
