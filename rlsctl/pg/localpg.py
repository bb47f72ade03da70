"""A throw-away PostgreSQL cluster from the installed binaries (initdb + pg_ctl).

Used by `rlsctl demo` (and by tests that need server settings of their own,
such as a preloaded extension). The cluster listens only on a Unix socket in
its own temporary directory, so it never competes for a TCP port. PostgreSQL
refuses to run as root: as root, the binaries run as the `postgres` user
through `runuser`, and the directory is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg import conninfo

from rlsctl.errors import UsageError
from rlsctl.pg.pgbin import bin_dir

SERVICE_USER = "postgres"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class LocalCluster:
    root: Path
    port: int
    bin: Path
    run_as: str | None  # the OS user running the server, when we are root

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def dsn(self, dbname: str = "postgres") -> str:
        return conninfo.make_conninfo(host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname)


def _command(run_as: str | None, *args: str) -> list[str]:
    if run_as is None:
        return list(args)
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", run_as, "--", *args]


def _run(run_as: str | None, *args: str) -> None:
    result = subprocess.run(_command(run_as, *args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
        raise UsageError(f"{Path(args[0]).name}: {reason}")


def _service_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise UsageError("running as root, but there is no 'postgres' user to run a throw-away server as") from None
    return SERVICE_USER


@contextmanager
def termination_unwinds() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while a cluster is up.

    By default they end Python without running `finally`, which would leave a
    server running on files in /tmp; as SystemExit they unwind like Ctrl-C.
    A signal the process ignores (started under `nohup`) is left ignored.
    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    # A signal the caller chose to ignore (`nohup rlsctl demo`) stays ignored.
    caught = [signum for signum in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(signum) != signal.SIG_IGN]

    def exit_on_signal(signum: int, _frame: object) -> None:
        # A second signal must not cut the cleanup short (a server left running,
        # its postgresql.conf with the demo's key left in /tmp): ignore the rest.
        for other in caught:
            signal.signal(other, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = {signum: signal.signal(signum, exit_on_signal) for signum in caught}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def temporary_cluster(
    settings: dict[str, str] | None = None,
    port: int = 54329,
    secret_settings: dict[str, str] | None = None,
    cron_database: str | None = None,
) -> Iterator[LocalCluster]:
    """Start a fresh cluster; stop it and delete its files on exit.

    `settings` go on the server's command line; `secret_settings` (a key-encryption
    key) into its postgresql.conf, readable only by the server's user, so they
    never show in a process listing. `cron_database`: pg_cron is preloaded and keeps
    its jobs there (it must still be created there: CREATE EXTENSION pg_cron).
    """
    binaries = bin_dir()
    if binaries is None or not (binaries / "initdb").exists():
        raise UsageError("initdb not found: install the PostgreSQL server binaries (e.g. postgresql-15)")
    run_as = _service_user()
    wanted = dict(settings or {})
    if cron_database is not None:
        wanted |= {"shared_preload_libraries": "pg_cron", "cron.database_name": cron_database}
    with termination_unwinds():
        yield from _cluster_lifetime(binaries, run_as, port, wanted, secret_settings or {})


def _cluster_lifetime(
    binaries: Path, run_as: str | None, port: int, settings: dict[str, str], secret_settings: dict[str, str]
) -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix="rlsctl-pg-"))
    if run_as is not None:
        record = pwd.getpwnam(run_as)
        os.chown(root, record.pw_uid, record.pw_gid)
    root.chmod(0o755)
    cluster = LocalCluster(root, port, binaries, run_as)
    try:
        _run(
            run_as,
            str(binaries / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        _write_settings(cluster.data / "postgresql.conf", secret_settings)
        options = ["-c listen_addresses=''", f"-k {root}", f"-p {port}", "-c fsync=off", "-c full_page_writes=off"]
        if "cron.database_name" in settings:
            # pg_cron runs each job through a libpq connection to this server: the socket, no TCP here.
            options.append(f"-c cron.host={root}")
        options += [f"-c {name}={value}" for name, value in settings.items()]
        _run(
            run_as,
            str(binaries / "pg_ctl"),
            "-D",
            str(cluster.data),
            "-l",
            str(root / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            subprocess.run(
                _command(run_as, str(binaries / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


def _write_settings(config: Path, settings: dict[str, str]) -> None:
    """Append settings to postgresql.conf (initdb made it 0600 and owned by the server's user)."""
    if not settings:
        return
    lines = [f"{name} = '{value}'" for name, value in settings.items() if "'" not in value and "\n" not in value]
    if len(lines) != len(settings):
        raise UsageError("a setting value for the throw-away cluster may not contain quotes or newlines")
    with config.open("a", encoding="utf-8") as handle:
        handle.write("\n# rlsctl\n" + "\n".join(lines) + "\n")
