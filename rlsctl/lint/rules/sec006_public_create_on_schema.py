from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class PublicCreateOnSchema(Rule):
    """PUBLIC may create objects in a schema.

    Every role can then add tables, functions and operators there that
    shadow the ones queries, policies and functions expect to find on their
    search_path (the CVE-2018-1058 pattern PostgreSQL 15 closed for schema
    public by default).

    Bad:

        CREATE SCHEMA app;
        GRANT USAGE, CREATE ON SCHEMA app TO PUBLIC;

    Good:

        CREATE ROLE migrator_role;
        CREATE SCHEMA app;
        GRANT USAGE ON SCHEMA app TO PUBLIC;
        GRANT CREATE ON SCHEMA app TO migrator_role;
    """

    id = "SEC006"
    name = "public-create-on-schema"
    level = "error"
    hint = "REVOKE CREATE ON SCHEMA ... FROM PUBLIC (grant CREATE to the role that runs migrations)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for schema in sorted(model.schemas.values(), key=lambda s: s.name):
            if PUBLIC in schema.creators:
                yield self.finding(
                    schema.name,
                    f"PUBLIC holds CREATE on schema {schema.name}: every role can create objects there that "
                    "shadow the tables and functions others resolve through their search_path",
                )
