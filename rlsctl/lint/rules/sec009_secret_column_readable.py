from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import PUBLIC, LintModel
from rlsctl.lint.rule import Finding, Rule


class SecretColumnReadable(Rule):
    """A column declared secret can be read by a role not entitled to it.

    Row-level security filters rows, never columns: a key hash, a token or
    ciphertext stays secret only through column privileges. Secret columns
    and the roles entitled to read them come from the project, or from a
    column comment containing `rlsctl:secret readers=a_role,b_role` (no
    `readers=`: only the table's owner), which both live and SQL-file linting
    read. A role may read a column through SELECT on the table or on the
    column, granted to it, to a role it belongs to, or to PUBLIC; members of
    an entitled role are entitled too.

    Bad:

        CREATE ROLE app_role;
        CREATE ROLE auditor_role;
        CREATE TABLE api_key (id int PRIMARY KEY, team_id int NOT NULL, hashed_key text NOT NULL);
        COMMENT ON COLUMN api_key.hashed_key IS 'rlsctl:secret readers=auditor_role';
        GRANT SELECT ON api_key TO app_role;

    Good:

        CREATE ROLE app_role;
        CREATE ROLE auditor_role;
        CREATE TABLE api_key (id int PRIMARY KEY, team_id int NOT NULL, hashed_key text NOT NULL);
        COMMENT ON COLUMN api_key.hashed_key IS 'rlsctl:secret readers=auditor_role';
        CREATE INDEX ON api_key (team_id);
        ALTER TABLE api_key ENABLE ROW LEVEL SECURITY;
        ALTER TABLE api_key FORCE ROW LEVEL SECURITY;
        CREATE POLICY team_read ON api_key FOR SELECT TO app_role, auditor_role
            USING (team_id = (SELECT NULLIF(current_setting('app.team_id', true), '')::int));
        GRANT SELECT (id, team_id) ON api_key TO app_role;
        GRANT SELECT ON api_key TO auditor_role;
    """

    id = "SEC009"
    name = "secret-column-readable"
    level = "error"
    hint = "REVOKE SELECT on the table and grant SELECT on the other columns only (GRANT SELECT (col, ...) ON ...)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for key, readers in sorted(model.secrets.items()):
            table, _, column = key.rpartition(".")
            relation = model.relations.get(table)
            if relation is None:
                continue
            entitled = set(readers) | {relation.owner}
            intruders = sorted(
                grantee
                for grantee in model.can_read_column(table, column)
                if grantee not in entitled and (grantee == PUBLIC or not model.reachable_roles(grantee) & entitled)
            )
            if intruders:
                allowed = ", ".join(sorted(readers)) or "nobody but its owner"
                yield self.finding(
                    f"{table}.{column}",
                    f"{', '.join(intruders)} can read {key}, declared secret (readers: {allowed}): row-level "
                    "security does not hide columns",
                )
