"""Section 8, server settings: the checks of the CIS PostgreSQL Benchmark that a connection can read,
numbered as pgdsat numbers them (its own additions to CIS marked `pgdsat`), rlsctl's own (`R.n`),
the roles holding administrative attributes, and the client authentication rules.

A role without SUPERUSER or pg_read_all_settings sees fewer settings and no pg_hba.conf: those
checks are `unknown`, and the report lists what it could not read. Which checks are covered and
which are not, and why, is in `NOT_COVERED` and docs/report.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import errors as pgerrors

from rlsctl.catalog import queries as catalog
from rlsctl.report import queries
from rlsctl.report.model import HbaRule, NotCovered, PrivilegedRole, ServerCheck, Setting

PASS, FAIL, REVIEW, UNKNOWN, NA = "pass", "fail", "review", "unknown", "n/a"
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Zulu", "Etc/Zulu", "Universal"})
WEAK_METHODS = frozenset({"trust", "password", "md5", "ident"})  # CIS 5.2: not for TCP/IP logins
LINE_PREFIX_ESCAPES = (("%m", "%t"), ("%p",), ("%d",), ("%u",), ("%a",), ("%h",))

SETTINGS = (
    "archive_mode",
    "auth_delay.milliseconds",
    "authentication_timeout",
    "debug_pretty_print",
    "debug_print_parse",
    "debug_print_plan",
    "debug_print_rewritten",
    "log_connections",
    "log_destination",
    "log_directory",
    "log_disconnections",
    "log_error_verbosity",
    "log_file_mode",
    "log_hostname",
    "log_line_prefix",
    "log_min_duration_statement",
    "log_min_error_statement",
    "log_min_messages",
    "log_parameter_max_length",
    "log_parameter_max_length_on_error",
    "log_replication_commands",
    "log_statement",
    "log_timezone",
    "log_truncate_on_rotation",
    "logging_collector",
    "password_encryption",
    "pgaudit.log",
    "pgaudit.log_parameter",
    "pgaudit.log_relation",
    "pgaudit.role",
    "shared_preload_libraries",
    "ssl",
    "ssl_min_protocol_version",
    "syslog_sequence_numbers",
    "syslog_split_messages",
    "TimeZone",
)

NOT_COVERED = (
    NotCovered(
        "1.1-1.3, 2.1-2.5",
        "Packages, service files, the data directory and file permissions",
        "on the server's host: nothing a connection can see",
    ),
    NotCovered(
        "1.4",
        "PostgreSQL is up to date",
        "needs the list of current minor releases; section 9 gives the server's version",
    ),
    NotCovered(
        "1.5, 4.7, 6.1-6.6",
        "Unused extensions, predefined roles, runtime parameter reviews",
        "reviews of intent, not of a value; this section lists the installed extensions",
    ),
    NotCovered(
        "1.6, 3.1.27, 8.1",
        "Tablespaces, logs and subdirectories outside the data directory",
        "paths on the host (data_directory is readable by superusers only)",
    ),
    NotCovered(
        "3.1.5, 3.1.8-3.1.10, 3.1.13",
        "Log file names, rotation, syslog facility and program name",
        "set by your logging policy: no value is right or wrong in itself",
    ),
    NotCovered("4.1", "sudo is configured", "the operating system"),
    NotCovered(
        "4.4",
        "Excessive DML privileges are revoked",
        "a review: section 3 lists every effective privilege; ACC-1 and ACC-2 judge them",
    ),
    NotCovered(
        "5.6, 5.8",
        "Address ranges in pg_hba.conf; superusers connecting remotely",
        "judged against your network; the rules are listed below when readable",
    ),
    NotCovered("6.7", "FIPS 140-2 OpenSSL", "how the host's OpenSSL was built"),
    NotCovered("6.10", "A data anonymisation extension", "a design choice of the application"),
    NotCovered(
        "7.1, 7.3, 7.5",
        "Replication user, base backups, streaming replication",
        "the replication topology, on the standby and backup hosts",
    ),
    NotCovered("8.2, 8.3", "pgBackRest; miscellaneous host settings", "the host"),
)


@dataclass(frozen=True)
class Inputs:
    """What the checks read."""

    settings: dict[str, str]  # name -> value, for the settings present and readable
    hidden: frozenset[str]  # settings this role may not read
    hba: tuple[HbaRule, ...] | None  # None: not readable
    privileged: tuple[PrivilegedRole, ...]
    extensions: frozenset[str]
    public_create: bool | None  # PUBLIC may CREATE in schema public (None: no such schema)
    rls_problems: tuple[str, ...] | None  # declared tables without RLS enabled and forced (None: not read)
    definer_findings: tuple[str, ...] | None  # lint's SEC001-SEC003 findings (None: lint not read)


def read_settings(conn: psycopg.Connection) -> tuple[tuple[Setting, ...], dict[str, str], frozenset[str]]:
    """Every setting the checks read: (as shown, present values, names this role may not read)."""
    rows = {row["name"]: row["setting"] for row in queries.fetch(conn, "settings", names=list(SETTINGS))}
    reads_all = bool(queries.fetch(conn, "reads_all_settings")[0]["reads_all"])
    # A core setting missing from pg_settings is one this role may not see; a missing custom
    # setting (pgaudit.*) belongs to a library that is not loaded.
    hidden = frozenset(name for name in SETTINGS if name not in rows and "." not in name and not reads_all)
    shown = tuple(Setting(name, rows.get(name), name not in hidden) for name in sorted(SETTINGS, key=str.lower))
    return shown, rows, hidden


def read_hba(conn: psycopg.Connection) -> tuple[HbaRule, ...]:
    """pg_hba.conf as loaded; raises InsufficientPrivilege for a role that may not read it."""
    return tuple(
        HbaRule(
            row["line_number"],
            row["type"],
            ",".join(row["database"] or []),
            ",".join(row["user_name"] or []),
            row["address"],
            row["auth_method"] or f"(error: {row['error']})",
        )
        for row in queries.fetch(conn, "hba_rules")
    )


def try_hba(conn: psycopg.Connection) -> tuple[HbaRule, ...] | None:
    try:
        with conn.transaction():
            return read_hba(conn)
    except pgerrors.InsufficientPrivilege:
        return None


def privileged_roles(conn: psycopg.Connection) -> tuple[PrivilegedRole, ...]:
    return tuple(PrivilegedRole(**row) for row in queries.fetch(conn, "privileged_roles"))


def public_create(conn: psycopg.Connection) -> bool | None:
    rows = queries.fetch(conn, "public_privileges", schemas=["public"])
    exists = bool(catalog.schemas(conn, ["public"]))
    if not exists:
        return None
    return any(row["kind"] == "schema" and row["privilege"] == "CREATE" for row in rows)


def connection_ssl(conn: psycopg.Connection) -> bool | None:
    rows = queries.fetch(conn, "connection_ssl")
    return bool(rows[0]["ssl"]) if rows else None


# -- the checks ---------------------------------------------------------------------------------

Verdict = tuple[str, str]  # (status, detail)


def _setting(inputs: Inputs, name: str, accepted: tuple[str, ...], want: str, otherwise: str = FAIL) -> Verdict:
    if name in inputs.hidden:
        return UNKNOWN, f"{name} is not readable by this role"
    value = inputs.settings.get(name)
    if value is None:
        return otherwise, f"{name} is not set ({want})"
    if value in accepted:
        return PASS, f"{name} = {value!r}"
    return otherwise, f"{name} = {value!r}; {want}"


def _on(name: str) -> Callable[[Inputs], Verdict]:
    return lambda inputs: _setting(inputs, name, ("on",), "should be on")


def _off(name: str) -> Callable[[Inputs], Verdict]:
    return lambda inputs: _setting(inputs, name, ("off",), "should be off")


def _syslog(name: str) -> Callable[[Inputs], Verdict]:
    def check(inputs: Inputs) -> Verdict:
        if "syslog" not in inputs.settings.get("log_destination", ""):
            return NA, "the server does not log to syslog"
        return _setting(inputs, name, ("on",), "should be on")

    return check


def _log_destination(inputs: Inputs) -> Verdict:
    value = inputs.settings.get("log_destination", "")
    return (PASS, f"log_destination = {value!r}") if value else (FAIL, "log_destination is empty: messages are lost")


def _log_directory(inputs: Inputs) -> Verdict:
    if "log_directory" in inputs.hidden:
        return UNKNOWN, "log_directory is not readable by this role"
    value = inputs.settings.get("log_directory", "")
    return (PASS, f"log_directory = {value!r}") if value else (FAIL, "log_directory is empty")


def _line_prefix(inputs: Inputs) -> Verdict:
    value = inputs.settings.get("log_line_prefix", "")
    missing = [" or ".join(choice) for choice in LINE_PREFIX_ESCAPES if not any(e in value for e in choice)]
    if not missing:
        return PASS, f"log_line_prefix = {value!r}"
    return (
        FAIL,
        f"log_line_prefix = {value!r} lacks {', '.join(missing)} (time, process, database, user, application, client)",
    )


def _log_statement(inputs: Inputs) -> Verdict:
    return _setting(inputs, "log_statement", ("ddl", "mod", "all"), "at least 'ddl' records schema and role changes")


def _log_timezone(inputs: Inputs) -> Verdict:
    return _setting(inputs, "log_timezone", tuple(UTC_ZONES), "UTC keeps log times comparable", otherwise=REVIEW)


def _pgaudit(inputs: Inputs) -> Verdict:
    preload = inputs.settings.get("shared_preload_libraries")
    logs = inputs.settings.get("pgaudit.log")
    loaded = logs is not None or (preload is not None and "pgaudit" in _libraries(preload))
    if not loaded:
        where = "" if "shared_preload_libraries" not in inputs.hidden else " (shared_preload_libraries not readable)"
        return FAIL, f"pgaudit is not loaded: no pgaudit.* settings{where}"
    if not logs or logs.strip().lower() == "none":
        return FAIL, "pgaudit is loaded but pgaudit.log = 'none': it logs nothing"
    extra = ", ".join(
        f"{name} = {inputs.settings[name]!r}"
        for name in ("pgaudit.log_parameter", "pgaudit.log_relation", "pgaudit.role")
        if name in inputs.settings
    )
    return PASS, f"pgaudit is loaded and logs {logs!r}" + (f" ({extra})" if extra else "")


def _libraries(value: str) -> set[str]:
    return {item.strip().strip('"') for item in value.split(",") if item.strip()}


def _admin_roles(inputs: Inputs) -> Verdict:
    others = [role for role in inputs.privileged if not role.bootstrap]
    bypass = [role.name for role in others if role.superuser or role.bypassrls]
    if bypass:
        return FAIL, f"SUPERUSER or BYPASSRLS held by roles with a part in this database: {', '.join(bypass)}"
    if others:
        return REVIEW, f"CREATEROLE, CREATEDB or REPLICATION held by: {', '.join(role.name for role in others)}"
    return PASS, "only the bootstrap superuser holds administrative attributes among the roles with a part here"


def _definer_functions(inputs: Inputs) -> Verdict:
    if inputs.definer_findings is None:
        return UNKNOWN, "lint could not read the catalog"
    if inputs.definer_findings:
        return FAIL, "; ".join(inputs.definer_findings)
    return (
        PASS,
        "lint (SEC001-SEC003): every SECURITY DEFINER function has a safe search_path and no EXECUTE for PUBLIC",
    )


def _rls(inputs: Inputs) -> Verdict:
    if inputs.rls_problems is None:
        return UNKNOWN, "the tables could not be read"
    if inputs.rls_problems:
        return FAIL, "; ".join(inputs.rls_problems)
    return PASS, "every declared table has row-level security enabled and forced, with its policies (section 2)"


def _extension(name: str) -> Callable[[Inputs], Verdict]:
    def check(inputs: Inputs) -> Verdict:
        if name in inputs.extensions:
            return PASS, f"{name} is installed in this database"
        return FAIL, f"{name} is not installed in this database"

    return check


def _public_schema(inputs: Inputs) -> Verdict:
    if inputs.public_create is None:
        return PASS, "there is no schema public"
    if inputs.public_create:
        return FAIL, "PUBLIC may CREATE in schema public"
    return PASS, "PUBLIC may not CREATE in schema public"


def _hba(kinds: tuple[str, ...], bad: frozenset[str]) -> Callable[[Inputs], Verdict]:
    def check(inputs: Inputs) -> Verdict:
        if inputs.hba is None:
            return UNKNOWN, "pg_hba_file_rules is not readable by this role"
        rules = [rule for rule in inputs.hba if rule.type in kinds]
        if not rules:
            return NA, f"no {'/'.join(kinds)} rule"
        weak = [
            f"line {rule.line}: {rule.type} {rule.database} {rule.user} {rule.method}"
            for rule in rules
            if rule.method in bad
        ]
        if weak:
            return FAIL, "; ".join(weak)
        return PASS, ", ".join(sorted({rule.method for rule in rules}))

    return check


def _password_complexity(inputs: Inputs) -> Verdict:
    if "shared_preload_libraries" in inputs.hidden:
        return UNKNOWN, "shared_preload_libraries is not readable by this role"
    loaded = _libraries(inputs.settings.get("shared_preload_libraries", "")) & {"passwordcheck", "credcheck"}
    if loaded:
        return PASS, f"{', '.join(sorted(loaded))} loaded"
    return FAIL, "neither passwordcheck nor credcheck is loaded"


def _auth_timeout(inputs: Inputs) -> Verdict:
    timeout = int(inputs.settings.get("authentication_timeout", "60"))
    delay = inputs.settings.get("auth_delay.milliseconds")
    problems = []
    if timeout > 60:
        problems.append(f"authentication_timeout = {timeout}s (at most 60s)")
    if delay is None or int(delay) == 0:
        problems.append("auth_delay is not loaded (or its delay is 0)")
    if problems:
        return FAIL, "; ".join(problems)
    return PASS, f"authentication_timeout = {timeout}s, auth_delay.milliseconds = {delay}"


def _ssl_clients(inputs: Inputs) -> Verdict:
    if inputs.settings.get("ssl") != "on":
        return FAIL, "ssl = 'off': every TCP/IP connection is unencrypted"
    if inputs.hba is None:
        return UNKNOWN, "pg_hba_file_rules is not readable by this role"
    plain = [
        f"line {rule.line}: {rule.type}"
        for rule in inputs.hba
        if rule.type in ("host", "hostnossl") and rule.method != "reject"
    ]
    if plain:
        return FAIL, "rules accept unencrypted TCP/IP connections: " + "; ".join(plain)
    return PASS, "every TCP/IP rule is hostssl (or reject)"


def _specific_targets(inputs: Inputs) -> Verdict:
    if inputs.hba is None:
        return UNKNOWN, "pg_hba_file_rules is not readable by this role"
    broad = [
        f"line {rule.line}"
        for rule in inputs.hba
        if rule.method != "reject" and ("all" in rule.database.split(",") or "all" in rule.user.split(","))
    ]
    if broad:
        return REVIEW, "rules for all databases or all users: " + ", ".join(broad)
    return PASS, "every rule names its databases and users"


def _tls(inputs: Inputs) -> Verdict:
    if inputs.settings.get("ssl") != "on":
        return FAIL, "ssl = 'off'"
    return _setting(inputs, "ssl_min_protocol_version", ("TLSv1.2", "TLSv1.3"), "TLS 1.2 or newer")


def _archive(inputs: Inputs) -> Verdict:
    return _setting(inputs, "archive_mode", ("on", "always"), "no WAL archive: no point-in-time recovery")


def _parameters_out_of_log(inputs: Inputs) -> Verdict:
    values = {
        name: inputs.settings.get(name) for name in ("log_parameter_max_length", "log_parameter_max_length_on_error")
    }
    wrong = [f"{name} = {value}" for name, value in values.items() if value != "0"]
    if wrong:
        return FAIL, f"{'; '.join(wrong)}: bind parameters (plaintext, raw API keys) can reach the server log"
    return PASS, "log_parameter_max_length and log_parameter_max_length_on_error are 0"


CHECKS: tuple[tuple[str, str, str, Callable[[Inputs], Verdict]], ...] = (
    ("3.1.2", "Log destinations are set", "CIS", _log_destination),
    ("3.1.3", "The logging collector is enabled", "CIS", _on("logging_collector")),
    ("3.1.4", "The log directory is set", "CIS", _log_directory),
    (
        "3.1.6",
        "Log files are readable by the server's user only",
        "CIS",
        lambda i: _setting(i, "log_file_mode", ("0600",), "should be 0600"),
    ),
    ("3.1.7", "log_truncate_on_rotation is enabled", "CIS", _on("log_truncate_on_rotation")),
    ("3.1.11", "Syslog messages are not suppressed", "CIS", _syslog("syslog_sequence_numbers")),
    ("3.1.12", "Syslog messages are not lost due to size", "CIS", _syslog("syslog_split_messages")),
    (
        "3.1.14",
        "The right messages are written to the server log",
        "CIS",
        lambda i: _setting(i, "log_min_messages", ("warning",), "CIS recommends 'warning'", otherwise=REVIEW),
    ),
    (
        "3.1.15",
        "Statements that fail are recorded",
        "CIS",
        lambda i: _setting(i, "log_min_error_statement", ("error",), "CIS recommends 'error'", otherwise=REVIEW),
    ),
    ("3.1.16", "debug_print_parse is disabled", "CIS", _off("debug_print_parse")),
    ("3.1.17", "debug_print_rewritten is disabled", "CIS", _off("debug_print_rewritten")),
    ("3.1.18", "debug_print_plan is disabled", "CIS", _off("debug_print_plan")),
    ("3.1.19", "debug_pretty_print is enabled", "CIS", _on("debug_pretty_print")),
    ("3.1.20", "Connections are logged", "CIS", _on("log_connections")),
    ("3.1.21", "Disconnections are logged", "CIS", _on("log_disconnections")),
    (
        "3.1.22",
        "log_error_verbosity is set correctly",
        "CIS",
        lambda i: _setting(i, "log_error_verbosity", ("verbose",), "CIS recommends 'verbose'", otherwise=REVIEW),
    ),
    ("3.1.23", "log_hostname is disabled", "CIS", _off("log_hostname")),
    ("3.1.24", "log_line_prefix says who, where and when", "CIS", _line_prefix),
    ("3.1.25", "Statements are logged (log_statement)", "CIS", _log_statement),
    ("3.1.26", "Log times are in UTC", "CIS", _log_timezone),
    ("3.2", "pgAudit is loaded and logs", "CIS", _pgaudit),
    ("4.2", "Excessive administrative privileges are revoked", "CIS", _admin_roles),
    ("4.3", "SECURITY DEFINER functions are safe", "CIS", _definer_functions),
    ("4.5", "Row-level security is configured", "CIS", _rls),
    ("4.6", "The set_user extension is installed", "CIS", _extension("set_user")),
    ("4.8", "The public schema is protected", "CIS", _public_schema),
    ("5.1", "Local (Unix socket) logins use a safe method", "CIS", _hba(("local",), frozenset({"trust", "password"}))),
    ("5.2", "TCP/IP logins use a safe method", "CIS", _hba(("host", "hostssl", "hostnossl"), WEAK_METHODS)),
    ("5.3", "Password complexity is enforced", "CIS", _password_complexity),
    ("5.4", "Authentication timeout and delay", "pgdsat", _auth_timeout),
    ("5.5", "Clients connect over SSL", "pgdsat", _ssl_clients),
    ("5.7", "Rules name specific databases and users", "pgdsat", _specific_targets),
    (
        "5.9",
        "Passwords are stored as SCRAM-SHA-256",
        "pgdsat",
        lambda i: _setting(i, "password_encryption", ("scram-sha-256",), "md5 hashes can be replayed"),
    ),
    ("6.8", "TLS is enabled, 1.2 or newer", "CIS", _tls),
    ("6.9", "A cryptographic extension is installed", "CIS", _extension("pgcrypto")),
    ("7.2", "Replication commands are logged", "CIS", _on("log_replication_commands")),
    ("7.4", "WAL archiving is configured", "CIS", _archive),
    ("R.1", "Bind parameters stay out of the server log", "rlsctl", _parameters_out_of_log),
)


def evaluate(inputs: Inputs) -> tuple[ServerCheck, ...]:
    return tuple(ServerCheck(check_id, title, *check(inputs), source) for check_id, title, source, check in CHECKS)
