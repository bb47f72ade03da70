from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import PUBLIC, LintModel, Policy
from rlsctl.lint.rule import Finding, Rule

VERBS = {"select": "read", "delete": "delete", "insert": "insert", "update": "update", "all": "read and write"}


def open_write(policy: Policy) -> bool:
    """RLS012's case: a write policy whose effective check lets any row through while its USING does not."""
    if not policy.writes:
        return False
    if policy.command == "insert":
        return exprs.true_for(policy.check, policy.roles)
    return (
        policy.check is not None
        and exprs.true_for(policy.check, policy.roles)
        and not exprs.true_for(policy.using, policy.roles)
    )


class UnscopedPolicy(Rule):
    """A permissive policy whose condition does not tie rows to the user: it grants the rows of every tenant.

    A condition such as `(SELECT pg_has_role(CURRENT_USER, 'owner', 'USAGE'))`,
    `current_setting('app.admin', true) = 'on'` or `EXISTS (SELECT FROM admins
    WHERE ...)` reads no column of the row and decides once for the whole
    table; one like `level = 'admin'` compares the row only with constants.
    Either way, the policy's roles read (or write) the rows of every tenant:
    right for an owner, analyst or auditor role meant to see everything
    (suppress with the reason), a cross-tenant leak anywhere else. A policy
    scopes its rows when it compares a column with the session's identity,
    a subquery or another table's row (or passes it to a helper).

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_read ON invoice FOR SELECT TO app_role
            USING ((SELECT current_setting('app.tenant_id', true)) IS NOT NULL);

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY app_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS007"
    name = "unscoped-policy"
    level = "warning"
    hint = (
        "Compare a tenant or owner column of the row with the session's identity; for a role meant to read "
        "every tenant (owner, analyst, auditor), suppress the finding with the reason"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            if not policy.permissive or open_write(policy):  # RLS012
                continue
            if PUBLIC in policy.roles and (exprs.true_for(policy.using, ()) or exprs.true_for(policy.check, ())):
                continue  # RLS006
            label, text = (
                ("WITH CHECK", policy.check)
                if policy.command == "insert" or policy.using is None
                else ("USING", policy.using)
            )
            tree = exprs.parse(text)
            if tree is None or exprs.is_false(text):
                continue  # unparsable, or grants nothing
            row = exprs.row_of(model, policy)
            if exprs.scoping_columns(tree, row):
                continue
            roles = ", ".join(policy.roles)
            shown = f"its {label} ({exprs.short(text)})"
            if exprs.row_refs(tree, row):
                message = (
                    f"policy {policy.name} lets {roles} {VERBS[policy.command]} the same rows of "
                    f"{policy.table_qualified} whoever the user is, in every tenant: {shown} filters the row only "
                    "on constant conditions"
                )
            else:
                why = "is always true for them" if exprs.true_for(text, policy.roles) else "reads no column of the row"
                message = (
                    f"policy {policy.name} lets {roles} {VERBS[policy.command]} every row of "
                    f"{policy.table_qualified}, in every tenant: {shown} {why}"
                )
            yield self.finding(policy.qualified, message)
