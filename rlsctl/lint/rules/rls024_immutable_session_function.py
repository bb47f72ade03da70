from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class ImmutableSessionFunction(Rule):
    """A policy calls a function declared IMMUTABLE whose body reads session state.

    IMMUTABLE promises the result depends on the arguments only. The planner
    may then evaluate the call once while planning and keep the result in a
    cached plan: a prepared statement, a pooled connection or a PL/pgSQL
    function reuses the first user's tenant id (or timestamp) for the next
    users. Functions reading current_setting(), CURRENT_USER, now() or
    auth.* must be STABLE.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        CREATE FUNCTION current_tenant() RETURNS int LANGUAGE sql IMMUTABLE
            AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::int $$;
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT current_tenant()));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        CREATE FUNCTION current_tenant() RETURNS int LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::int $$;
        REVOKE EXECUTE ON FUNCTION current_tenant() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION current_tenant() TO app_role;
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT current_tenant()));
    """

    id = "RLS024"
    name = "immutable-session-function"
    level = "error"
    hint = "Declare the function STABLE (ALTER FUNCTION ... STABLE)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        callers: dict[str, list[str]] = {}
        reads: dict[str, str] = {}
        for policy in model.policies:
            for text in (policy.using, policy.check):
                for call in exprs.anonymous_calls(exprs.parse(text)):
                    for function in exprs.functions_called(call, model):
                        if function.volatility != "i" or function.language not in ("sql", "plpgsql"):
                            continue
                        body = "\n".join(line.split("--", 1)[0] for line in function.body.splitlines())
                        match = exprs.SESSION_BODY.search(body)
                        if match is None:
                            continue
                        reads[function.qualified] = match.group(1) or f"{match.group(2)}()"
                        names = callers.setdefault(function.qualified, [])
                        if policy.qualified not in names:
                            names.append(policy.qualified)
        for qualified, policies in callers.items():
            yield self.finding(
                qualified,
                f"{qualified} is declared IMMUTABLE but reads {reads[qualified]}, and policies call it "
                f"({', '.join(policies)}): PostgreSQL may fold the call once and reuse the result in cached "
                "plans, for other users",
            )
