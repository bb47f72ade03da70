"""Where logins that do not need the key-encryption key can read it, as far as this session can see.

A custom setting is readable by every login that has it: postgresql.conf and ALTER SYSTEM
give it to every session (`SHOW`), and ALTER DATABASE/ROLE ... SET store it in a catalog
every login reads (pg_db_role_setting). A key file inside the data directory travels with
every base backup. Read by `rlsctl keys status` and the live lint (SEC018).
"""

from __future__ import annotations

import psycopg

from rlsctl.pg import statements

# pg_settings sources that are this session's own (PGOPTIONS, SET) or no value at all.
PRIVATE_SOURCES = ("client", "session", "default", "override")


def setting_exposure(conn: psycopg.Connection, setting: str) -> list[str]:
    """Each place from which every login (or every login of a database or role) reads `setting`."""
    found = [
        f"{setting} is in {row['place']}: every login reads it in pg_db_role_setting"
        for row in statements.run(conn, "kek_in_role_settings", setting=setting)
    ]
    try:
        with conn.transaction():
            places = [row["place"] for row in statements.run(conn, "kek_in_server_config", setting=setting)]
        found += [f"{setting} is set in {place}: every login can SHOW it" for place in places]
    except psycopg.errors.InsufficientPrivilege:
        # pg_file_settings is for superusers and pg_read_all_settings: this session's source instead.
        source = statements.run(conn, "kek_setting_source", setting=setting)
        if source and source[0]["source"] not in PRIVATE_SOURCES:
            found.append(f"{setting} comes from the server's {source[0]['source']}: every login can SHOW it")
    return found


def file_exposure(conn: psycopg.Connection, path: str) -> list[str]:
    """A key file inside the data directory (when this session may see where that is)."""
    try:
        with conn.transaction():
            data = statements.run(conn, "data_directory")[0]["path"]
    except psycopg.errors.InsufficientPrivilege:
        return []  # only superusers and pg_read_all_settings see the data directory
    if path.startswith(data.rstrip("/") + "/"):
        return [f"the key file {path} is inside the data directory {data}: every base backup carries it"]
    return []


def identity_settings(conn: psycopg.Connection) -> list[str]:
    """Custom settings named like a session identity (`*.user_id`, ...), set anywhere this session sees."""
    return [row["name"] for row in statements.run(conn, "identity_setting_names")]


def key_settings(conn: psycopg.Connection) -> list[str]:
    """Custom settings named like a key-encryption key (`*.master_key`), set anywhere this session sees."""
    return [row["name"] for row in statements.run(conn, "kek_setting_names")]
