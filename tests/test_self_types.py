"""`self: c` on a column whose type is not the identity's.

An audit log's actor column is text (it also holds `apikey:<id>` and `system:<job>`), and a
project whose users are uuids wants "read the rows I wrote": `"actor" = current_user_id()`
compared text with uuid, which PostgreSQL refuses at apply (an outside check). The identity is
now cast to text on its side; a comparison no cast makes right is refused offline.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from tests.conftest import migrate_and_apply
from tests.helpers import orgs_with_phase

UP = """
CREATE TABLE activity (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES organisation (id),
    actor text NOT NULL,
    what text NOT NULL
);
CREATE INDEX activity_org_id_idx ON activity (org_id);
CREATE INDEX activity_actor_idx ON activity (actor);
"""
POLICIES = """
tables:
  activity:
    tenant: org_id
    policies:
      app:
        select: {any: [{self: actor}, {tenant_role: admin}]}
"""


def test_a_text_column_is_compared_with_a_uuid_identity_as_text(db, tmp_path):
    root = orgs_with_phase(tmp_path, UP, "DROP TABLE activity;\n", POLICIES)
    project = migrate_and_apply(db, project=load_project(root, role_prefix=db.prefix))
    with db.connect(autocommit=False) as conn:
        me, other = (
            conn.execute("INSERT INTO account (email) VALUES (%s) RETURNING id", (email,)).fetchone()[0]  # type: ignore[index]
            for email in ("me@example.test", "other@example.test")
        )
        org = conn.execute("INSERT INTO organisation (name, slug) VALUES ('o', 'o') RETURNING id").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO org_membership (org_id, account_id, level) VALUES (%s, %s, 'viewer')", (org, me))
        for actor in (str(me), str(other), "system:retention", str(me).upper()):
            conn.execute("INSERT INTO activity (org_id, actor, what) VALUES (%s, %s, 'x')", (org, actor))
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(project.role_name("app"))))
        conn.execute("SELECT set_config('request.account_id', %s, true)", (str(me).upper(),))
        seen = [row[0] for row in conn.execute("SELECT actor FROM activity")]
        # Its own row only: the identity's canonical text (lowercase), whatever case the app set.
        assert seen == [str(me)]
        # No identity, or one that is no uuid: no row (never the rows whose actor is '' or the raw text).
        for identity in ("", "system:retention"):
            conn.execute("SELECT set_config('request.account_id', %s, true)", (identity,))
            assert conn.execute("SELECT count(*) FROM activity").fetchone()[0] == 0  # type: ignore[index]
        conn.rollback()


@pytest.mark.parametrize("column_type", ["integer", "timestamptz"])
def test_a_column_no_cast_compares_with_the_identity_is_refused_offline(tmp_path, column_type):
    up = UP.replace("actor text NOT NULL", f"actor {column_type} NOT NULL")
    root = orgs_with_phase(tmp_path, up, "DROP TABLE activity;\n", POLICIES)
    result = CliRunner().invoke(main, ["render", "--project", str(root)])
    assert result.exit_code == 2, result.output
    assert "extra.yaml:7" in result.stderr
    assert f"self: activity.actor is {column_type} and the identity is uuid: they cannot be compared" in result.stderr
