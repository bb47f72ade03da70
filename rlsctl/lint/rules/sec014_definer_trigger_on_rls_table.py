from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class DefinerTriggerOnRlsTable(Rule):
    """A trigger on an RLS-enabled table calls a SECURITY DEFINER function.

    The trigger then runs as the function's owner: what it reads and writes
    is filtered by the owner's policies (or by none, when the owner owns the
    tables or bypasses RLS), not by those of the role whose statement fired
    it, and CURRENT_USER inside it is the owner. Guard and audit triggers
    that check the caller must be SECURITY INVOKER.

    Bad:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        CREATE FUNCTION invoice_guard() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER guard BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION invoice_guard();

    Good:

        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE FUNCTION invoice_guard() RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER guard BEFORE UPDATE ON invoice FOR EACH ROW EXECUTE FUNCTION invoice_guard();
    """

    id = "SEC014"
    name = "definer-trigger-on-rls-table"
    level = "warning"
    hint = "ALTER FUNCTION ... SECURITY INVOKER (give the roles that fire it the privileges the trigger needs)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for trigger in sorted(model.triggers, key=lambda t: (t.schema, t.table, t.name)):
            table = model.relations.get(f"{trigger.schema}.{trigger.table}")
            function = model.functions.get(f"{trigger.function}()")
            if table is None or not table.rls or function is None or not function.security_definer:
                continue
            yield self.finding(
                f"{table.qualified}.{trigger.name}",
                f"trigger {trigger.name} on {table.qualified} (row-level security enabled) runs SECURITY DEFINER "
                f"{function.qualified} as {function.owner}: it reads and writes under its owner's policies, not "
                "the caller's, and CURRENT_USER inside it is the owner",
            )
