"""Quotes, spaces, mixed case and reserved words in tables, columns and roles round-trip."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from rlsctl.cli.main import main
from rlsctl.policy.project import load_project
from rlsctl.tester.run import run_matrix
from tests.conftest import migrate_and_apply

MIGRATION = """
CREATE TABLE "user table" ("ID" text PRIMARY KEY, "e-mail" text NOT NULL);
CREATE TABLE "Group" ("group id" text PRIMARY KEY, "owner's id" text NOT NULL REFERENCES "user table"("ID"));
CREATE INDEX "Group owner" ON "Group"("owner's id");
CREATE TABLE "member""ship" (
    "id" text PRIMARY KEY,
    "group" text NOT NULL REFERENCES "Group"("group id"),
    "user" text NOT NULL REFERENCES "user table"("ID"),
    "Level" text NOT NULL
);
CREATE INDEX ON "member""ship"("group");
CREATE INDEX ON "member""ship"("user");
CREATE TABLE "select" (
    "order" text PRIMARY KEY,
    "group" text NOT NULL REFERENCES "Group"("group id"),
    "Mixed Case" text,
    "where" text
);
CREATE INDEX ON "select"("group");
"""

POLICIES = """
project:
  name: odd
  role_prefix: 'pfx'
roles:
  owner: {kind: owner}
  app: {kind: app, name: 'APP "role" one'}
  definer: {kind: definer}
tenancy:
  tenants: {table: Group, key: group id, owner: owner's id}
  membership: {table: 'member"ship', tenant: group, user: user, rank: Level}
  ranks: [reader, writer]
tables:
  user table:
    policies:
      app:
        select: {self: ID}
  Group:
    tenant: group id
    policies:
      app:
        select: {tenant_role: reader}
  'member"ship':
    tenant: group
    policies:
      app:
        select: {tenant_role: reader}
  select:
    tenant: group
    policies:
      app:
        select: {tenant_role: reader}
        insert: {tenant_role: writer}
        update: {tenant_role: writer}
        delete: {all: [{tenant_role: writer}, {not: {equals: {where: "it's locked"}}}]}
    columns:
      app:
        update: {except: [order]}
    guards:
      - changed: [group]
        message: 'a row never moves to another "group"'
fixtures:
  principals:
    reader: {user: u_reader}
    writer: {user: u_writer}
    stranger: {user: u_stranger}
    nobody: {user: null}
  rows:
    user table:
      u_reader: {e-mail: r@x}
      u_writer: {e-mail: w@x}
      u_stranger: {e-mail: s@x}
      u_owner: {e-mail: o@x}
    Group:
      g1: {owner's id: "@u_owner"}
      g2: {owner's id: "@u_stranger"}
    'member"ship':
      m_reader: {group: "@g1", user: "@u_reader", Level: reader}
      m_writer: {group: "@g1", user: "@u_writer", Level: writer}
    select:
      s_open: {group: "@g1", Mixed Case: x, where: open}
      s_locked: {group: "@g1", Mixed Case: y, where: "it's locked"}
      s_other: {group: "@g2", Mixed Case: z}
  inserts:
    select:
      new_g1: {group: "@g1"}
      new_g2: {group: "@g2"}
  updates:
    select:
      rename: {Mixed Case: renamed}
      move: {group: "@g2"}
"""


def make_project(root: Path, prefix: str, app_name: str) -> Path:
    (root / "policies").mkdir(parents=True)
    text = POLICIES.replace("role_prefix: 'pfx'", f"role_prefix: '{prefix}'")
    text = text.replace("""name: 'APP "role" one'""", "name: '" + app_name + "'")
    (root / "policies" / "odd.yaml").write_text(text)
    phase = root / "migrations" / "0_odd"
    phase.mkdir(parents=True)
    (phase / "01_odd.up.sql").write_text(textwrap.dedent(MIGRATION))
    (phase / "01_odd.down.sql").write_text(
        'DROP TABLE "select";\nDROP TABLE "member""ship";\nDROP TABLE "Group";\nDROP TABLE "user table";\n'
    )
    return root


def test_odd_names_round_trip(db, tmp_path):
    odd_prefix = db.prefix + 'Q"x '  # a quote and a space in every role name
    app_name = db.prefix + 'APP "role" one'  # a role named explicitly, mixed case
    root = make_project(tmp_path / "odd", odd_prefix, app_name)
    project = load_project(root, role_prefix=None)
    migrate_and_apply(db, project=project)
    with db.connect() as conn:
        roles = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
        assert odd_prefix + "owner" in roles and app_name in roles
        result = run_matrix(conn, project, "odd")
    assert not result.failures, result.failures[:3]
    denied_delete = [
        c for c in result.cells if c.command == "delete" and c.case == "s_locked" and c.principal == "writer"
    ]
    assert denied_delete and not denied_delete[0].actual.allowed
    plan = CliRunner().invoke(main, ["plan", "--dsn", db.dsn, "--project", str(root), "--format", "json"])
    assert plan.exit_code == 0, plan.stderr
    assert '"statements": []' in plan.stdout
    drift = CliRunner().invoke(main, ["drift", "--dsn", db.dsn, "--project", str(root)])
    assert drift.exit_code == 0, drift.stdout
