"""Render the declared state as SQL through the Jinja2 templates.

The environment is strict in two ways:

- `StrictUndefined`: a template that names something the state lacks fails;
- `finalize`: every `{{ ... }}` must print a value that went through the one
  quoting path (`ident`, `qualified`, `literal`), a whitelisted keyword, an
  integer, or the output of one of our own macros marked with `| sql`.
  A template that prints a raw string fails at render time instead of
  emitting unquoted SQL.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from rlsctl.errors import UsageError
from rlsctl.pg import locks, sql
from rlsctl.pg.sql import SqlText
from rlsctl.resources import templates_dir

KEYWORDS = frozenset(
    {
        "SELECT", "INSERT", "UPDATE", "DELETE", "ALL", "PERMISSIVE", "RESTRICTIVE",
        "TRUNCATE", "REFERENCES", "TRIGGER", "USAGE", "CREATE", "EXECUTE",
        "=", "<>", "<", ">", "<=", ">=",
        "sql", "plpgsql", "IMMUTABLE", "STABLE", "VOLATILE",
        "MAINTAIN", "TABLES", "SEQUENCES", "FUNCTIONS", "TYPES", "SCHEMAS",
        "LOGIN", "NOLOGIN", "CREATEDB", "NOCREATEDB", "CREATEROLE", "NOCREATEROLE",
        "BEFORE", "AFTER", "ROW", "STATEMENT",
    }
)  # fmt: skip


class TemplateError(UsageError):
    """A template is broken (names an undefined value or prints unquoted text)."""


def _finalize(value: Any) -> Any:
    if isinstance(value, SqlText):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, jinja2.Undefined):
        return value
    raise TemplateError(
        f"template printed an unquoted value {value!r}: pass it through ident, literal, qualified or keyword"
    )


def _keyword(value: str) -> SqlText:
    if value not in KEYWORDS:
        raise TemplateError(f"{value!r} is not a whitelisted SQL keyword")
    return SqlText(value)


def _strict(quote: Callable[[Any], SqlText]) -> Callable[[Any], SqlText]:
    """Quoting an undefined value is the template's bug: report it as undefined."""

    def checked(value: Any) -> SqlText:
        if isinstance(value, jinja2.Undefined):
            value._fail_with_undefined_error()
        return quote(value)

    return checked


def _row_reference(value: str) -> SqlText:
    if value not in ("OLD", "NEW"):
        raise TemplateError(f"{value!r} is not a trigger row reference")
    return SqlText(value)


def _grantee(value: str) -> SqlText:
    """A role in GRANT/REVOKE/TO: PUBLIC is the keyword, anything else an identifier."""
    return SqlText("PUBLIC") if value == "PUBLIC" else sql.ident(value)


def _comment(value: object) -> SqlText:
    """Text for inside a `--` comment: control characters could end the comment."""
    return SqlText("".join(ch if ch >= " " else "?" for ch in str(value)))


def _trusted(value: Any) -> SqlText:
    """Mark the output of one of our macros (built only from quoted parts) as SQL."""
    return SqlText(str(value))


def environment(project_templates: Path | None = None) -> jinja2.Environment:
    override = project_templates if project_templates is not None and project_templates.is_dir() else None
    return _environment(override)


class _QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates on disk; a file that cannot be read or written is simply not cached."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiling the templates is most of the first apply of a process (about 60 ms of
    100): keep the compiled code in Jinja's private per-user directory (created 0700, its
    owner and mode checked), keyed by template file and checked against its source. Where
    that directory is unusable, templates are compiled every time, as before."""
    try:
        return _QuietBytecodeCache()
    except (OSError, RuntimeError):
        return None


@functools.cache
def _environment(project_templates: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if project_templates is not None:
        loaders.append(jinja2.FileSystemLoader(str(project_templates)))
    loaders.append(jinja2.FileSystemLoader(str(templates_dir())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        auto_reload=False,  # templates do not change while rlsctl runs: no stat() per lookup
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(
        ident=_strict(sql.ident),
        literal=_strict(sql.literal),
        keyword=_keyword,
        sql=_trusted,
        rowref=_row_reference,
        grantee=_strict(_grantee),
        comment=_comment,
        qualified=lambda parts: sql.qualified(*parts),
    )
    env.globals.update(
        qualified=sql.qualified,
        ident=sql.ident,
        literal=sql.literal,
        setting=sql.setting,
        dollar_quoted=sql.dollar_quoted,
        lock_class=locks.CLASS,  # advisory locks: rlsctl/pg/locks.py
        key_lock_id=locks.KEY,
    )
    return env


def render_template(template_name: str, project_templates: Path | None = None, **context: Any) -> str:
    try:
        template = environment(project_templates).get_template(template_name)
        return template.render(**context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {template_name}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"{exc.filename or template_name}:{exc.lineno}: template syntax error: {exc.message}"
        ) from None


def call_macro(template_name: str, macro_name: str, project_templates: Path | None, *args: Any) -> str:
    """Call one macro of a template (the object templates are libraries of macros)."""
    try:
        module = environment(project_templates).get_template(template_name).module
        return str(getattr(module, macro_name)(*args))
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template not found: {exc.name}") from None
    except AttributeError:
        raise TemplateError(f"template {template_name} has no macro {macro_name!r}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {template_name}: {exc.message}") from None
