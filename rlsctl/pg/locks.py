"""The advisory locks rlsctl takes, in one place: one class ("rlsc"), one id each.

All are per database (PostgreSQL scopes advisory locks to the current
database), in the two-int4 form, so they never collide with a one-bigint lock
an application takes.
"""

from __future__ import annotations

CLASS = 0x726C7363  # "rlsc"
APPLY = 1  # apply, migrate and rollback: one at a time (transaction lock, rlsctl/change/txn.py)
KEY = 2  # writers encrypting hold it shared, a rotation exclusively (templates/crypto.sql.j2)
KEYS_RUN = 3  # one `rlsctl keys` run at a time (session lock, rlsctl/keys/session.py)
