from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class CurrentSettingWithoutMissingOk(Rule):
    """A policy calls current_setting('x') without missing_ok: sessions without the setting get errors.

    current_setting with one argument raises "unrecognized configuration
    parameter" when the setting was never set in the session. A connection
    that has not set its identity (a maintenance job, a new code path, a
    pooled connection used before its first SET) then fails every query on
    the table instead of seeing no rows. With `current_setting('x', true)`
    it gets NULL, and a policy comparing with NULL fails closed.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id'), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS016"
    name = "current-setting-without-missing-ok"
    level = "warning"
    hint = (
        "Call current_setting('x', true) (missing_ok) and wrap it in NULLIF(..., '') so an unset identity fails closed"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            names: list[str] = []
            for text in (policy.using, policy.check):
                for call in exprs.anonymous_calls(exprs.parse(text)):
                    if exprs.is_setting_call(call) and len(call.expressions) == 1:
                        name = exprs.setting_name(call)
                        if name not in names:
                            names.append(name)
            if names:
                calls = ", ".join(f"current_setting('{name}')" for name in names)
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} calls {calls} without missing_ok: a session "
                    'that never set it gets "unrecognized configuration parameter" errors instead of no rows',
                )
