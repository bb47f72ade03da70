from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class MutableSearchPath(Rule):
    """A function the RLS layer runs (in a policy, or as a trigger on an RLS table) has no fixed search_path.

    Without a fixed search_path the function resolves names through the
    search_path of whoever runs the query. The caller's own temporary schema
    is searched first for tables and views, so a caller can create a
    temporary table named like the one a policy helper reads (memberships,
    say) and decide what the policy answers; a role that can create objects
    in a schema it can put on its search_path can shadow the functions it
    calls. SECURITY DEFINER functions are SEC001's; functions no policy or
    guarded-table trigger runs are not reported, nor those of the platform's
    trusted schemas (`project.lint.trusted_schemas`: auth and storage on
    Supabase).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE membership (user_name text NOT NULL, team_id int NOT NULL);
        CREATE TABLE invoice (id int PRIMARY KEY, team_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE FUNCTION my_teams() RETURNS int[] LANGUAGE sql STABLE
            AS $$ SELECT array_agg(team_id) FROM membership WHERE user_name = current_user $$;
        CREATE POLICY team_read ON invoice FOR SELECT TO app_role
            USING (team_id = ANY ((SELECT my_teams())::int[]));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE membership (user_name text NOT NULL, team_id int NOT NULL, PRIMARY KEY (user_name, team_id));
        ALTER TABLE membership ENABLE ROW LEVEL SECURITY;
        ALTER TABLE membership FORCE ROW LEVEL SECURITY;
        CREATE POLICY own_rows ON membership FOR SELECT TO app_role USING (user_name = (SELECT current_user));
        GRANT SELECT ON membership TO app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, team_id int NOT NULL);
        CREATE INDEX ON invoice (team_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE FUNCTION my_teams() RETURNS int[] LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT array_agg(team_id) FROM public.membership WHERE user_name = current_user $$;
        REVOKE EXECUTE ON FUNCTION my_teams() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION my_teams() TO app_role;
        CREATE POLICY team_read ON invoice FOR SELECT TO app_role
            USING (team_id = ANY ((SELECT my_teams())::int[]));
    """

    id = "SEC011"
    name = "mutable-search-path"
    level = "warning"
    hint = "ALTER FUNCTION ... SET search_path = pg_catalog, pg_temp; schema-qualify the tables and functions it uses"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for qualified, why in sorted(model.security_functions().items()):
            function = model.functions[qualified]
            if function.from_extension or function.security_definer or function.language in ("c", "internal"):
                continue
            if model.trusted(function):
                continue
            if function.search_path is None:
                yield self.finding(
                    qualified,
                    f"{qualified} runs in the RLS layer ({why}) without a fixed search_path: it resolves names "
                    "through the caller's search_path, where the caller's temporary tables come first and objects "
                    "in schemas the caller can create in can shadow what it reads and calls",
                )
