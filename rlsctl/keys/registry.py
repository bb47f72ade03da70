"""The key store's registry of columns ever encrypted, and key retirement.

A key may be erased only when no value can still need it: every column that
ever held ciphertext is counted, declared or not (docs/encryption.md).
"""

from __future__ import annotations

from psycopg.rows import dict_row

from rlsctl.errors import RetireBlocked, UsageError
from rlsctl.keys.session import Column, Keys, KeysRun
from rlsctl.pg import statements


def recorded(keys: Keys) -> list[tuple[str, str]]:
    if not statements.run(keys.conn, "key_registry_exists", schema=keys.state.helper_schema)[0]["found"]:
        return []
    with keys.as_keys_role(10.0) as conn:
        return [(row[0], row[1]) for row in conn.execute(keys.sql("keys_recorded")).fetchall()]


def every_column(keys: Keys) -> list[Column]:
    """Every column that may hold ciphertext, declared encrypted or decrypting.

    The key store records every column ever encrypted. One that is no longer
    declared (dropped from `encrypted:` without the `decrypting:` step, or
    renamed by a migration) may still hold ciphertext that only rlsctl's keys
    open: then nothing may be retired, and this says which column and what to do.
    """
    declared = [*keys.columns(), *keys.columns(decrypting=True)]
    labels = {column.label for column in declared}
    for table, name in recorded(keys):
        label = f"{table}.{name}"
        if label in labels:
            continue
        if keys.schema.has_column(table, name):
            fix = "declare it `decrypting:`, run rlsctl apply and rlsctl keys decrypt, then retire"
        else:
            fix = (
                f"if it was renamed, declare the new name encrypted (or decrypting) and apply, after moving "
                f"its record with `rlsctl keys forget {label} --renamed-to {table}.NEW_NAME`; if its data "
                f"is gone, `rlsctl keys forget {label}`"
            )
        raise RetireBlocked(
            f"{keys.where}: {label} was encrypted (recorded in {keys.state.helper_schema}.encrypted_column) "
            f"but is no longer declared, so its values may still need the older keys: {fix}; "
            "no key was retired"
        )
    return declared


def forget_decrypted(keys: Keys, columns: list[Column]) -> None:
    """Columns `keys decrypt` finished hold no ciphertext any more: their record goes, in one
    statement that checks it again (a value encrypted meanwhile keeps the record)."""
    if not columns or not recorded(keys):
        return
    tables = tuple(sorted({column.table for column in columns}))
    with keys.as_keys_role(10.0, tables=tables) as conn:
        for column in columns:
            conn.execute(keys.sql("keys_forget_decrypted", table=column.table, column=column.column, kind=column.kind))


def forget_vanished(keys: Keys, label: str) -> bool:
    """The record of a column that no longer exists (its data is gone with it). Refuses a column
    that exists: only `keys decrypt` may clear one of those, by proving it holds no ciphertext."""
    table, _, name = label.partition(".")
    if (table, name) not in recorded(keys):
        raise UsageError(f"{keys.where}: {label} is not recorded as encrypted: nothing to forget")
    if keys.schema.has_column(table, name):
        raise UsageError(
            f"{keys.where}: {label} still exists and may hold ciphertext: declare it `decrypting:`, run "
            "rlsctl apply and rlsctl keys decrypt (which forgets it once no value is encrypted)"
        )
    with keys.as_keys_role(10.0) as conn:
        conn.execute(keys.sql("keys_forget"), {"table": table, "column": name})
    return True


def move_record(keys: Keys, label: str, renamed_to: str) -> None:
    """A recorded column renamed outside rlsctl: its record follows it, so declaring the new
    name encrypted is not a first encryption (whose look-alike check would refuse the real
    ciphertext)."""
    table, _, name = label.partition(".")
    new_table, _, new_name = renamed_to.partition(".")
    if (table, name) not in recorded(keys):
        raise UsageError(f"{keys.where}: {label} is not recorded as encrypted: nothing to move")
    if keys.schema.has_column(table, name):
        raise UsageError(f"{keys.where}: {label} still exists: it was not renamed")
    if not keys.schema.has_column(new_table, new_name):
        raise UsageError(f"{keys.where}: {renamed_to} does not exist: name the column it was renamed to")
    with keys.as_keys_role(10.0) as conn:
        moved = {"table": table, "column": name, "new_table": new_table, "new_column": new_name}
        conn.execute(keys.sql("keys_move_record"), moved)


def retire_unused(keys: Keys) -> tuple[str, ...]:
    """Erase the wrapped bytes of older keys no value uses.

    The candidates are the keys already inactive *before* the count starts.
    A key becomes inactive only when a rotation commits, and the rotation
    first waits for every transaction writing with it (the key lock,
    crypto.sql.j2); afterwards nothing writes with it (ciphertext written as
    a value is refused, REPEATABLE READ writers fail to serialize). So the
    count, which starts later, sees every value under a candidate, and a
    rotation that commits during the count cannot make its key a candidate
    by mistake. Every column that ever held ciphertext is counted, the
    declared ones and the ones recorded in the key store's registry.
    """
    columns = every_column(keys)
    with keys.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
        candidates = [row["id"] for row in cur.execute(keys.sql("keys_list")).fetchall()
                      if not row["active"] and not row["retired"]]  # fmt: skip
    if not candidates:
        return ()
    tables = tuple(sorted({column.table for column in columns}))
    with keys.as_keys_role(10.0, tables=tables) as conn, conn.cursor(row_factory=dict_row) as cur:
        usage = cur.execute(keys.sql("keys_usage", columns=columns)).fetchall() if columns else []
        in_use = sorted({row["key_id"] for row in usage if row["key_id"] is not None})
        retired = cur.execute(keys.sql("keys_retire"), {"candidates": candidates, "in_use": in_use}).fetchall()
    return tuple(row["id"] for row in retired)


# -- the commands --------------------------------------------------------------------------------


def retire(keys: Keys) -> KeysRun:
    keys.check_master_key()
    run = KeysRun("retire", keys.active_key())
    with keys.exclusive("retire"):
        run.retired = retire_unused(keys)
    return run


def forget(keys: Keys, label: str, renamed_to: str | None = None) -> None:
    """Drop the record of an encrypted column that no longer exists, or move it to the name
    the column was renamed to (docs/encryption.md)."""
    with keys.exclusive("forget"):
        if renamed_to is None:
            forget_vanished(keys, label)
        else:
            move_record(keys, label, renamed_to)
