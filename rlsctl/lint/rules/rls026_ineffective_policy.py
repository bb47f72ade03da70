from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import LintModel, Policy
from rlsctl.lint.rule import Finding, Rule


class IneffectivePolicy(Rule):
    """A policy that cannot change anything: a permissive one that is always false, a restrictive one always true.

    Permissive policies are OR-ed: one whose condition is constant false
    (`USING (false)`, `1 = 0`) never lets a row through and is dead weight
    that readers take for a rule. Restrictive policies are AND-ed: one that
    is constant true (`true`, or `pg_has_role` for its own role) restricts
    nothing, while it reads as a restriction. Either way what the table
    allows is not what its policies seem to say.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE POLICY not_archived ON invoice AS RESTRICTIVE FOR SELECT TO app_role USING (true);

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, archived boolean NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE POLICY not_archived ON invoice AS RESTRICTIVE FOR SELECT TO app_role USING (NOT archived);
    """

    id = "RLS026"
    name = "ineffective-policy"
    level = "warning"
    hint = "Drop the policy, or give it the condition it was meant to have"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            conditions = _conditions(policy)
            if not conditions:
                continue
            values = [_truth(text, policy) for _, text in conditions]
            if policy.permissive and all(value is False for value in values):
                yield self.finding(
                    policy.qualified,
                    f"permissive policy {policy.name} on {policy.table_qualified} is always false "
                    f"({_shown(conditions)}): it never lets a row through, so it grants nothing",
                )
            elif not policy.permissive and all(value is True for value in values):
                yield self.finding(
                    policy.qualified,
                    f"restrictive policy {policy.name} on {policy.table_qualified} is always true for "
                    f"{', '.join(policy.roles)} ({_shown(conditions)}): it restricts nothing",
                )


def _conditions(policy: Policy) -> list[tuple[str, str]]:
    """The conditions that decide the policy's effect (an absent WITH CHECK reuses USING)."""
    found = [(label, text) for label, text in (("USING", policy.using), ("WITH CHECK", policy.check)) if text]
    return found


def _shown(conditions: list[tuple[str, str]]) -> str:
    return " and ".join(f"{label} {exprs.short(text, 40)}" for label, text in conditions)


def _truth(text: str, policy: Policy) -> bool | None:
    tree = exprs.parse(text)
    if tree is None:
        return None
    if scope.role_true(tree, policy.roles):
        return True
    return scope.constant_truth(tree)
