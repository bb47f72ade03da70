from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class AdoptsObjectInOpenSchema(Rule):
    """SQL runs CREATE OR REPLACE or CREATE ... IF NOT EXISTS in a schema where other roles can create objects.

    Such a statement keeps an object that already exists: if a role with
    CREATE on the schema made it first, CREATE ... IF NOT EXISTS silently
    does nothing, and CREATE OR REPLACE FUNCTION or VIEW replaces the body
    but keeps that role as the owner, with the grants it chose. The
    migration then runs, or hands out, an object the other role controls
    (pgspot's PS002/PS007 findings). Roles the script itself makes owners
    of objects in the schema are trusted with it; PUBLIC never is.

    Bad:

        CREATE ROLE dev_role;
        CREATE SCHEMA app;
        GRANT USAGE, CREATE ON SCHEMA app TO dev_role;
        CREATE OR REPLACE FUNCTION app.tenant_ids() RETURNS int[] LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;

    Good:

        CREATE ROLE dev_role;
        CREATE SCHEMA app;
        GRANT USAGE ON SCHEMA app TO dev_role;
        CREATE OR REPLACE FUNCTION app.tenant_ids() RETURNS int[] LANGUAGE sql STABLE
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT ARRAY[1, 2] $$;
    """

    id = "SEC017"
    name = "adopts-object-in-open-schema"
    level = "warning"
    hint = (
        "Create the object with plain CREATE (fail if it exists) or revoke CREATE on the schema from the "
        "other roles first"
    )
    sources = ("sql", "project")

    def check(self, model: LintModel) -> Iterator[Finding]:
        trusted: dict[str, set[str]] = {}  # schema -> roles the script makes owners of objects in it
        for relation in model.relations.values():
            trusted.setdefault(relation.schema, set()).add(relation.owner)
        for function in model.functions.values():
            trusted.setdefault(function.schema, set()).add(function.owner)
        seen: set[str] = set()
        for created in model.open_creates:
            others = sorted(r for r in created.creators if r == PUBLIC or r not in trusted.get(created.schema, set()))
            if not others or created.object in seen:
                continue
            seen.add(created.object)
            who = ", ".join("every role (PUBLIC)" if r == PUBLIC else r for r in others)
            yield self.finding(
                created.object,
                f"{created.statement} {created.object} runs while {who} can create in schema {created.schema}: "
                "an object they made first is kept, with its owner and grants, instead of the one the script means",
            )
