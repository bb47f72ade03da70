from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import PUBLIC, LintModel, Policy
from rlsctl.lint.rule import Finding, Rule

VERBS = {"select": "read", "delete": "delete", "insert": "insert", "update": "update", "all": "read and write"}


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
    a subquery or another table's row (or passes it to a helper). Each OR
    branch counts on its own: in `tenant_id = ... OR (SELECT
    current_setting('app.support', true)) = 'on'` the second branch grants
    every row. (Write checks that let a row into any tenant are RLS012's;
    conditions that open only when the identity is missing, RLS014's.) A
    permissive gate is not reported when RESTRICTIVE policies that scope the
    rows cover every role and command it grants: PostgreSQL ANDs them onto it.

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
            if not policy.permissive or scope.public_true(policy, model) or scope.open_write(policy, model):
                continue  # RLS006, RLS012
            if policy.command == "insert":
                continue  # its only condition is the check: an open one is RLS012's
            if _floored(model, policy):
                continue  # restrictive policies that scope the rows are ANDed onto it, for each role and command
            label, text = ("USING", policy.using) if policy.using is not None else ("WITH CHECK", policy.check)
            row = exprs.row_of(model, policy)
            opened = scope.opening(text, row, model, policy.roles)
            if opened is None:
                continue
            roles = ", ".join(policy.roles)
            same = opened.whole and not opened.constant and exprs.row_refs(opened.branch, row)
            rows = "the same rows" if same else "every row"
            yield self.finding(
                policy.qualified,
                f"policy {policy.name} lets {roles} {VERBS[policy.command]} {rows} of {policy.table_qualified} "
                f"whoever the user is, in every tenant: {opened.reason(label, row)}",
            )


def _floored(model: LintModel, policy: Policy) -> bool:
    """Whether restrictive policies that scope the rows (by the user, the tenant, another row) are ANDed
    onto `policy` for every command and role it grants: a permissive `USING (true)` gate under a
    restrictive tenant floor opens nothing beyond the floor (an outside check found it reported)."""
    floors = [
        other
        for other in model.policies
        if other.table_qualified == policy.table_qualified and not other.permissive and exprs.parse(other.using)
        and scope.opening(other.using, exprs.row_of(model, other), model, other.roles) is None
    ]  # fmt: skip
    return all(
        any(_covers(floor, command, role) for floor in floors)
        for command in exprs.commands(policy.command)
        for role in policy.roles
    )


def _covers(floor: Policy, command: str, role: str) -> bool:
    return command in exprs.commands(floor.command) and (role in floor.roles or PUBLIC in floor.roles)
