from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, bypass_meaning
from rlsctl.lint.rule import Finding, Rule


class LoginBypassesRls(Rule):
    """A role that can log in is SUPERUSER or BYPASSRLS, so no policy applies to its sessions.

    Row-level security does not apply to superusers nor to BYPASSRLS roles,
    even on tables with FORCE ROW LEVEL SECURITY. An application connecting
    as such a role sees every tenant's rows. Reported when the role has a
    part in this database: it (or a role it belongs to) owns the database or
    something in it, holds a privilege, or is named in a policy; or, for
    BYPASSRLS, it reaches an RLS-enabled table (PUBLIC's grants included).
    The bootstrap superuser and administrator accounts with no part in this
    database are cluster administration, not this database's security layer.

    Bad:

        CREATE ROLE web_role LOGIN BYPASSRLS;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON invoice TO web_role;

    Good:

        CREATE ROLE web_role LOGIN NOBYPASSRLS;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO web_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO web_role;
    """

    id = "SEC007"
    name = "login-bypasses-rls"
    level = "error"
    hint = "ALTER ROLE ... NOSUPERUSER NOBYPASSRLS; keep such attributes on NOLOGIN roles used only by administrators"
    sources = ("live",)

    def check(self, model: LintModel) -> Iterator[Finding]:
        for role in sorted(model.roles.values(), key=lambda r: r.name):
            if not role.login or role.bootstrap:
                continue
            if role.superuser:
                if model.tied_to_database(role.name):
                    yield self.finding(
                        role.name,
                        f"{role.name} can log in and is SUPERUSER: row-level security never applies to it (not even "
                        "forced), and it can disable RLS or drop policies",
                    )
            elif role.bypassrls:
                tables = sorted(model.rls_tables_within_reach(role.name))
                if tables:
                    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
                    yield self.finding(
                        role.name,
                        f"{role.name} can log in and has BYPASSRLS: the policies of {shown} (RLS enabled, and "
                        f"reachable by it) never apply to its sessions; {bypass_meaning(role.name)}",
                    )
                elif model.tied_to_database(role.name):
                    yield self.finding(
                        role.name,
                        f"{role.name} can log in, has BYPASSRLS and a part in this database: no table it reaches "
                        "has RLS yet, and none that gets it will apply its policies to this role",
                    )
