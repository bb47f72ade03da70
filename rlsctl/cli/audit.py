"""`rlsctl audit ...`: verify the audit log's hash chain and export its head (library: rlsctl/audit/)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rlsctl.cli.options import handle_errors, load_project_option, options_dsn, options_project

if TYPE_CHECKING:
    from rlsctl.audit import Verdict

HEX_HEAD = re.compile(r"^[0-9a-f]{64}$")
SHOWN_BREAKS = 10


@click.group(name="audit")
def audit_group() -> None:
    """Verify the audit log's hash chain, seal its rows into one order, export its head (docs/audit.md)."""


@audit_group.command()
@options_dsn
@options_project
@click.option(
    "--expect-head",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="A head `rlsctl audit export-head` wrote earlier ('-': stdin): the chain must still hold it.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def verify(dsn: str | None, project: str | None, role_prefix: str | None, expect_head: str | None, fmt: str) -> None:
    """Check every row of the audit log against its hash chain; exit 1 naming the first broken row."""
    from rlsctl import audit
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    expected = _read_head(expect_head) if expect_head is not None else None
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        verdict, _ = audit.verify(conn, loaded, None if expected is None or "bare" in expected else expected)
    bare = expected is not None and "bare" in expected
    mismatch = bare and expected is not None and expected["bare"] != verdict.head
    _report(verdict, target.where, fmt, bare_mismatch=mismatch)
    if not verdict.ok or mismatch:
        sys.exit(1)


@audit_group.command()
@options_dsn
@options_project
@handle_errors
def seal(dsn: str | None, project: str | None, role_prefix: str | None) -> None:
    """Put every committed row of the audit log into its one order (as the owner role); run it often."""
    from rlsctl import audit
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        sealed = audit.seal(conn, loaded)
    click.echo(f"sealed {sealed} row{'s' if sealed != 1 else ''} into the order on {target.where}")


@audit_group.command("export-head")
@options_dsn
@options_project
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write the head (JSON); '-' is stdout, e.g. for a CI artifact.",
)
@handle_errors
def export_head(dsn: str | None, project: str | None, role_prefix: str | None, output: str) -> None:
    """Seal, verify the chain, then write its head for safekeeping outside the database (exit 1: broken, nothing
    written)."""
    from rlsctl import audit
    from rlsctl.cli import output as cli_output
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        verdict, document = audit.export_head(conn, loaded, target.where)
    if not verdict.ok:
        _report(verdict, target.where, "text", to_stderr=True)
        sys.exit(1)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output == "-":
        sys.stdout.write(text)
    else:
        cli_output.write_file(Path(output), text, "-o", say=False)
        click.echo(f"head {verdict.head} of {verdict.log} ({verdict.rows} rows) written to {output}", err=True)


def _read_head(path: str) -> dict[str, Any]:
    """A head export-head wrote (JSON), or the bare head hash it prints."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"--expect-head {path}: {exc.strerror or exc}") from None
    text = text.strip()
    if HEX_HEAD.match(text):
        return {"bare": text}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise click.ClickException(f"--expect-head {path}: neither a head export-head wrote nor a head hash") from None
    lanes = data.get("lanes") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != "rlsctl-audit-head/1" or not isinstance(lanes, list):
        raise click.ClickException(f"--expect-head {path}: not a head written by rlsctl audit export-head")
    return data


def _report(verdict: Verdict, where: str, fmt: str, bare_mismatch: bool = False, to_stderr: bool = False) -> None:
    if fmt == "json":
        from rlsctl.cli import output

        output.emit_json(_as_json(verdict, where, bare_mismatch))
        return
    lines = _text(verdict, where, bare_mismatch)
    click.echo("\n".join(lines), err=to_stderr)


def _text(verdict: Verdict, where: str, bare_mismatch: bool) -> list[str]:
    lanes = f"{len(verdict.heads)} lane{'s' if len(verdict.heads) != 1 else ''}"
    # Off each lane's old end (its checkpoint), and ahead of an older row a hold keeps (audit_trimmed).
    trimmed = sum(checkpoint.removed for checkpoint in verdict.checkpoints) + verdict.trimmed
    scope = f"{verdict.rows} rows in {lanes}" + (f", {trimmed} trimmed by retention" if trimmed else "")
    first = verdict.first
    if first is None:
        lines = [f"{verdict.log} on {where}: chain intact ({scope})"]
    else:
        lines = [f"{verdict.log} on {where}: chain BROKEN at {first.row}: {first.detail}"]
        lines += [f"  also {b.row}: {b.detail}" for b in verdict.breaks[1:SHOWN_BREAKS]]
        if len(verdict.breaks) > SHOWN_BREAKS:
            lines.append(f"  and {len(verdict.breaks) - SHOWN_BREAKS} more ({scope})")
    if verdict.order is not None:
        lines.append(f"  order: {verdict.sealed} rows sealed, up to position {verdict.order.pos}"
                     + (f"; {verdict.pending} committed since the last seal (rlsctl audit seal)" if verdict.pending
                        else ""))  # fmt: skip
    lines += [f"  note: {note}" for note in verdict.notes]
    if bare_mismatch:
        lines.append("  the head differs from the one expected (a bare hash only matches a chain nothing was added to)")
    lines.append(f"head {verdict.head}")
    return lines


def _order_json(verdict: Verdict) -> dict[str, Any] | None:
    if verdict.order is None:
        return None
    return {"pos": verdict.order.pos, "hash": verdict.order.hash, "sealed": verdict.sealed, "pending": verdict.pending}


def _as_json(verdict: Verdict, where: str, bare_mismatch: bool) -> dict[str, Any]:
    return {
        "log": verdict.log,
        "database": where,
        "ok": verdict.ok and not bare_mismatch,
        "rows": verdict.rows,
        "head": verdict.head,
        "lanes": [[head.lane, head.seq, head.hash] for head in verdict.heads],
        "checkpoints": [[c.lane, c.seq, c.hash.hex(), c.removed, c.cutoff] for c in verdict.checkpoints],
        "order": _order_json(verdict),
        "breaks": [
            {"kind": b.kind, "row": b.id, "seq": b.seq, "lane": b.lane, "detail": b.detail} for b in verdict.breaks
        ],
        "notes": list(verdict.notes),
        "expected_head_matches": None if not bare_mismatch else False,
    }
