"""`rlsctl report` (docs/report.md): the applied PromptCraft database passes every control the
database decides and reports this server's settings as they are; each planted problem fails its
own control in Markdown, HTML and JSON; two reports of one state differ only in the time and the
volatile monitoring section; the JSON validates against the published schema; a role that is not
superuser gets a report that names what it could not read; bad input exits 2 with one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from rlsctl import report as reporting
from rlsctl.cli.main import main
from rlsctl.policy.project import Project
from rlsctl.report import Report
from rlsctl.report.render import code, md
from rlsctl.retention import Retention
from rlsctl.retention import run as run_retention
from tests.conftest import ROOT, TestDatabase, admin_connection, migrate_and_apply

# What the database itself decides on the applied PromptCraft database: every control passes.
DATABASE_CONTROLS = ("RLS-1", "RLS-2", "RLS-3", "ACC-1", "ACC-2", "ACC-3", "ENC-1", "AUD-1", "AUD-2", "RET-1")
EVERY_CONTROL = (*DATABASE_CONTROLS, "LNT-1", "SRV-1", "SRV-2", "SRV-3", "SRV-4")
SECTION_TITLES = (
    "1. Summary",
    "2. Row-level security",
    "3. Access",
    "4. Encryption",
    "5. Retention and audit",
    "6. Findings and drift",
    "7. Monitoring",
    "8. Server settings",
    "9. Identity",
)
SCHEMA = json.loads((ROOT / "rlsctl" / "report" / "report.schema.json").read_text())


@dataclass
class Reported:
    db: TestDatabase
    project: Project
    tests_file: Path  # `rlsctl test --format json` of this database, as CI keeps it
    before_retention: Report  # the report before retention ever ran here


@pytest.fixture(scope="module")
def reported(make_module_db, tmp_path_factory) -> Reported:
    database = make_module_db()
    project = migrate_and_apply(database)
    with database.connect() as conn:
        before = reporting.build(conn, project, database.target.where)
        run_retention(Retention(conn, project, database.target.where))
    tests_file = tmp_path_factory.mktemp("report") / "tests.json"
    result = cli(database, "test", "--format", "json", "-o", str(tests_file))
    assert result.exit_code == 0, result.output
    return Reported(database, project, tests_file, before)


def cli(database: TestDatabase, *args: str, dsn: str | None = None) -> Result:
    return CliRunner().invoke(
        main, [*args, "--dsn", dsn or database.dsn, "--project", str(ROOT), "--role-prefix", database.prefix]
    )


def build(state: Reported, tests_file: Path | None = None) -> Report:
    tests = reporting.tests_from_json((tests_file or state.tests_file).read_text(), "tests.json")
    with state.db.connect() as conn:
        return reporting.build(conn, state.project, state.db.target.where, tests)


def statuses(report: Report) -> dict[str, str]:
    return {control.id: control.status for control in report.controls}


def server_facts() -> dict[str, object]:
    """What this test server is configured with, read here, apart from the code under test."""
    with admin_connection() as conn:
        trust = conn.execute("SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust'").fetchone()
        ssl = conn.execute("SHOW ssl").fetchone()
        statement = conn.execute("SHOW log_statement").fetchone()
    assert trust is not None and ssl is not None and statement is not None
    return {"trust": trust[0] > 0, "ssl": ssl[0], "log_statement": statement[0]}


# -- Markdown, HTML and JSON say the same ---------------------------------------------------------------


def status_in_each_format(report: Report, control_id: str) -> dict[str, str]:
    """The status each format prints for one control: the summary row of Markdown and HTML, the JSON."""
    found: dict[str, str] = {}
    document = json.loads(reporting.render(report, "json"))
    found["json"] = next(c["status"] for c in document["controls"] if c["id"] == control_id)
    markdown = reporting.render(report, "md")
    row = re.search(rf"^\| (✅ pass|⚠️ warn|❌ fail) \| \*\*{control_id}\*\* ", markdown, re.MULTILINE)
    assert row is not None, f"no summary row for {control_id} in the Markdown"
    found["md"] = row.group(1).split()[-1]
    html = reporting.render(report, "html")
    tag = re.search(rf'<tr class="(\w+)" id="control-{control_id}"><td><span class="status">(.) (\w+)</span>', html)
    assert tag is not None, f"no summary row for {control_id} in the HTML"
    assert tag.group(1) == tag.group(3) and tag.group(2) == {"pass": "✓", "warn": "!", "fail": "✗"}[tag.group(3)]
    found["html"] = tag.group(3)
    return found


def test_the_applied_database_passes_every_control_it_decides(reported: Reported):
    report = build(reported)
    found = statuses(report)
    assert {control: found[control] for control in DATABASE_CONTROLS} == dict.fromkeys(DATABASE_CONTROLS, "pass")
    assert set(found) == set(EVERY_CONTROL)
    assert report.unreadable == ()
    # The evidence behind the passes, as written in the reasons.
    assert report.control("RLS-1").reason == "enabled on all 10 declared tables"
    assert report.control("ACC-3").reason.startswith(f"{report.access.tests.cells} cells as expected")
    assert report.control("AUD-2").reason.startswith("intact: ")
    assert report.control("ENC-1").reason == "2 columns encrypted under 1 usable key; no plaintext left"
    assert report.identity.state_applied is True
    assert report.identity.applied_state_hash == report.identity.state_hash
    assert {t.name for t in report.rls.tables} == {
        "ApiKey", "AuditLog", "PerformanceMetrics", "Prompt", "PromptApproval", "PromptVersion", "Team",
        "TeamMember", "UsageAnalytics", "User",
    }  # fmt: skip
    for control in DATABASE_CONTROLS:
        assert status_in_each_format(report, control) == {"json": "pass", "md": "pass", "html": "pass"}


def test_the_lint_control_says_what_rlsctl_lint_says(reported: Reported):
    """LNT-1 passes when `rlsctl lint --live` finds nothing, warns on warnings, fails on errors."""
    result = cli(reported.db, "lint", "--live", "--format", "json", "--fail-on", "info")
    levels = {finding["level"] for finding in json.loads(result.stdout)["findings"]}
    expected = "fail" if "error" in levels else "warn" if "warning" in levels else "pass"
    report = build(reported)
    assert status_in_each_format(report, "LNT-1") == dict.fromkeys(("json", "md", "html"), expected)
    assert len(report.findings.suppressed) == len(json.loads(result.stdout)["suppressed"]) > 0


def test_server_settings_are_reported_as_they_are(reported: Reported):
    """This development server (trust authentication, no TLS, no statement log) fails those controls."""
    facts = server_facts()
    report = build(reported)
    found = statuses(report)
    checks = {check.id: check for check in report.server.checks}
    if facts["trust"]:
        assert found["SRV-1"] == "fail"
        assert "trust" in report.control("SRV-1").reason
        assert checks["5.2"].status == "fail" or checks["5.1"].status == "fail"
    if facts["ssl"] == "off":
        assert found["SRV-2"] == "fail"
        assert checks["6.8"].status == "fail" and checks["6.8"].detail == "ssl = 'off'"
    if facts["log_statement"] == "none":
        assert found["SRV-3"] == "fail"
        assert checks["3.1.25"].detail.startswith("log_statement = 'none'")
    # Nothing but the bootstrap superuser holds administrative attributes among this database's roles.
    assert found["SRV-4"] == "pass"
    assert [(role.name, role.bootstrap) for role in report.server.privileged_roles] == [("postgres", True)]
    assert report.server.hba is not None and report.server.hba, "a superuser reads pg_hba.conf"
    assert "pgcrypto" in report.server.extensions and checks["6.9"].status == "pass"
    assert checks["4.5"].status == "pass" and checks["4.8"].status == "pass"


def test_retention_that_never_ran_warns(reported: Reported):
    control = reported.before_retention.control("RET-1")
    assert control.status == "warn"
    assert control.reason == "3 tables declare retention, but it never ran here and no pg_cron job runs it"


def test_a_database_nothing_was_applied_to_passes_no_rls_control(make_db):
    """Before migrate and apply there is nothing to pass on: RLS warns, drift fails, nothing breaks."""
    database = make_db()
    with database.connect() as conn:
        report = reporting.build(conn, database.project(), database.target.where)
    found = statuses(report)
    assert found["RLS-1"] == found["RLS-2"] == "warn"
    assert report.control("RLS-1").reason == "no declared table exists here yet (rlsctl migrate, then rlsctl apply)"
    assert found["ACC-2"] == "fail"
    assert report.rls.tables == () and len(report.rls.pending) == 10
    assert list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(json.loads(reporting.render(report, "json")))) == []


# -- planted problems -------------------------------------------------------------------------------------


@contextmanager
def executed(database: TestDatabase, plant: str, undo: str) -> Iterator[None]:
    names = {"app": sql.Identifier(database.role("app"))}
    with database.connect() as conn:
        conn.execute(sql.SQL(plant).format(**names))
    try:
        yield
    finally:
        with database.connect() as conn:
            conn.execute(sql.SQL(undo).format(**names))


@contextmanager
def audit_row_edited(database: TestDatabase) -> Iterator[None]:
    """One AuditLog row changed with the triggers off (a superuser's replica session), then put back."""
    with database.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        row = conn.execute('SELECT id, "resourceId" FROM "AuditLog" ORDER BY "chainSeq" LIMIT 1').fetchone()
        assert row is not None, "apply records itself in the audit log"
        conn.execute('UPDATE "AuditLog" SET "resourceId" = %s WHERE id = %s', ("tampered", row[0]))
    try:
        yield
    finally:
        with database.connect() as conn, conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute('UPDATE "AuditLog" SET "resourceId" = %s WHERE id = %s', (row[1], row[0]))


PLANTS = {
    # name -> (what is done and undone, the control it fails, words its reason must hold)
    "rls disabled": (('ALTER TABLE "Prompt" DISABLE ROW LEVEL SECURITY', 'ALTER TABLE "Prompt" ENABLE ROW LEVEL SECURITY'),
                     "RLS-1", "RLS is disabled on Prompt"),
    "unforced table": (('ALTER TABLE "Team" NO FORCE ROW LEVEL SECURITY', 'ALTER TABLE "Team" FORCE ROW LEVEL SECURITY'),
                       "RLS-2", "RLS is not forced on Team"),
    "role given BYPASSRLS": (("ALTER ROLE {app} BYPASSRLS", "ALTER ROLE {app} NOBYPASSRLS"),
                             "RLS-3", "app (BYPASSRLS) bypass every policy"),
    "broken audit chain": (None, "AUD-2", "chain BROKEN at row "),
}  # fmt: skip


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_planted_problem_fails_its_control_in_every_format(reported: Reported, plant: str):
    statements, control, words = PLANTS[plant]
    planted = audit_row_edited(reported.db) if statements is None else executed(reported.db, *statements)
    with planted:
        report = build(reported)
    assert status_in_each_format(report, control) == {"json": "fail", "md": "fail", "html": "fail"}
    assert words in report.control(control).reason
    assert report.status == "fail"


def test_a_failing_policy_test_fails_its_control_in_every_format(reported: Reported, tmp_path: Path):
    document = json.loads(reported.tests_file.read_text())
    cell = next(c for c in document["cells"] if c["table"] == "Prompt" and c["command"] == "delete"
                and c["principal"] == "outsider" and c["expected"] == "denied")  # fmt: skip
    cell.update(actual="allowed", actual_detail="1 row", ok=False)
    document["summary"]["mismatches"] = 1
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(document))
    report = build(reported, failing)
    assert status_in_each_format(report, "ACC-3") == {"json": "fail", "md": "fail", "html": "fail"}
    assert report.control("ACC-3").reason.startswith("1 mismatching cells, 0 invariant violations, 0 failing cases")
    assert report.access.tests is not None
    assert report.access.tests.problems[0] == (
        f"Prompt DELETE {cell['case']} as outsider: expected denied, database gave 1 row"
    )
    # The grid draws it: the outsider's DELETE cell of Prompt holds the mismatch, with its symbol.
    grid = next(g for g in report.access.tests.grids if g.table == "Prompt")
    row = next(r for r in grid.rows if r.principal == "outsider")
    assert [(c.command, c.mismatches) for c in row.cells] == [("select", 0), ("insert", 0), ("update", 0),
                                                              ("delete", 1)]  # fmt: skip
    assert re.search(r'<td class="cell bad" title="1 not as expected">✗ \d+/\d+</td>', reporting.render(report, "html"))
    assert re.search(r"^\| outsider \| ✓ \S+ \| ✓ \S+ \| ✓ \S+ \| ✗ \d+/\d+ \|$", reporting.render(report, "md"),
                     re.MULTILINE)  # fmt: skip


# -- the same state, the same report ---------------------------------------------------------------------


def without_volatile(fmt: str, text: str) -> str:
    """A report without its generation time and its monitoring section (marked volatile)."""
    if fmt == "json":
        document = json.loads(text)
        assert document["monitoring"]["volatile"] is True
        del document["monitoring"], document["identity"]["generated_at"]
        return json.dumps(document, sort_keys=True)
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    if fmt == "md":
        head, _, rest = text.partition("## 7. Monitoring")
        _, _, tail = rest.partition("## 8. Server settings")
        return stamp.sub("T", head.replace(re.findall(r"^Generated .*$", head, re.MULTILINE)[0], "") + tail)
    head, _, rest = text.partition('<section class="volatile">')
    _, _, tail = rest.partition("</section>")
    return re.sub(r"<dt>Generated</dt><dd>[^<]*</dd>", "", re.sub(r"Generated \S+ by", "", head + tail))


def test_two_reports_of_one_state_differ_only_in_time_and_monitoring(reported: Reported):
    first, second = build(reported), build(reported)
    assert first.monitoring.volatile is True
    for fmt in ("json", "md", "html"):
        texts = [reporting.render(report, fmt) for report in (first, second)]
        assert without_volatile(fmt, texts[0]) == without_volatile(fmt, texts[1]), fmt


# -- the JSON Schema -------------------------------------------------------------------------------------


def test_the_json_validates_against_the_published_schema(reported: Reported, tmp_path: Path):
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert reporting.schema_path() == ROOT / "rlsctl" / "report" / "report.schema.json"
    validator = jsonschema.Draft202012Validator(SCHEMA)
    result = cli(reported.db, "report", "--format", "json", "--tests", str(reported.tests_file))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(validator.iter_errors(document)) == []
    assert document["format"] == "rlsctl-report/1" and document["status"] == "fail"
    # Without tests the section is null, and the schema says so; a wrong document fails it.
    bare = json.loads(reporting.render(reported.before_retention, "json"))
    assert bare["access"]["tests"] is None and list(validator.iter_errors(bare)) == []
    bare["controls"][0]["status"] = "passed"
    assert not validator.is_valid(bare)


# -- a role that is not superuser ---------------------------------------------------------------------------


def test_a_role_without_privileges_gets_a_report_naming_what_it_could_not_read(reported: Reported):
    reviewer = reported.db.role("reviewer")
    with reported.db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reviewer)))
    result = cli(reported.db, "report", "--format", "json", dsn=f"{reported.db.dsn} user={reviewer}")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(document)
    assert document["identity"]["connected_as"] == reviewer
    unread = {(note["section"], note["what"]) for note in document["unreadable"]}
    assert {
        ("server", "pg_hba_file_rules"),
        ("server", "setting shared_preload_libraries"),
        ("encryption", "data keys and their use (as the keys role)"),
        ("retention-audit", "audit chain (rlsctl audit verify)"),
        ("retention-audit", "retention holds and runs"),
    } <= unread
    found = {c["id"]: c for c in document["controls"]}
    for control in ("ENC-1", "AUD-2", "RET-1"):
        assert found[control]["status"] == "warn" and found[control]["reason"].startswith(
            "not evaluated: could not read"
        )
    checks = {c["id"]: c["status"] for c in document["server"]["checks"]}
    assert checks["5.1"] == checks["5.2"] == checks["5.3"] == "unknown"
    assert document["server"]["hba"] is None
    # What every role may read is still there.
    assert found["RLS-1"]["status"] == found["RLS-2"]["status"] == found["RLS-3"]["status"] == "pass"
    markdown = cli(reported.db, "report", dsn=f"{reported.db.dsn} user={reviewer}").stdout
    assert f"> **Could not read** (as {md(reviewer)}):" in markdown
    assert "> - pg\\_hba\\_file\\_rules: permission denied (superusers only by default)" in markdown


# -- the command line ----------------------------------------------------------------------------------------


def test_fail_on_decides_the_exit_status(reported: Reported):
    tests = ["--tests", str(reported.tests_file), "--format", "json"]
    assert cli(reported.db, "report", *tests).exit_code == 0  # --fail-on never, by default
    # This server fails its server controls (SRV-2: no TLS), so fail and warn both exit 1.
    assert server_facts()["ssl"] == "off"
    assert cli(reported.db, "report", *tests, "--fail-on", "fail").exit_code == 1
    assert cli(reported.db, "report", *tests, "--fail-on", "warn").exit_code == 1


def test_run_tests_runs_the_policy_tests_now(reported: Reported):
    result = cli(reported.db, "report", "--format", "json", "--run-tests")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    tests = document["access"]["tests"]
    assert tests["source"] == "run now" and tests["mismatches"] == 0 and tests["cells"] > 7000
    assert {c["id"]: c["status"] for c in document["controls"]}["ACC-3"] == "pass"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tests", "/nonexistent/tests.json"], "error: --tests /nonexistent/tests.json: No such file or directory"),
        (["--tests", "NOTJSON"], "error: --tests NOTJSON: not JSON (Expecting value, line 1)"),
        (
            ["--tests", "OTHER"],
            "error: --tests OTHER: not the output of `rlsctl test --format json` (no list of cells)",
        ),
        (["--tests", "OTHER", "--run-tests"], "error: give --tests FILE or --run-tests, not both"),
        (["-o", "/nonexistent/dir/report.md"], "error: -o /nonexistent/dir/report.md: No such file or directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(reported: Reported, tmp_path: Path, args: list[str], message: str):
    (tmp_path / "NOTJSON").write_text("this is not json")
    (tmp_path / "OTHER").write_text(json.dumps({"findings": []}))
    named = [str(tmp_path / a) if a in ("NOTJSON", "OTHER") else a for a in args]
    result = cli(reported.db, "report", *named)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == message.replace("NOTJSON", str(tmp_path / "NOTJSON")).replace("OTHER", str(tmp_path / "OTHER"))


def test_an_unknown_format_is_a_usage_error(reported: Reported):
    result = cli(reported.db, "report", "--format", "pdf")
    assert result.exit_code == 2 and "'pdf' is not one of 'md', 'html', 'json'" in result.stderr


# -- escaping ----------------------------------------------------------------------------------------------


def test_names_are_escaped_in_markdown_and_html(reported: Reported):
    hostile = "x<script>alert(1)</script>|*y*"
    with reported.db.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(hostile)))
    try:
        report = build(reported)
    finally:
        with reported.db.connect() as conn:
            conn.execute(sql.SQL("DROP TABLE public.{}").format(sql.Identifier(hostile)))
    assert any(table.name == hostile and not table.declared for table in report.rls.tables)
    html = reporting.render(report, "html")
    assert "<script>" not in html and "x&lt;script&gt;alert(1)&lt;/script&gt;|*y*" in html
    markdown = reporting.render(report, "md")
    assert "<script>" not in markdown and "x\\<script\\>alert(1)\\</script\\>\\|\\*y\\*" in markdown


def test_markdown_filters():
    assert md("a_b | `c` <d>\n e") == "a\\_b \\| \\`c\\` \\<d\\> e"
    assert code("x = 'y'") == "`x = 'y'`"
    assert code("a | b") == "`a \\| b`"
    assert code("has `ticks`") == "`` has `ticks` ``"


# -- the HTML in a browser -------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
SCREENSHOT = ROOT / "docs" / "report-screenshot.png"


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of pixel bytes, bytes per pixel) of an 8-bit RGB or RGBA PNG, with the
    standard library only: the chunks, zlib, and the five row filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed, header = 8, b"", b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format (depth {depth}, colour type {colour})"
    step = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(compressed), width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                near = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[i] = (line[i] + near[2]) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, rows, step


def pixels_of(png: bytes) -> tuple[int, int, dict[tuple[int, ...], int]]:
    """(width, height, how many pixels of each colour)."""
    width, height, rows, step = decode_png(png)
    counts: dict[tuple[int, ...], int] = {}
    for row in rows:
        for x in range(0, len(row), step):
            pixel = tuple(row[x : x + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
    return width, height, counts


def assert_a_page_not_blank(png: bytes) -> None:
    """Text (dark pixels), many colours (anti-aliasing, the status colours), the pass and fail backgrounds."""
    width, height, counts = pixels_of(png)
    assert (width, height) == (1280, 2000)
    assert len(counts) > 100, f"only {len(counts)} colours: a blank page"
    dark = sum(n for colour, n in counts.items() if sum(colour) < 200)
    assert dark > width * height // 200, f"only {dark} dark pixels: no text"
    assert counts.get((0xDA, 0xFB, 0xE1), 0) > 1000, "no pass background (#dafbe1) in the summary"
    assert counts.get((0xFF, 0xEB, 0xE9), 0) > 1000, "no fail background (#ffebe9) in the summary"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None, "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=180, check=True)


@pytest.mark.slow
def test_the_html_report_renders_and_prints_in_chromium(reported: Reported, tmp_path: Path):
    page = tmp_path / "report.html"
    result = cli(reported.db, "report", "--format", "html", "-o", str(page), "--tests", str(reported.tests_file))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    # One file: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in html and not re.search(r"""(src|href)=["'](https?:|//|file:)""", html)
    assert "<svg" in html and "@page { size: A4" in html
    url = page.as_uri()

    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000", url)
    assert_a_page_not_blank(screenshot.read_bytes())
    if os.environ.get("RLSCTL_UPDATE_SCREENSHOT"):  # how docs/report-screenshot.png is made
        shutil.copyfile(screenshot, SCREENSHOT)

    pdf = tmp_path / "report.pdf"
    chromium(tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url)
    printed = pdf.read_bytes()
    assert printed.startswith(b"%PDF")
    boxes = {tuple(float(n) for n in box.split()) for box in re.findall(rb"/MediaBox \[0 0 ([\d.]+ [\d.]+)\]", printed)}
    assert boxes and all(abs(w - 595) < 2 and abs(h - 842) < 2 for w, h in boxes), f"not A4: {boxes}"

    dom = chromium(tmp_path, "--dump-dom", url).stdout.decode()
    headings = re.findall(r'<h2 id="[a-z-]+">([^<]+)</h2>', dom)
    assert headings == list(SECTION_TITLES)
    assert 'id="control-RLS-1"' in dom and 'class="grid keep"' in dom


def test_the_checked_in_screenshot_is_a_rendered_report():
    assert_a_page_not_blank(SCREENSHOT.read_bytes())
    assert (
        "![" in (ROOT / "docs" / "report.md").read_text()
        and "(report-screenshot.png)" in (ROOT / "docs" / "report.md").read_text()
    )
