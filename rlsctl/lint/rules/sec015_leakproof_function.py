from __future__ import annotations

import re
from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule

RAISES = re.compile(r"\bRAISE\b|::|\bCAST\s*\(|/", re.I)  # what makes an error depend on the argument


class LeakproofFunction(Rule):
    """A user-defined function is declared LEAKPROOF: PostgreSQL may run it on rows the policies hide.

    The planner evaluates LEAKPROOF functions (and operators built on them)
    before row-level security filters and security_barrier conditions:
    that is what the mark is for, so an index can serve the query. A
    function marked LEAKPROOF that raises an error depending on its
    argument (a RAISE, a failed cast, a division) or writes it anywhere
    hands the values of rows the user may not see to the user: put it in a
    WHERE clause and read the errors. Only a superuser can set the mark;
    PostgreSQL's own leakproof functions are audited for it, a user's rarely
    are. Reported when some table has row-level security.

    Bad:

        CREATE FUNCTION is_large(v numeric) RETURNS boolean LANGUAGE plpgsql IMMUTABLE LEAKPROOF
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN IF v < 0 THEN RAISE EXCEPTION 'negative amount %', v; END IF; RETURN v > 1000; END $$;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;

    Good:

        CREATE FUNCTION is_large(v numeric) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ BEGIN IF v < 0 THEN RAISE EXCEPTION 'negative amount %', v; END IF; RETURN v > 1000; END $$;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, amount numeric NOT NULL);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
    """

    id = "SEC015"
    name = "leakproof-function"
    level = "warning"
    hint = "ALTER FUNCTION ... NOT LEAKPROOF, unless it provably never raises nor leaks for any argument"

    def check(self, model: LintModel) -> Iterator[Finding]:
        if not any(r.rls for r in model.relations.values()):
            return
        for qualified, function in sorted(model.functions.items()):
            if not function.leakproof or function.from_extension:
                continue
            body = "\n".join(line.split("--", 1)[0] for line in function.body.splitlines())
            evidence = "its body can raise on some arguments" if RAISES.search(body) else "nobody audited it for that"
            yield self.finding(
                qualified,
                f"{qualified} is LEAKPROOF, and {evidence}: PostgreSQL may evaluate it on rows the policies "
                "filter out, and an error or notice it raises reveals their values",
            )
