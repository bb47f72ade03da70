"""`rlsctl lint --format sarif`: physical locations, fingerprints, and the SARIF 2.1.0 schema.

Code scanning (GitHub's, and others reading SARIF) annotates a line only when a
result names a file and a region; and it follows an alert across commits by its
`partialFingerprints`. The schema is OASIS's SARIF 2.1.0 (errata 01) JSON
Schema, vendored in tests/data/ from the oasis-tcs/sarif-spec repository
(sarif-2.1/schema/sarif-schema-2.1.0.json), since tests run without a network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from rlsctl.cli.main import main
from tests.conftest import ROOT

SCHEMA_PATH = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
OASIS_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

# A policy anyone could write by mistake: the auditor reads every team's prompts (RLS007), and with them their
# secret content (SEC009). It goes in front of the app role's rules of Prompt.
AUDITOR_RULE = "      auditor:\n        select: true              # sarif test: every team's prompts\n"
APP_RULES = "    policies:\n      app:\n        select:\n"
# A migration that creates a table nobody declared, granted to PUBLIC (RLS001, RLS002, SEC004), a definer
# helper without search_path (SEC001), and grants a declared table to PUBLIC (SEC004 on public.Prompt). The
# statements start after comments and blanks, one after a comment on its own line.
BAD_MIGRATION = """
-- sarif test: what lint must point at
CREATE TABLE "Scratch" (id int PRIMARY KEY, note text);
GRANT SELECT ON "Scratch" TO PUBLIC;
/* a helper, /* nested */ comment */   CREATE FUNCTION scratch_count() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER AS $$ SELECT count(*) FROM "Scratch" $$;
GRANT SELECT ON "Prompt" TO PUBLIC;
"""


@pytest.fixture(scope="module")
def schema() -> dict:
    loaded = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert loaded["id"] == OASIS_ID and loaded["properties"]["version"]["enum"] == ["2.1.0"]
    jsonschema.Draft4Validator.check_schema(loaded)
    return loaded


def assert_valid(log: dict, schema: dict) -> None:
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "migrations", project / "migrations")
    return project


def last_migration(project: Path) -> Path:
    return sorted((project / "migrations").glob("*/*.up.sql"))[-1]


def make_bad(project: Path) -> tuple[Path, Path]:
    """The bad policy file and the bad migration, edited in place."""
    policy = project / "policies" / "prompts.yaml"
    text = policy.read_text(encoding="utf-8")
    assert text.count(APP_RULES) == 1
    policy.write_text(text.replace(APP_RULES, APP_RULES.replace("      app:\n", AUDITOR_RULE + "      app:\n")))
    migration = last_migration(project)
    migration.write_text(migration.read_text(encoding="utf-8") + BAD_MIGRATION, encoding="utf-8")
    return policy, migration


def sarif(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["lint", *args, "--format", "sarif"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def by_finding(log: dict) -> dict[tuple[str, str], dict]:
    found = {}
    for result in log["runs"][0]["results"]:
        key = (result["ruleId"], result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"])
        assert key not in found
        found[key] = result
    return found


def physical(result: dict) -> tuple[str, int | None, int | None]:
    where = result["locations"][0]["physicalLocation"]
    region = where.get("region", {})
    assert where["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    return where["artifactLocation"]["uri"], region.get("startLine"), region.get("startColumn")


def line_of(text: str, needle: str) -> int:
    """The 1-based line where `needle` starts (it must occur once)."""
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count("\n") + 1


def line_and_column(text: str, needle: str) -> tuple[int, int]:
    assert text.count(needle) == 1, needle
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def test_findings_point_at_the_policy_line_and_the_migration_statement(tmp_path, schema):
    project = copy_project(tmp_path)
    policy, migration = make_bad(project)
    code, log = sarif("--project", str(project))
    assert code == 1
    assert_valid(log, schema)
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == project.resolve().as_uri() + "/"
    found = by_finding(log)
    policy_uri, policy_text = "policies/prompts.yaml", policy.read_text(encoding="utf-8")
    migration_uri = migration.relative_to(project).as_posix()
    migration_text = migration.read_text(encoding="utf-8")

    # A role's command rule: the line of `select:` under `auditor:`.
    assert physical(found["RLS007", "public.Prompt.auditor_select"]) == (
        policy_uri,
        line_of(policy_text, AUDITOR_RULE) + 1,
        None,
    )
    # A secret column: its entry under `secrets:`.
    assert physical(found["SEC009", "public.Prompt.content"]) == (
        policy_uri,
        line_of(policy_text, "      content: [app]          # prompt text"),
        None,
    )
    # A table-level finding on a declared table: the table's entry, even though a migration caused it.
    assert physical(found["SEC004", "public.Prompt"]) == (policy_uri, line_of(policy_text, "\n  Prompt:\n") + 1, None)
    # Objects only a migration declares: the statement's first word, past comments and blanks.
    scratch = (migration_uri, *line_and_column(migration_text, 'CREATE TABLE "Scratch"'))
    for rule in ("RLS001", "RLS002", "SEC004"):
        assert physical(found[rule, "public.Scratch"]) == scratch
    helper = (migration_uri, *line_and_column(migration_text, "CREATE FUNCTION scratch_count()"))
    assert physical(found["SEC001", "public.scratch_count()"]) == helper
    assert helper[2] > 1  # after the comment on its line

    # Every result of an offline project names a file (code scanning refuses a log where one does not):
    # rlsctl's key store, which only the rendered SQL creates, points at `helper_schema:`.
    assert all("physicalLocation" in r["locations"][0] for r in run["results"])
    project_yaml = (project / "policies" / "project.yaml").read_text(encoding="utf-8")
    assert physical(found["RLS005", "rlsctl.encryption_key"]) == (
        "policies/project.yaml",
        line_of(project_yaml, "\n  helper_schema: rlsctl") + 1,
        None,
    )
    # A suppressed finding carries the line of its `suppress:` entry; one on rlsctl's own objects
    # (docs/lint.md) rlsctl's reason and no line: no policy file declares it.
    security_yaml = (project / "policies" / "security.yaml").read_text(encoding="utf-8")
    suppression = found["RLS007", "public.AuditLog.auditor_select"]["suppressions"][0]
    entry = "\n      - rule: RLS007\n        object: AuditLog.auditor_select"
    assert suppression["location"]["physicalLocation"]["region"]["startLine"] == line_of(security_yaml, entry) + 1
    own = found["RLS005", "rlsctl.encryption_key"]["suppressions"][0]
    assert "location" not in own and own["justification"].startswith("rlsctl's key store, read and written only")


def test_fingerprints_are_stable_across_runs_and_line_moves_and_differ_between_findings(tmp_path, schema):
    project = copy_project(tmp_path)
    policy, migration = make_bad(project)
    _, first = sarif("--project", str(project))
    _, again = sarif("--project", str(project))
    prints = {key: r["partialFingerprints"]["rlsctl/v1"] for key, r in by_finding(first).items()}
    assert prints == {key: r["partialFingerprints"]["rlsctl/v1"] for key, r in by_finding(again).items()}
    assert len(set(prints.values())) == len(prints) > 20
    assert all(len(value) == 64 and int(value, 16) >= 0 for value in prints.values())  # sha256, hex

    # Three lines more above every declaration: the lines move, the fingerprints stay.
    for path, comment in ((policy, "#"), (migration, "--")):
        path.write_text(f"{comment} moved\n\n\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    _, moved = sarif("--project", str(project))
    assert_valid(moved, schema)
    after = by_finding(moved)
    assert {key: r["partialFingerprints"]["rlsctl/v1"] for key, r in after.items()} == prints
    before = by_finding(first)
    for key in (("RLS007", "public.Prompt.auditor_select"), ("SEC001", "public.scratch_count()")):
        uri, line, column = physical(before[key])
        assert physical(after[key]) == (uri, line + 3, column)


def test_sql_files_given_on_the_command_line(tmp_path, schema, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no repository above it: paths are relative to the working directory
    path = tmp_path / "0005 invoices.sql"
    text = (
        "CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);\n"
        "ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;\n"
        "\n"
        "/* ünïcödé */ CREATE POLICY everything ON invoice USING (true); -- é\n"
        "CREATE TABLE draft (id int PRIMARY KEY);\n"
        "ALTER TABLE draft RENAME TO note;\n"
    )
    path.write_text(text, encoding="utf-8")
    code, log = sarif(path.name)
    assert code == 1
    assert_valid(log, schema)
    run = log["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    found = by_finding(log)
    uri = "0005%20invoices.sql"  # a URI: the blank is escaped
    assert physical(found["RLS006", "public.invoice.everything"]) == (uri, *line_and_column(text, "CREATE POLICY"))
    # A renamed table keeps the statement that created it.
    assert physical(found["RLS002", "public.note"]) == (uri, *line_and_column(text, "CREATE TABLE draft"))


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.sql"
    path.write_text("-- é\nCREATE TABLE a (id int);\nSELECT (;\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:3: SQL syntax error" in result.stderr and "Traceback" not in result.stderr


def test_live_findings_have_a_logical_location_only(tmp_path, db, schema, monkeypatch):
    with db.connect() as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, tenant_id int NOT NULL)")
        conn.execute("GRANT SELECT ON ledger TO PUBLIC")
    project = copy_project(tmp_path)
    make_bad(project)
    monkeypatch.chdir(tmp_path)
    _, log = sarif("--project", str(project), "--dsn", db.dsn)
    assert_valid(log, schema)
    found = by_finding(log)
    live_only = found["SEC004", "public.ledger"]
    assert "physicalLocation" not in live_only["locations"][0]
    assert live_only["partialFingerprints"]["rlsctl/v1"]
    # The project's own findings keep their files when the live catalog is linted too.
    assert physical(found["RLS007", "public.Prompt.auditor_select"])[0] == "policies/prompts.yaml"
    assert physical(found["SEC001", "public.scratch_count()"])[0].startswith("migrations/")
