from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, bypass_meaning
from rlsctl.lint.rule import Finding, Rule


class LoginReachesBypassRole(Rule):
    """A role that can log in is a member (directly or through other roles) of a SUPERUSER or BYPASSRLS role.

    Membership lets it SET ROLE to that role, and from then on no policy
    applies to the session: the attribute is not inherited, but one
    statement turns it on. Reported when the membership matters here: the
    member or the granted role has a part in this database, or the BYPASSRLS
    role reaches an RLS-enabled table of it (see SEC007). On Supabase the
    platform's login (authenticator) is a member of service_role, which has
    BYPASSRLS: every request made with the service key runs without any
    policy, and the finding says what that means for the server-side code
    holding the key.

    Bad:

        CREATE ROLE support_role NOLOGIN BYPASSRLS;
        CREATE ROLE web_role LOGIN;
        GRANT support_role TO web_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        GRANT SELECT ON invoice TO support_role;

    Good:

        CREATE ROLE support_role NOLOGIN;
        CREATE ROLE web_role LOGIN;
        GRANT support_role TO web_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO support_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO support_role;
    """

    id = "SEC013"
    name = "login-reaches-bypass-role"
    level = "warning"
    hint = "REVOKE the membership, or drop SUPERUSER/BYPASSRLS from the granted role"
    sources = ("live",)

    def check(self, model: LintModel) -> Iterator[Finding]:
        for member in sorted(model.roles.values(), key=lambda r: r.name):
            if not member.login or member.superuser:  # a superuser gains nothing (SEC007)
                continue
            reasons: list[str] = []
            bypassing: list[str] = []
            for name in sorted(model.reachable_roles(member.name)):
                target = model.roles.get(name)
                if target is None or name == member.name:
                    continue
                if target.superuser:
                    if model.tied_to_database(member.name) or model.tied_to_database(name):
                        reasons.append(f"SUPERUSER role {name}")
                elif target.bypassrls and not member.bypassrls:
                    tables = sorted(model.rls_tables_within_reach(name))
                    if tables:
                        shown = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
                        reasons.append(f"BYPASSRLS role {name} (which reaches RLS-enabled {shown})")
                        bypassing.append(name)
                    elif model.tied_to_database(member.name) or model.tied_to_database(name):
                        reasons.append(f"BYPASSRLS role {name}")
                        bypassing.append(name)
            if reasons:
                yield self.finding(
                    member.name,
                    f"login role {member.name} is a member of {'; '.join(reasons)}: it can SET ROLE and run "
                    "without row-level security" + "".join(f"; {bypass_meaning(name)}" for name in bypassing),
                )
