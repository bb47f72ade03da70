"""Section 4, encryption: the declared columns, the data keys (ids and dates, never key bytes) and
which key each value is under (`rlsctl keys status`), where the key-encryption key lives and who
can read it or decrypt. Nothing here ever reads, derives or prints key material."""

from __future__ import annotations

from dataclasses import replace

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.declare.state import DeclaredState
from rlsctl.keys import Keys
from rlsctl.keys.session import kek_exposure
from rlsctl.policy.project import Project
from rlsctl.report.model import DataKey, EncryptedColumn, EncryptionSection, KeyUsage, Operation, utc_text

NOT_DECLARED = EncryptionSection(
    declared=False, kek_mode="", kek_exposure=(), readers=(), decrypt_executors=(), columns=(), keys=(), usage=(),
    rewrap_pending=0, last_rotation=None, last_rewrap=None,
)  # fmt: skip


def declared(conn: psycopg.Connection, state: DeclaredState) -> EncryptionSection:
    """What the policy files and the catalog say, and who can read the key-encryption key: the part any
    role may read, without the keys role."""
    spec = state.encryption
    if spec is None:
        return NOT_DECLARED
    executors = sorted(
        {
            role
            for fn in catalog.functions(conn, state.helper_schema)
            if fn.name == "decrypt" and not fn.from_extension
            for role in fn.executors
        }
    )
    return EncryptionSection(
        declared=True,
        kek_mode=spec.kek_mode,
        kek_exposure=tuple(sorted(kek_exposure(conn, spec))),
        readers=tuple(sorted(spec.readers)),
        decrypt_executors=tuple(executors),
        columns=tuple(
            EncryptedColumn(c.table, c.column, c.kind, c.decrypting)
            for c in sorted(spec.columns, key=lambda c: (c.table, c.column))
        ),
        keys=(),
        usage=(),
        rewrap_pending=0,
        last_rotation=None,
        last_rewrap=None,
    )


def with_keys(section: EncryptionSection, conn: psycopg.Connection, project: Project, where: str) -> EncryptionSection:
    """The keys and their use, read as the keys role (`Keys.status`: a superuser or a member of it)."""
    found = Keys(conn, project, where).status()
    keys = tuple(
        DataKey(
            key.id,
            "active" if key.active else "retired" if key.retired else "usable",
            utc_text(key.created_at),
            utc_text(key.retired_at) if key.retired_at is not None else None,
        )
        for key in found.keys
    )
    active = next((key for key in found.keys if key.active), None)
    return replace(
        section,
        kek_mode=found.kek_mode,
        kek_exposure=tuple(sorted(found.kek_exposure)),
        keys=keys,
        usage=tuple(KeyUsage(column, key, values) for column, key, values in sorted(found.usage, key=_usage_order)),
        rewrap_pending=found.rewrapping,
        last_rotation=utc_text(active.created_at) if active is not None else None,
    )


def with_operations(section: EncryptionSection, operations: tuple[Operation, ...]) -> EncryptionSection:
    """The latest `keys rewrap` (or its --finish) the audit log records: nothing else keeps that date."""
    rewraps = sorted(op.at for op in operations if op.job == "keys" and op.action in ("rewrap", "rewrap-finish"))
    return replace(section, last_rewrap=rewraps[-1] if rewraps else None)


def _usage_order(row: tuple[str, str | None, int]) -> tuple[str, str]:
    return (row[0], row[1] or "")
