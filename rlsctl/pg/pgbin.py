"""Find the installed PostgreSQL binaries (pg_dump, initdb, pg_ctl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rlsctl.errors import UsageError


def bin_dir() -> Path | None:
    """The newest server bin directory: pg_config's, else /usr/lib/postgresql/N/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidate = Path(found.stdout.strip())
            if (candidate / "initdb").exists():
                return candidate
        except (OSError, subprocess.CalledProcessError):
            pass
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def find(program: str) -> Path:
    directory = bin_dir()
    if directory is not None and (directory / program).exists():
        return directory / program
    on_path = shutil.which(program)
    if on_path:
        return Path(on_path)
    raise UsageError(f"{program} not found: install the PostgreSQL server binaries (e.g. postgresql-15)")
