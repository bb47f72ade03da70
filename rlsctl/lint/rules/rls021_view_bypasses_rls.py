from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel, Relation
from rlsctl.lint.rule import Finding, Rule


class ViewBypassesRls(Rule):
    """A view reads an RLS-enabled table without security_invoker, and roles other than its owner may use it.

    A view runs with its owner's privileges unless it is created WITH
    (security_invoker = true) (PostgreSQL 15). The table's policies are then
    checked against the view's owner, not against the role querying the view:
    when the owner owns the table (and RLS is not forced) or bypasses RLS, the
    policies do not apply at all; otherwise every reader gets the owner's rows.
    Views read through other views count: a security_invoker view runs as
    whoever reads it (here: the outer view's owner), any other as its owner.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE VIEW invoice_list AS SELECT id, tenant_id, amount FROM invoice;
        GRANT SELECT ON invoice, invoice_list TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
        CREATE VIEW invoice_list WITH (security_invoker = true) AS SELECT id, tenant_id, amount FROM invoice;
        GRANT SELECT ON invoice, invoice_list TO app_role;
    """

    id = "RLS021"
    name = "view-bypasses-rls"
    level = "error"
    hint = "ALTER VIEW ... SET (security_invoker = true), and grant the readers what they need on the tables underneath"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for view in model.relations.values():
            if view.kind != "v" or view.security_invoker:
                continue
            reached = _rls_tables_by_checker(model, view)
            if not reached:
                continue
            holders = sorted(model.grantees_of(view.qualified))
            if not holders:
                continue
            effects: list[str] = []
            for checker, tables in sorted(reached.items()):
                owner = model.relations[checker].owner
                via = "" if checker == view.qualified else f" through view {checker}, not security_invoker either,"
                exempt = [t for t in tables if _exempt(model, owner, t)]
                if exempt:
                    effects.append(
                        f"it reads {', '.join(exempt)}{via} as {owner}, who is not subject to "
                        f"{'its' if len(exempt) == 1 else 'their'} policies, so they read every row"
                    )
                checked = [t for t in tables if t not in exempt]
                if checked:
                    effects.append(
                        f"it reads {', '.join(checked)}{via} as {owner}, so the policies are checked against "
                        f"{owner}, not against them"
                    )
            yield self.finding(
                view.qualified,
                f"view {view.qualified} reads RLS-enabled tables with its owner's rights (not security_invoker) "
                f"and {', '.join(holders)} may use it: {'; '.join(effects)}",
            )


def _rls_tables_by_checker(model: LintModel, view: Relation) -> dict[str, list[str]]:
    """RLS-enabled tables the view reads, by the view (itself or one it reads, not security_invoker) whose owner
    they are read as: security_invoker views run as whoever reads them, others as their owner."""
    found: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    stack = [(source, view) for source in view.sources]
    while stack:
        name, checker = stack.pop()
        relation = model.relations.get(name)
        if relation is None or (name, checker.qualified) in seen or name == view.qualified:
            continue
        seen.add((name, checker.qualified))
        if relation.is_table and relation.rls:
            found.setdefault(checker.qualified, set()).add(name)
        elif relation.kind == "v":
            inner = checker if relation.security_invoker else relation
            stack.extend((source, inner) for source in relation.sources)
    return {checker: sorted(tables) for checker, tables in found.items()}


def _exempt(model: LintModel, role: str, table: str) -> bool:
    """Whether `role` reads `table` without its policies: superuser, BYPASSRLS, or owner of an unforced table."""
    info = model.roles.get(role)
    if info is not None and (info.superuser or info.bypassrls):
        return True
    relation = model.relations[table]
    return relation.owner == role and not relation.forced
