from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule

OBJECTS = {"r": "tables", "S": "sequences", "f": "functions"}


class OpenDefaultPrivileges(Rule):
    """Default privileges grant tables, sequences or functions created later to PUBLIC.

    ALTER DEFAULT PRIVILEGES ... TO PUBLIC opens every future object of that
    kind to every role the moment it is created, before a migration gets to
    enable row-level security or revoke anything. For functions only grants
    made per schema are reported: a role-wide default that still includes
    PUBLIC is PostgreSQL's built-in default for functions, not a grant.

    Bad:

        ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;

    Good:

        CREATE ROLE app_role;
        ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app_role;
        ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    """

    id = "SEC012"
    name = "open-default-privileges"
    level = "warning"
    hint = "ALTER DEFAULT PRIVILEGES [FOR ROLE ...] [IN SCHEMA ...] REVOKE ... FROM PUBLIC; grant named roles instead"

    def check(self, model: LintModel) -> Iterator[Finding]:
        opened: dict[str, list[str]] = {}  # creator -> what it opens
        for acl in model.default_acls:
            if acl.objtype not in OBJECTS or PUBLIC not in acl.grantees:
                continue
            if acl.objtype == "f" and acl.schema is None:
                continue
            where = f" in schema {acl.schema}" if acl.schema else ""
            opened.setdefault(acl.creator, []).append(f"{OBJECTS[acl.objtype]} it creates{where}")
        for creator, what in sorted(opened.items()):
            yield self.finding(
                creator,
                f"default privileges of {creator} grant {', '.join(sorted(set(what)))} to PUBLIC: each new one is "
                "open to every role before anyone secures it",
            )
