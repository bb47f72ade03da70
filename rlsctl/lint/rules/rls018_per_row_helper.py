from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class PerRowHelper(Rule):
    """A policy passes a column of the row to a function: it runs once per row and cannot be hoisted.

    `is_member(team_id)` (or `(SELECT is_member(team_id))`, which is a
    correlated subquery) is called for every row the query considers: the
    planner cannot turn it into a constant, cannot use an index on team_id,
    and a SECURITY DEFINER helper also switches security context on every
    call. Computing the user's set once and comparing the column with it is
    a single InitPlan and an index scan. Helpers called with constants only,
    such as `(SELECT tenant_ids('ADMIN'))`, are fine.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id));
        CREATE TABLE document (id int PRIMARY KEY, team_id int NOT NULL);
        CREATE INDEX ON document (team_id);
        CREATE FUNCTION is_member(team int) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, public
            AS $$ SELECT EXISTS (SELECT FROM membership WHERE team_id = team
                  AND user_id = NULLIF(current_setting('app.user_id', true), '')::int) $$;
        ALTER TABLE document ENABLE ROW LEVEL SECURITY;
        ALTER TABLE document FORCE ROW LEVEL SECURITY;
        CREATE POLICY member_read ON document FOR SELECT TO app_role USING (is_member(team_id));

    Good:

        CREATE ROLE app_role;
        CREATE ROLE definer_role;
        CREATE TABLE membership (team_id int NOT NULL, user_id int NOT NULL, PRIMARY KEY (team_id, user_id));
        CREATE INDEX ON membership (user_id);
        ALTER TABLE membership ENABLE ROW LEVEL SECURITY;
        ALTER TABLE membership FORCE ROW LEVEL SECURITY;
        CREATE POLICY definer_read ON membership FOR SELECT TO definer_role
            USING (user_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
        GRANT SELECT ON membership TO definer_role;
        CREATE TABLE document (id int PRIMARY KEY, team_id int NOT NULL);
        CREATE INDEX ON document (team_id);
        CREATE FUNCTION my_team_ids() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT coalesce(array_agg(team_id), '{}') FROM public.membership
                  WHERE user_id = NULLIF(current_setting('app.user_id', true), '')::int $$;
        ALTER FUNCTION my_team_ids() OWNER TO definer_role;
        REVOKE EXECUTE ON FUNCTION my_team_ids() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION my_team_ids() TO app_role;
        ALTER TABLE document ENABLE ROW LEVEL SECURITY;
        ALTER TABLE document FORCE ROW LEVEL SECURITY;
        CREATE POLICY member_read ON document FOR SELECT TO app_role
            USING (team_id = ANY ((SELECT my_team_ids())::int[]));
    """

    id = "RLS018"
    name = "per-row-helper"
    level = "warning"
    hint = (
        "Have the helper return the user's set once and compare the column with it: "
        "team_id = ANY ((SELECT my_team_ids())::int[]), or an EXISTS correlated on an indexed column"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            row = exprs.row_of(model, policy)
            found: list[str] = []
            definer = False
            for text in (policy.using, policy.check):
                for call in exprs.anonymous_calls(exprs.parse(text)):
                    if not exprs.user_function(call, model):
                        continue
                    columns = sorted({c.name for c in exprs.row_refs(call, row)})
                    if not columns:
                        continue
                    label = f"{exprs.call_label(call, model)}({', '.join(columns)})"
                    if label not in found:
                        found.append(label)
                    definer = definer or any(f.security_definer for f in exprs.functions_called(call, model))
            if found:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} calls {', '.join(found)} with a column of "
                    "the row: it runs once per row"
                    + (" (SECURITY DEFINER: a security-context switch per row)" if definer else "")
                    + " and no index on the column can be used",
                )
