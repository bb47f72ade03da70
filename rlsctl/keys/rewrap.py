"""Rotating the key-encryption key: every data key wrapped under the next one, then the old one dropped.

`rewrap` (with the current key-encryption key as usual and the next one in this session's
`<setting>_new`, through PGOPTIONS) wraps every usable data key under the next key as well,
in one transaction, verified before it commits. Until `rewrap --finish`, either key
decrypts: servers pick up a reloaded setting (or read a replaced key file) one backend at a
time. `--finish`, once this session's key-encryption key is the next one, keeps only the new
wrappings; afterwards the old key unwraps nothing. Values are never re-encrypted: only the
data keys' wrappings change (docs/encryption.md, "Rotating the key-encryption key").
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import errors as pgerrors
from psycopg.rows import dict_row

from rlsctl.errors import UsageError
from rlsctl.keys.session import Keys, first_line


@dataclass(frozen=True)
class RewrapRun:
    """What one `keys rewrap` (or `--finish`) did."""

    finished: bool
    keys: int  # data keys wrapped under the next key-encryption key (or moved to it)
    checked_values: dict[str, int]  # per encrypted column: values decrypted through the new wrappings


def rewrap(keys: Keys) -> RewrapRun:
    keys.check_master_key()
    encryption = keys.encryption
    new_setting = encryption.new_master_key_setting
    columns = [*keys.columns(), *keys.columns(decrypting=True)]
    tables = tuple(sorted({column.table for column in columns}))
    context = {"new_setting": new_setting, "crypto_schema": encryption.crypto_schema}
    rewrapping = keys.exclusive("rewrap")
    with rewrapping, keys.as_keys_role(10.0, tables=tables) as conn, conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(keys.sql("keys_rewrap_check", **context)).fetchone()
        assert found is not None
        if not found["present"]:
            raise UsageError(
                f"{keys.where}: the next key-encryption key {new_setting} is not set for this session: give it "
                f"with PGOPTIONS='-c {new_setting}=...' (never in a statement); nothing was changed"
            )
        if not found["strong"]:
            raise UsageError(f"{keys.where}: {new_setting} is shorter than 32 characters; nothing was changed")
        if not found["differs"]:
            raise UsageError(f"{keys.where}: {new_setting} is the current key-encryption key; nothing was changed")
        wrapped = len(cur.execute(keys.sql("keys_rewrap", **context)).fetchall())
        checks = cur.execute(keys.sql("keys_rewrap_verify", columns=columns, **context)).fetchall()
        for check in checks:
            if check["mismatched"]:
                # Raising inside the transaction rolls the new wrappings back.
                raise UsageError(
                    f"{keys.where}: {check['what']}: {check['mismatched']} of {check['checked']} did not come out "
                    "the same through the new wrappings; nothing was changed"
                )
    checked = {check["what"]: int(check["checked"]) for check in checks if check["what"] != "wrappings"}
    return RewrapRun(False, wrapped, checked)


def finish(keys: Keys) -> RewrapRun:
    """Keep only the wrappings under the next key-encryption key, now this session's key."""
    encryption = keys.encryption
    context = {"crypto_schema": encryption.crypto_schema}
    with keys.exclusive("rewrap-finish"):
        with keys.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
            state = cur.execute(keys.sql("keys_rewrap_state", unwrap=False, **context)).fetchone()
        assert state is not None
        if not state["rewrapped"]:
            raise UsageError(f"{keys.where}: no key-encryption key rotation is under way (run rlsctl keys rewrap)")
        if state["missing"]:
            raise UsageError(
                f"{keys.where}: {state['missing']} data keys have no wrapping under the next key-encryption key: "
                "run rlsctl keys rewrap again (with both keys), then --finish; nothing was changed"
            )
        try:
            with keys.as_keys_role(10.0) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(keys.sql("keys_rewrap_state", unwrap=True, **context)).fetchone()
                moved = int(cur.execute(keys.sql("keys_rewrap_finish")).rowcount or 0)
                conn.execute(keys.sql("keys_verify"))  # every usable key unwraps under this session's key
        except UsageError as exc:
            raise UsageError(
                f"{keys.where}: this session's key-encryption key ({encryption.kek_mode}) is not the next one yet: "
                f"roll it out first (docs/encryption.md); nothing was changed ({exc})"
            ) from None
        except pgerrors.Error as exc:  # pragma: no cover - as_keys_role maps the key errors
            raise UsageError(f"{keys.where}: {first_line(exc)}; nothing was changed") from None
    return RewrapRun(True, moved, {})
