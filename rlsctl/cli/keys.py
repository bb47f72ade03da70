"""`rlsctl keys ...`: the command group for encryption keys and API keys (library: rlsctl/keys/)."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from rlsctl.cli.options import handle_errors, load_project_option, options_dsn, options_project

if TYPE_CHECKING:
    from rlsctl.keys import ApiKeyInfo, Keys, KeysRun, KeysStatus, Observer

DURATION = re.compile(r"^(\d+)([dh])$")


@click.group(name="keys")
def keys_group() -> None:
    """Rotate data keys, backfill or decrypt encrypted columns; create, list, revoke API keys (docs/encryption.md)."""


@contextmanager
def _keys(dsn: str | None, project: str | None, role_prefix: str | None, jobs: int = 2) -> Iterator[Keys]:
    from rlsctl.keys import Keys
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        yield Keys(conn, loaded, target.where, lambda: db.connect(target, autocommit=True), jobs)


def _batch_option(func: Any) -> Any:
    func = click.option(
        "--jobs",
        type=click.IntRange(min=1, max=32),
        default=2,
        show_default=True,
        metavar="N",
        help="Connections working on separate key ranges of a column at once.",
    )(func)
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        metavar="N",
        help="Rows per batch (default: adaptive, aiming at about 100 ms of row locks per batch).",
    )(func)


def _format_option(func: Any) -> Any:
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)(func)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Observer | None]:
    """A rich progress bar on stderr, one task per column."""
    from rlsctl.cli import output

    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=output.stderr,
        transient=False,
    ) as bar:

        def observe(label: str, rewritten: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=max(total, 1))
            bar.advance(tasks[label], rewritten)

        yield observe


@keys_group.command()
@options_dsn
@options_project
@_batch_option
@_format_option
@handle_errors
def rotate(
    dsn: str | None, project: str | None, role_prefix: str | None, batch_size: int | None, jobs: int, fmt: str
) -> None:
    """Make a new data key, re-encrypt every value under it in batches, retire unused keys (resumable)."""
    from rlsctl import keys as keying

    with _keys(dsn, project, role_prefix, jobs) as keys, _progress_bar(fmt == "text") as observer:
        run = keying.rotate(keys, observer, batch_size)
    _run_report(run, fmt)


@keys_group.command()
@click.argument("columns", nargs=-1, metavar="[TABLE.COLUMN]...")
@options_dsn
@options_project
@_batch_option
@_format_option
@handle_errors
def encrypt(
    columns: tuple[str, ...],
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    batch_size: int | None,
    jobs: int,
    fmt: str,
) -> None:
    """Backfill: encrypt existing plaintext (and values under older keys) of the declared columns."""
    from rlsctl import keys as keying

    with _keys(dsn, project, role_prefix, jobs) as keys, _progress_bar(fmt == "text") as observer:
        run = keying.encrypt(keys, columns, observer, batch_size)
    _run_report(run, fmt)


@keys_group.command()
@click.argument("columns", nargs=-1, metavar="[TABLE.COLUMN]...")
@options_dsn
@options_project
@_batch_option
@_format_option
@handle_errors
def decrypt(
    columns: tuple[str, ...],
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
    batch_size: int | None,
    jobs: int,
    fmt: str,
) -> None:
    """For a rollback: turn the ciphertext of columns declared `decrypting` back into plaintext."""
    from rlsctl import keys as keying

    with _keys(dsn, project, role_prefix, jobs) as keys, _progress_bar(fmt == "text") as observer:
        run = keying.decrypt(keys, columns, observer, batch_size)
    _run_report(run, fmt)


@keys_group.command()
@options_dsn
@options_project
@_format_option
@handle_errors
def retire(dsn: str | None, project: str | None, role_prefix: str | None, fmt: str) -> None:
    """Erase older data keys that no value uses any more."""
    from rlsctl import keys as keying

    with _keys(dsn, project, role_prefix) as keys:
        run = keying.retire(keys)
    _run_report(run, fmt)


@keys_group.command()
@options_dsn
@options_project
@click.option("--finish", is_flag=True, help="Keep only the wrappings under the new key (once every server has it).")
@_format_option
@handle_errors
def rewrap(dsn: str | None, project: str | None, role_prefix: str | None, finish: bool, fmt: str) -> None:
    """Rotate the key-encryption key: wrap every data key under the next one (given as <setting>_new).

    The current key comes as usual (the server setting or the key file), the next one in this
    session's rlsctl.master_key_new (PGOPTIONS='-c rlsctl.master_key_new=...'): never in a
    statement. Until --finish, both keys decrypt; run --finish once every server uses the next
    one (docs/encryption.md lists the steps in order).
    """
    from rlsctl.cli import output
    from rlsctl.keys import rewrap as rewrapping

    with _keys(dsn, project, role_prefix) as keys:
        run = rewrapping.finish(keys) if finish else rewrapping.rewrap(keys)
    if fmt == "json":
        output.emit_json(vars(run))
        return
    if run.finished:
        output.stdout.print(f"rewrap finished: {run.keys} data keys now wrapped only by the new key-encryption key")
        return
    output.stdout.print(f"rewrapped {run.keys} data keys under the next key-encryption key (both keys decrypt now)")
    for column, count in run.checked_values.items():
        output.stdout.print(f"  verified: {column}: {count} values decrypt the same through the new wrappings")
    output.stdout.print("next: roll the new key out to the server, then run rlsctl keys rewrap --finish")


@keys_group.command()
@options_dsn
@options_project
@click.argument("column", metavar="TABLE.COLUMN")
@click.option(
    "--renamed-to",
    metavar="TABLE.COLUMN",
    help="The column was renamed: move its record to the new name instead of dropping it.",
)
@handle_errors
def forget(dsn: str | None, project: str | None, role_prefix: str | None, column: str, renamed_to: str | None) -> None:
    """Drop the record of an encrypted column that no longer exists, so keys can be retired again."""
    from rlsctl import keys as keying
    from rlsctl.cli import output

    with _keys(dsn, project, role_prefix) as keys:
        keying.forget(keys, column, renamed_to)
    if renamed_to is None:
        output.info(f"{column}: no longer recorded as encrypted")
    else:
        output.info(f"{column}: recorded as {renamed_to} now; declare {renamed_to} encrypted and apply")


@keys_group.command()
@options_dsn
@options_project
@_format_option
@handle_errors
def status(dsn: str | None, project: str | None, role_prefix: str | None, fmt: str) -> None:
    """The data keys (ids and dates, never key bytes) and which key each encrypted value is under."""
    with _keys(dsn, project, role_prefix) as keys:
        found = keys.status()
    _status_report(found, fmt)


@keys_group.command(name="create-api-key")
@click.option("--team", "tenant", required=True, metavar="ID", help="The tenant (team) the key acts for.")
@click.option("--name", default="api key", show_default=True, help="A label for people.")
@click.option("--scope", "scopes", multiple=True, required=True, metavar="SCOPE",
              help="A scope such as prompts:read; repeat for several.")  # fmt: skip
@click.option("--expires", metavar="WHEN", help="An ISO date or time (UTC), or a duration such as 90d or 12h.")
@click.option("--as", "as_user", metavar="USER_ID",
              help="Create it as the app role with this user identity (its policies decide); "
                   "default: the team's owner.")  # fmt: skip
@options_dsn
@options_project
@handle_errors
def create_api_key(
    tenant: str,
    name: str,
    scopes: tuple[str, ...],
    expires: str | None,
    as_user: str | None,
    dsn: str | None,
    project: str | None,
    role_prefix: str | None,
) -> None:
    """Create an API key: prints the raw key once on stdout; the database keeps only its SHA-256."""
    from rlsctl import keys as keying
    from rlsctl.cli import output
    from rlsctl.pg import db

    expiry = _expiry(expires)  # a bad value is refused before anything connects
    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        raw = keying.create_api_key(conn, loaded, target.where, tenant, name, scopes, expiry, as_user)
    output.info("the raw key is shown once; store it now (only its SHA-256 is kept)")
    click.echo(raw)


@keys_group.command(name="list-api-keys")
@click.option("--team", "tenant", metavar="ID", help="Only this team's keys.")
@click.option("--as", "as_user", metavar="USER_ID",
              help="List as the app role with this user identity (its policies decide: an admin sees "
                   "the keys of their teams, anyone else none); default: as the owner role, every team's.")  # fmt: skip
@options_dsn
@options_project
@_format_option
@handle_errors
def list_api_keys(
    tenant: str | None, as_user: str | None, dsn: str | None, project: str | None, role_prefix: str | None, fmt: str
) -> None:
    """List API keys: id, team, name, scopes, dates; never the hash, never the raw key."""
    from rlsctl import keys as keying
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        found = keying.list_api_keys(conn, loaded, target.where, tenant, as_user)
    _api_keys_report(found, target.where, fmt, "the owner role" if as_user is None else repr(as_user))


@keys_group.command(name="revoke-api-key")
@click.argument("key_id", metavar="ID")
@click.option("--as", "as_user", metavar="USER_ID",
              help="Revoke as the app role with this user identity (its policies decide: only an admin of "
                   "the key's team may); default: the owner of the key's team.")  # fmt: skip
@options_dsn
@options_project
@handle_errors
def revoke_api_key(
    key_id: str, as_user: str | None, dsn: str | None, project: str | None, role_prefix: str | None
) -> None:
    """Revoke an API key: its row is deleted, so the key no longer authenticates."""
    from rlsctl import keys as keying
    from rlsctl.cli import output
    from rlsctl.pg import db

    loaded = load_project_option(project, role_prefix)
    target = db.resolve_dsn(dsn)
    with db.session(target) as conn:
        gone = keying.revoke_api_key(conn, loaded, target.where, key_id, as_user)
    label = f" ({gone.name})" if gone.name else ""
    output.stdout.print(
        f"revoked API key {output.escape(gone.id)}{output.escape(label)} of team {output.escape(gone.team)}"
    )


def _expiry(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    match = DURATION.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now + (dt.timedelta(days=amount) if unit == "d" else dt.timedelta(hours=amount))
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        hint = f"{value!r}: give an ISO date or time, or a duration such as 90d"
        raise click.BadParameter(hint, param_hint="--expires") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    if parsed <= now:
        raise click.BadParameter(f"{value!r} is in the past", param_hint="--expires")
    return parsed


# -- reports ------------------------------------------------------------------------------------------


def _api_keys_report(found: list[ApiKeyInfo], where: str, fmt: str, reader: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        output.emit_json({"database": where, "api_keys": [vars(key) for key in found]})
        return
    if not found:  # the policies decide, so "none" may mean "none that this reader may see"
        output.stdout.print(output.escape(f"{where}: no API keys that {reader} may see"))
        return
    for key in found:
        output.stdout.print(output.escape(_api_key_line(key)))


def _api_key_line(key: ApiKeyInfo) -> str:
    parts = [f"team {key.team}"]
    if key.name is not None:
        parts.append(f"name {key.name!r}")
    parts.append(f"scopes {','.join(key.scopes) or '(none)'}")
    if key.created is not None:
        parts.append(f"created {_when(key.created)}")
    parts.append(f"expires {_when(key.expires)}")
    if key.last_used is not None:
        parts.append(f"last used {_when(key.last_used)}")
    return f"{key.id}: " + ", ".join(parts)


def _when(value: dt.datetime | None) -> str:
    return "never" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _run_report(run: KeysRun, fmt: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        output.emit_json(
            {
                "action": run.action,
                "active_key": run.active_key,
                "new_key": run.new_key,
                "columns": [vars(column) for column in run.columns],
                "batches": len(run.batch_seconds),
                "p95_batch_seconds": round(run.p95_batch_seconds, 4),
                "retired": list(run.retired),
                "resumed": run.resumed,
                "retire_blocked": run.retire_blocked,
            }
        )
    else:
        if run.resumed:
            output.info(f"values were still under an older key: finishing that rotation with {run.active_key}")
        if run.new_key:
            output.info(f"new active data key: {run.new_key}")
        for column in run.columns:
            left = f", {column.remaining} left (held by other transactions: run again)" if column.remaining else ""
            output.stdout.print(
                f"{column.column}: {column.rewritten} values rewritten in {column.batches} batches{left}"
            )
        if run.batch_seconds:
            output.stdout.print(f"row locks per batch: p95 {run.p95_batch_seconds * 1000:.0f} ms")
        if run.retired:
            output.stdout.print(f"retired: {', '.join(run.retired)}")
        if run.retire_blocked:
            output.info(f"older keys kept: {run.retire_blocked}")
    sys.exit(1 if any(column.remaining for column in run.columns) else 0)


def _status_report(found: KeysStatus, fmt: str) -> None:
    from rlsctl.cli import output

    if fmt == "json":
        output.emit_json(
            {
                "keys": [vars(key) for key in found.keys],
                "usage": [{"column": c, "key": k, "values": n} for c, k, n in found.usage],
                "key_encryption_key": {
                    "mode": found.kek_mode,
                    "readable_by_every_login": list(found.kek_exposure),
                    "rewrap_pending_keys": found.rewrapping,
                },
            }
        )
        return
    output.stdout.print(f"key-encryption key: {found.kek_mode}")
    for warning in found.kek_exposure:
        output.stdout.print(f"  [bold yellow]warning:[/] {output.escape(warning)}")
    if found.rewrapping:
        output.stdout.print(
            f"  rewrap under way: {found.rewrapping} data keys also wrapped by the next key "
            "(run rlsctl keys rewrap --finish once every server has it)"
        )
    for key in found.keys:
        state = "active" if key.active else "retired" if key.retired else "usable"
        output.stdout.print(f"key {key.id}: {state}, created {key.created_at:%Y-%m-%d %H:%M}")
    for column, key_id, count in found.usage:
        output.stdout.print(f"{column}: {count} values {'in plaintext' if key_id is None else 'under ' + key_id}")
