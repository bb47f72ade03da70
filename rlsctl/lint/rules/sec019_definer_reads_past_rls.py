from __future__ import annotations

import re
from collections.abc import Iterator

from rlsctl.lint import bodies, exprs, scope
from rlsctl.lint.model import PUBLIC, Function, LintModel, Relation
from rlsctl.lint.rule import Finding, Rule


class DefinerReadsPastRls(Rule):
    """A SECURITY DEFINER function a tenant role may run reads an RLS table as an owner who sees every row.

    The function runs as its owner: the table's policies are the owner's,
    not the caller's. When the owner bypasses RLS (a superuser, BYPASSRLS,
    or the table's owner while RLS is not forced) or has a permissive
    policy that scopes nothing (`select: true` for a migration or backup
    role), a tenant role allowed to run it reads through it whatever the
    function selects: `my_rows(tenant_id int)` called with another tenant's
    id returns that tenant's rows. Filter inside the function by the
    session's identity, run it as a role whose policies scope it (a
    dedicated definer role), or make it SECURITY INVOKER. A function whose
    body reads the session's identity (`current_setting(...)`,
    `current_user`, `auth.uid()`) scopes its rows itself and is not
    reported; rlsctl's own helpers (its schema, when lint knows the
    project) run as the definer role, whose policies show the session's
    user only their own membership rows.

    Bad:

        CREATE ROLE app_role;
        CREATE ROLE owner_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice OWNER TO owner_role;
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO app_role;
        CREATE FUNCTION invoices_of(t int) RETURNS SETOF invoice LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT * FROM public.invoice WHERE tenant_id = t $$;
        ALTER FUNCTION invoices_of(int) OWNER TO owner_role;
        REVOKE EXECUTE ON FUNCTION invoices_of(int) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION invoices_of(int) TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE ROLE owner_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice OWNER TO owner_role;
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_rows ON invoice FOR SELECT TO app_role, owner_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        GRANT SELECT ON invoice TO app_role;
        CREATE FUNCTION invoices_of(t int) RETURNS SETOF invoice LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT * FROM public.invoice WHERE tenant_id = t $$;
        ALTER FUNCTION invoices_of(int) OWNER TO owner_role;
        REVOKE EXECUTE ON FUNCTION invoices_of(int) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION invoices_of(int) TO app_role;
    """

    id = "SEC019"
    name = "definer-reads-past-rls"
    level = "warning"
    hint = (
        "Filter by the session's identity inside the function, run it as a role whose policies scope the rows, "
        "or make it SECURITY INVOKER"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for function in model.functions.values():
            if not function.security_definer or function.from_extension or function.is_trigger:
                continue
            if model.trusted(function) or function.schema in model.own_schemas or _asks_who(function):
                continue
            callers = _tenant_callers(model, function)
            for relation in _rls_tables_read(model, function) if callers else []:
                how = _reads_every_row(model, function.owner, relation)
                # Callers who read every row of it themselves gain nothing through the function.
                limited = [c for c in callers if c == PUBLIC or not _reads_every_row(model, c, relation)]
                if how and limited:
                    yield self.finding(
                        function.qualified,
                        f"{function.qualified} is SECURITY DEFINER and {', '.join(limited)} may run it: it reads "
                        f"{relation.qualified} as {function.owner}, who {how}, so the callers' policies do not "
                        "apply to what it returns",
                    )
                    break


# The session's identity, read inside the body: the function scopes the rows itself (a helper that
# returns the user's own rows); whether it does so rightly is a review's, not this rule's.
IDENTITY = re.compile(r"\bcurrent_setting\s*\(|\b(current_user|session_user)\b|\bauth\s*\.\s*(uid|jwt)\s*\(", re.I)


def _asks_who(function: Function) -> bool:
    return bool(IDENTITY.search(function.body))


def _tenant_callers(model: LintModel, function: Function) -> list[str]:
    """The roles subject to RLS that may execute the function (PUBLIC: every one of them)."""
    found = []
    for role in sorted(model.roles):
        details = model.roles[role]
        if details.superuser or details.bypassrls or role == function.owner:
            continue
        if model.holders(role) & function.executors and model.rls_tables_within_reach(role):
            found.append(role)
    if PUBLIC in function.executors and not found:
        return [PUBLIC]
    return found


def _rls_tables_read(model: LintModel, function: Function) -> list[Relation]:
    found: dict[str, Relation] = {}
    for schema, name in bodies.read_body(function).relations:
        candidates = [f"{schema}.{name}"] if schema else [f"{function.schema}.{name}", f"public.{name}"]
        for qualified in candidates:
            relation = model.relations.get(qualified)
            if relation is not None and relation.is_table and relation.rls:
                found[qualified] = relation
                break
    return [found[name] for name in sorted(found)]


def _reads_every_row(model: LintModel, owner: str, relation: Relation) -> str:
    """How the owner sees the table's every row, or '' when its policies scope what it reads."""
    details = model.roles.get(owner)
    if details is not None and (details.superuser or details.bypassrls):
        return "bypasses row-level security"
    owners = {owner} | model.reachable_roles(owner)
    if relation.owner in owners and not relation.forced:
        return "owns it while its RLS is not forced"
    for policy in model.policies_on(relation.qualified):
        if not policy.permissive or "select" not in exprs.commands(policy.command):
            continue
        if not (owners | {PUBLIC}) & set(policy.roles):
            continue
        if scope.opening(policy.using, exprs.row_of(model, policy), model, policy.roles) is not None:
            return f"reads every row through policy {policy.name}"
    return ""
