"""Where the bundled templates and the bundled PromptCraft project live.

In a wheel they are inside the package (`rlsctl/_bundled/`, see
pyproject.toml); in a source checkout (editable install) they are the
repository's top-level `templates/`, `policies/` and `migrations/`.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED = PACKAGE_DIR / "_bundled"
_CHECKOUT = PACKAGE_DIR.parent


def templates_dir() -> Path:
    bundled = _BUNDLED / "templates"
    return bundled if bundled.is_dir() else _CHECKOUT / "templates"


def bundled_project_dir() -> Path:
    bundled = _BUNDLED / "project"
    return bundled if (bundled / "policies").is_dir() else _CHECKOUT


def catalog_sql_dir() -> Path:
    return PACKAGE_DIR / "catalog" / "sql"
