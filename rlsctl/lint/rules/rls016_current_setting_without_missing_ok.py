from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import bodies, exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class CurrentSettingWithoutMissingOk(Rule):
    """A policy, or a helper it runs, calls current_setting('x') without missing_ok: sessions without it get errors.

    current_setting with one argument raises "unrecognized configuration
    parameter" when the setting was never set in the session. A connection
    that has not set its identity (a maintenance job, a new code path, a
    pooled connection used before its first SET) then fails every query on
    the table instead of seeing no rows. With `current_setting('x', true)`
    it gets NULL, and a policy comparing with NULL fails closed. Helpers
    count: a policy calling `(SELECT current_tenant())` fails the same way
    when the function's body reads the setting without missing_ok (the
    finding then names the function). Built-in settings, which always
    exist, are not reported.

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
        helpers: dict[str, tuple[list[str], list[str]]] = {}  # function -> (settings, policies running it)
        for policy in model.policies:
            names: list[str] = []
            for text in (policy.using, policy.check):
                for call in exprs.anonymous_calls(exprs.parse(text)):
                    if exprs.is_setting_call(call) and len(call.expressions) == 1:
                        names.append(exprs.setting_name(call))
            names = [n for n in dict.fromkeys(names) if custom(n)]
            if names:
                calls = ", ".join(f"current_setting('{name}')" for name in names)
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} calls {calls} without missing_ok: a session "
                    'that never set it gets "unrecognized configuration parameter" errors instead of no rows',
                )
            for run in bodies.helper_runs(model, (policy.using, policy.check)):
                settings = [n for n in bodies.read_body(run.function).settings_without_missing_ok if custom(n)]
                if settings:
                    known = helpers.setdefault(run.function.qualified, (settings, []))
                    if policy.qualified not in known[1]:
                        known[1].append(policy.qualified)
        for qualified, (settings, policies) in sorted(helpers.items()):
            calls = ", ".join(f"current_setting('{name}')" for name in settings)
            yield self.finding(
                qualified,
                f"{qualified} calls {calls} without missing_ok, and policies run it ({', '.join(policies)}): a "
                'session that never set it gets "unrecognized configuration parameter" errors instead of no rows',
            )


def custom(name: str) -> bool:
    """A custom setting (`app.tenant_id`): it may be unset. Built-in ones (`search_path`) always exist."""
    return "." in name
