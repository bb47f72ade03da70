from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class IdentitySettingDefault(Rule):
    """The setting the policies read the user from has a server-side default: a session without identity acts as a user.

    The identity contract fails closed: a transaction that sets no user
    (`set_config('app.user_id', ..., true)`) reads no tenant's rows. A value
    given by `ALTER DATABASE ... SET app.user_id`, `ALTER ROLE ... SET`, or
    postgresql.conf is the value every such session starts with: a request
    that forgets to set the user, a background job, a pooled connection
    between two transactions, all act as that user, with their rights in
    every tenant they belong to. Reported on a live database for the
    project's identity setting and any custom setting named like one
    (`*.user_id`, `*.tenant_id`, `*.account_id`, `*.org_id`, `*.team_id`,
    `*.current_user`); apply cannot reset it (only the database's owner or a
    superuser may).

    Bad:

        CREATE ROLE app_role LOGIN;
        DO $$ BEGIN
            EXECUTE format('ALTER ROLE app_role IN DATABASE %I SET app.user_id = %L', current_database(), 'u-admin');
        END $$;

    Good:

        CREATE ROLE app_role LOGIN;
    """

    id = "SEC020"
    name = "identity-setting-default"
    level = "error"
    sources = ("live",)
    hint = "ALTER DATABASE ... RESET <setting> / ALTER ROLE ... RESET <setting>; remove it from postgresql.conf"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for setting, places in sorted(model.identity_defaults.items()):
            yield self.finding(
                setting,
                f"the identity setting {setting} has a default: {'; '.join(places)}; every session that sets "
                "no user starts as that user, so 'no identity, no rows' no longer holds",
            )
