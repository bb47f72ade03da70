from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class PerRowCall(Rule):
    """A policy calls current_setting() or a function of its own outside a scalar subquery: once per row.

    PostgreSQL evaluates a policy's expression for every row it considers.
    `tenant_id = auth.tenant_id()` calls the function (and its lookups)
    for each of them; `tenant_id = (SELECT auth.tenant_id())` is an
    uncorrelated subquery, which the planner runs once per statement (an
    InitPlan) and compares as a constant, so an index on tenant_id can be
    used. The same goes for current_setting() and pg_has_role(). Cheap
    built-ins that read no session state (lower, coalesce...) are fine.
    Calls that take a column of the row cannot be wrapped (see RLS018).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::int);

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS009"
    name = "per-row-call"
    level = "warning"
    hint = (
        "Wrap the call in a scalar subquery, e.g. tenant_id = (SELECT auth.tenant_id()), so it runs once per statement"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            row = exprs.row_of(model, policy)
            found: list[str] = []
            for text in (policy.using, policy.check):
                for call in exprs.anonymous_calls(exprs.parse(text)):
                    if not (exprs.user_function(call, model) or call.name.lower() in exprs.SESSION_FUNCTIONS):
                        continue
                    if exprs.hoisted(call, row) or exprs.row_refs(call, row):  # once already / RLS018
                        continue
                    if exprs.switched_off(call):  # a plan hint's branch: estimated, never run per row
                        continue
                    label = f"{exprs.call_label(call, model)}()"
                    if label not in found:
                        found.append(label)
            if found:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} calls {', '.join(found)} outside an "
                    "uncorrelated scalar subquery: evaluated for every row the query reads instead of once per "
                    "statement",
                )
