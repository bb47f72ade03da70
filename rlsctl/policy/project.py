"""A project: policy files, migrations, optional template overrides.

Chosen by `--project DIR`, else `RLSCTL_PROJECT`, else the current directory
when it has `policies/`, else the bundled PromptCraft project. Loading parses
and validates every file of `policies/` (errors name file, line and field)
and merges their sections into one frozen `Project`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rlsctl.errors import PolicyFileError, UsageError
from rlsctl.policy.conditions import COMMANDS
from rlsctl.policy.model import (
    CommandRules,
    EveryTable,
    Explain,
    Fixtures,
    PolicyFile,
    ProjectSettings,
    RoleDecl,
    TableDecl,
    Tenancy,
)
from rlsctl.policy.yamlfile import YamlDocument, load_yaml
from rlsctl.resources import bundled_project_dir
from rlsctl.schema.phases import Phase, discover_phases, schema_at
from rlsctl.schema.tables import Schema

SECTIONS = ("project", "roles", "tenancy", "every_table", "tables", "fixtures", "explain")


@dataclass(frozen=True)
class Source:
    """Where a declaration came from, to point error messages at it."""

    document: YamlDocument
    path: tuple[str | int, ...]

    def line(self, *more: str | int) -> int | None:
        return self.document.line_of((*self.path, *more))

    def error(self, message: str, *more: str | int) -> PolicyFileError:
        return PolicyFileError(self.document.path, self.line(*more), message)


@dataclass(frozen=True)
class Project:
    root: Path
    settings: ProjectSettings
    roles: dict[str, RoleDecl]
    tenancy: Tenancy | None
    tables: dict[str, TableDecl]
    fixtures: Fixtures | None
    phases: tuple[Phase, ...]
    sources: dict[tuple[str, ...], Source] = field(default_factory=dict)
    role_prefix_override: str | None = None
    every_table: EveryTable | None = None
    explain: Explain | None = None  # rlsctl explain's representative queries

    # -- names ------------------------------------------------------------------

    @property
    def schema_name(self) -> str:
        return self.settings.schema_name

    @property
    def helper_schema(self) -> str:
        return self.settings.helper_schema

    @property
    def role_prefix(self) -> str:
        if self.role_prefix_override is not None:
            return self.role_prefix_override
        return self.settings.role_prefix

    def role_name(self, key: str) -> str:
        """The PostgreSQL role of a role key: prefix + key, unless named explicitly."""
        declared = self.roles[key]
        if declared.name is not None:
            return declared.name
        return self.role_prefix + key

    def role_of_kind(self, kind: str) -> str:
        """The key of the one role of `kind` (owner, app, definer)."""
        for key, declared in self.roles.items():
            if declared.kind == kind:
                return key
        raise UsageError(f"the project declares no role of kind {kind!r}")

    @property
    def anonymous_role_names(self) -> tuple[str, ...]:
        """The platform's anonymous roles (`lint.anonymous_roles`, by key), those the project declares."""
        keys = self.settings.lint_setting("anonymous_roles")
        return tuple(self.role_name(key) for key in keys if key in self.roles)

    @cached_property
    def role_names(self) -> dict[str, str]:
        return {key: self.role_name(key) for key in sorted(self.roles)}

    def source(self, *path: str) -> Source | None:
        probe = tuple(path)
        while probe:
            if probe in self.sources:
                return self.sources[probe]
            probe = probe[:-1]
        return None

    def error(self, path: tuple[str | int, ...], message: str) -> PolicyFileError:
        """An error pointing at the file and line that declared `path`."""
        for cut in range(len(path), 0, -1):
            key = tuple(str(part) for part in path[:cut])
            if key in self.sources:
                src = self.sources[key]
                return src.error(message, *path[cut:])
        return PolicyFileError(str(self.root / "policies"), None, message)

    # -- schema -------------------------------------------------------------------

    def migrated_schema(self, phase: int | None = None) -> Schema:
        return schema_at(self.phases, phase, self.schema_name)

    def require_phase(self, phase: int, option: str = "--phase") -> None:
        """A phase the command was given must be one of the project's (exit 2 otherwise)."""
        numbers = [item.number for item in self.phases]
        if phase not in numbers:
            raise UsageError(f"{option} {phase}: the project has phases 0..{len(numbers) - 1}")

    def with_role_prefix(self, prefix: str | None) -> Project:
        if prefix is None:
            return self
        return Project(
            root=self.root,
            settings=self.settings,
            roles=self.roles,
            tenancy=self.tenancy,
            tables=self.tables,
            fixtures=self.fixtures,
            phases=self.phases,
            sources=self.sources,
            role_prefix_override=prefix,
            every_table=self.every_table,
            explain=self.explain,
        )


NO_PROJECT = (
    "no rlsctl project here ({cwd} has no policies/ directory): run it in a project folder, "
    "or pass --project DIR or set RLSCTL_PROJECT (`rlsctl demo` runs the bundled example)"
)


def find_project_dir(option: str | None) -> Path | None:
    """The project named by `option`, else RLSCTL_PROJECT, else the working directory when it
    has policies/; None when there is none. Never the bundled example: a command run in the
    wrong folder must not plan PromptCraft's tables into someone's database."""
    chosen = option or os.environ.get("RLSCTL_PROJECT")
    if chosen:
        path = Path(chosen).expanduser()
        if not (path / "policies").is_dir():
            raise UsageError(f"project {path}: no policies/ directory")
        return path.resolve()
    cwd = Path.cwd()
    return cwd if (cwd / "policies").is_dir() else None


def resolve_project_dir(option: str | None, bundled: bool = False) -> Path:
    """As find_project_dir, but a missing project is exit 2; `bundled`: fall back to the bundled
    example (only `rlsctl demo` does)."""
    found = find_project_dir(option)
    if found is not None:
        return found
    if bundled:
        return bundled_project_dir()
    raise UsageError(NO_PROJECT.format(cwd=Path.cwd()))


def load_project(directory: Path, role_prefix: str | None = None) -> Project:
    policies_dir = directory / "policies"
    files = sorted(p for p in policies_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise UsageError(f"{policies_dir}: no policy files (*.yaml)")
    merged: dict[str, Any] = {}
    sources: dict[tuple[str, ...], Source] = {}
    for path in files:
        shown = _display_path(path)
        document = load_yaml(path, shown)
        parsed = _validate_file(document)
        _merge(parsed, document, merged, sources)
    project = _assemble(directory, merged, sources).with_role_prefix(role_prefix)
    _check_members(project)  # against the role names in force, prefix included
    return project


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _validate_file(document: YamlDocument) -> PolicyFile:
    if document.data is None:
        return PolicyFile()
    if not isinstance(document.data, dict):
        raise PolicyFileError(document.path, 1, "a policy file is a mapping of sections")
    unknown = [key for key in document.data if key not in SECTIONS]
    if unknown:
        line = document.line_of((unknown[0],))
        allowed = ", ".join(SECTIONS)
        raise PolicyFileError(document.path, line, f"unknown section {unknown[0]!r} (allowed: {allowed})")
    try:
        return PolicyFile.model_validate(document.data)
    except ValidationError as exc:
        first = _first_error(exc.errors())
        loc = tuple(part for part in first["loc"] if not _is_type_tag(part))
        line = document.line_of(loc)
        field_path = ".".join(str(part) for part in loc)
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (misspelt?)"
        raise PolicyFileError(document.path, line, f"{field_path}: {message}") from None


def _first_error(errors: list[Any]) -> Any:
    """The error to report: pydantic's first, except that a key missing next to an unknown key
    is most likely that key misspelt, which is what to name (`sqll:` for `sql:`)."""
    first = errors[0]
    if first["type"] != "missing":
        return first
    parent = first["loc"][:-1]
    return next((e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] == parent), first)


def _is_type_tag(part: Any) -> bool:
    # pydantic puts the tried type of a union into `loc` (e.g. "TenantVia", "str").
    return isinstance(part, str) and (
        (part[:1].isupper() and part in {"TenantVia", "ColumnList", "UpdateRule", "CommandRules"})
        or part in {"str", "function-before[_update_rule(), nullable[UpdateRule]]"}
        or part.startswith(("function-", "nullable[", "tagged-union["))
    )


def _merge(
    parsed: PolicyFile,
    document: YamlDocument,
    merged: dict[str, Any],
    sources: dict[tuple[str, ...], Source],
) -> None:
    for section in ("project", "tenancy", "every_table", "fixtures", "explain"):
        value = getattr(parsed, section)
        if value is None:
            continue
        if section in merged:
            first = sources[(section,)]
            raise PolicyFileError(
                document.path,
                document.line_of((section,)),
                f"section {section!r} is already declared in {first.document.path}:{first.line()}",
            )
        merged[section] = value
        sources[(section,)] = Source(document, (section,))
    for section in ("roles", "tables"):
        entries = getattr(parsed, section) or {}
        bucket = merged.setdefault(section, {})
        for name, value in entries.items():
            if name in bucket:
                first = sources[(section, name)]
                raise PolicyFileError(
                    document.path,
                    document.line_of((section, name)),
                    f"{section[:-1]} {name!r} is already declared in {first.document.path}:{first.line()}",
                )
            bucket[name] = value
            sources[(section, name)] = Source(document, (section, name))


def _assemble(directory: Path, merged: dict[str, Any], sources: dict[tuple[str, ...], Source]) -> Project:
    policies_dir = directory / "policies"
    settings = merged.get("project")
    if settings is None:
        raise PolicyFileError(str(policies_dir), None, "no file declares the 'project' section")
    roles: dict[str, RoleDecl] = merged.get("roles", {})
    every: EveryTable = merged.get("every_table") or EveryTable()
    tables = {name: _with_every_table(decl, every) for name, decl in merged.get("tables", {}).items()}
    project = Project(
        root=directory,
        settings=settings,
        roles=roles,
        tenancy=merged.get("tenancy"),
        tables=tables,
        fixtures=merged.get("fixtures"),
        phases=discover_phases(directory / "migrations"),
        sources=sources,
        every_table=merged.get("every_table"),
        explain=merged.get("explain"),
    )
    _check_role_kinds(project, policies_dir)
    _check_anonymous_roles(project)
    return project


def _with_every_table(decl: TableDecl, every: EveryTable) -> TableDecl:
    """A table's own rules win, command by command, over the every_table defaults."""
    policies: dict[str, CommandRules] = dict(every.policies)
    for role, rules in decl.policies.items():
        base = every.policies.get(role)
        if base is None:
            policies[role] = rules
            continue
        picked = {c: getattr(rules, c) if getattr(rules, c) is not None else getattr(base, c) for c in COMMANDS}
        policies[role] = CommandRules(**picked)
    return decl.model_copy(update={"policies": policies, "suppress": (*every.suppress, *decl.suppress)})


def _check_role_kinds(project: Project, policies_dir: Path) -> None:
    for kind in ("owner", "app", "definer"):
        keys = [key for key, decl in project.roles.items() if decl.kind == kind]
        if len(keys) != 1:
            src = project.source("roles", keys[1]) if len(keys) > 1 else None
            message = f"declare exactly one role of kind {kind!r} (found {len(keys)})"
            if src is not None:
                raise src.error(message)
            raise PolicyFileError(str(policies_dir), None, message)
    keys = [key for key, decl in project.roles.items() if decl.kind == "keys"]
    if len(keys) > 1:
        raise project.source("roles", keys[1]).error("declare at most one role of kind 'keys'")


def _check_anonymous_roles(project: Project) -> None:
    """Anonymous roles given explicitly must be declared (the platform's default need not be)."""
    for key in project.settings.lint.anonymous_roles or ():
        if key not in project.roles:
            raise project.error(
                ("project", "lint", "anonymous_roles"), f"anonymous_roles: {key!r} is not a declared role key"
            )


# Names no declared role may take: PostgreSQL's pseudo-roles and its own roles.
RESERVED_ROLE_NAMES = frozenset({"public", "current_user", "current_role", "session_user", "none"})


def _check_role_names(project: Project) -> None:
    """One PostgreSQL role per key: a second key naming a role of rlsctl's own (say, an
    `external` alias of the owner role) would hide the memberships in it from drift."""
    seen: dict[str, str] = {}
    for key, name in sorted(project.role_names.items()):
        lowered = name.lower()
        if lowered in RESERVED_ROLE_NAMES or lowered.startswith("pg_"):
            raise project.error(("roles", key), f"role {key!r} is named {name!r}, a name PostgreSQL reserves")
        if name in seen:
            raise project.error(("roles", key), f"roles {seen[name]!r} and {key!r} are both {name!r}: one role per key")
        seen[name] = key


def _check_members(project: Project) -> None:
    """`members:` names roles outside the project: a declared role's memberships are
    declared by their absence (and the operator's are implied)."""
    _check_role_names(project)
    declared = set(project.role_names.values())
    for key, decl in sorted(project.roles.items()):
        for member in decl.members:
            if member in declared:
                raise project.error(
                    ("roles", key, "members"),
                    f"members: {member!r} is a role of this project; list only roles outside it "
                    "(login roles of the application, a migration tool)",
                )
