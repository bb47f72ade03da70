"""A project that grows: declaring a keys role (encrypted columns) after apply ran without one.

The helper schema belongs to the definer until a keys role exists; apply then hands it to
the keys role (it used to refuse: it only adopted the schema from the owner role).
"""

from __future__ import annotations

import shutil

from click.testing import CliRunner, Result

from rlsctl.cli.main import main
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "orgs"
KEYS_ROLE = """  keys:
    kind: keys
    description: Owns the encryption functions and the key store.
"""


def cli(database, root, *args: str) -> Result:
    arguments = [*args, "--project", str(root), "--dsn", database.dsn, "--role-prefix", database.prefix]
    return CliRunner().invoke(main, arguments)


def test_declaring_encryption_later_converges(db, tmp_path, monkeypatch):
    monkeypatch.setenv("PGOPTIONS", "-c orgs.master_key=" + "k" * 40)
    root = tmp_path / "orgs"
    shutil.copytree(EXAMPLE, root)
    assert cli(db, root, "migrate").exit_code == 0
    assert cli(db, root, "apply").exit_code == 0
    with db.connect() as conn:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'orgs_rls'")
        assert owner.fetchone() == (db.role("definer"),)
    # The team now encrypts task titles: a keys role, pgcrypto, the key-encryption key's setting.
    settings = root / "policies" / "project.yaml"
    text = settings.read_text()
    text = text.replace("  # No extensions: gen_random_uuid() is built into PostgreSQL 13 and later.\n",
                        "  extensions: [pgcrypto]\n  encryption: {master_key_setting: orgs.master_key}\n")  # fmt: skip
    text = text.replace("roles:\n", "roles:\n" + KEYS_ROLE, 1)
    settings.write_text(text)
    work = root / "policies" / "work.yaml"
    work.write_text(work.read_text().replace("    tenant: {via: project_id}", "    tenant: {via: project_id}\n    encrypted: [title]", 1))
    applied = cli(db, root, "apply")
    assert applied.exit_code == 0, applied.output
    drift = cli(db, root, "drift")
    assert drift.exit_code == 0 and "no drift" in drift.output, drift.output
    with db.connect() as conn:
        owner = conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'orgs_rls'")
        assert owner.fetchone() == (db.role("keys"),)
