"""`rlsctl lint`: the rule catalogue over the project, SQL files, and any live database."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from rlsctl.catalog import queries as catalog
from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.project import (
    declared_secrets,
    own_object_suppressions,
    platform_design,
    project_model,
    project_suppressions,
)
from rlsctl.lint.runner import LintResult, Suppression, run
from rlsctl.policy.project import Project


@dataclass
class LintInputs:
    project: Project | None = None  # its model (unless files are given), suppressions and secrets
    files: list[Path] = field(default_factory=list)
    conn: psycopg.Connection | None = None  # a live database, when asked for


def lint(
    inputs: LintInputs,
    *,
    select: tuple[str, ...] = (),
    ignore: tuple[str, ...] = (),
    baseline: set[str] | None = None,
) -> LintResult:
    """The findings, each with where its object is declared (`Finding.location`): the statement of a SQL
    file, or the policy-file line or migration statement of the project; live findings have none."""
    models: list[LintModel] = []
    suppressions: list[Suppression] = []
    project = inputs.project
    if inputs.files:
        model = LintModel(source="sql")
        default_schema = project.schema_name if project else "public"
        for path in inputs.files:
            sqlfiles.replay(model, path.read_text(encoding="utf-8"), str(path), default_schema)
        models.append(model)
    elif project is not None:
        models.append(project_model(project))
    if inputs.conn is not None:
        identity = (project.settings.identity.setting,) if project is not None else ()
        model = live.read_model(inputs.conn, _key_settings(project), identity)
        if project is not None:
            model.intended_memberships = _intended_memberships(inputs.conn, project)
        models.append(model)
    if project is not None:
        suppressions = project_suppressions(project) + own_object_suppressions(project)
        secrets = declared_secrets(project)
        for model in models:
            model.secrets.update(secrets)
            platform_design(model, project)
    result = run(models, select=select, ignore=ignore, suppressions=suppressions, baseline=baseline)
    if inputs.conn is not None and project is not None and any(t.encrypted for t in project.tables.values()):
        encryption = project.settings.encryption
        where = encryption.master_key_file or encryption.master_key_setting
        mode = "file" if encryption.master_key_file else "setting"
        result = replace(result, notes=(f"key-encryption key: {mode} {where} (docs/encryption.md)",))
    if project is not None:
        result = replace(result, root=str(project.root))
    return result


def _intended_memberships(conn: psycopg.Connection, project: Project) -> set[tuple[str, str]]:
    """What apply grants on purpose when it runs as a login that is not superuser: that login's
    membership in each role the project declares (rlsctl.declare.objects: Membership(role, operator))."""
    me = catalog.current_role(conn)
    if me.superuser:
        return set()
    return {(project.role_name(key), me.name) for key, decl in project.roles.items() if not decl.external}


def _key_settings(project: Project | None) -> tuple[str, ...]:
    """The project's key-encryption key setting, when it encrypts columns in setting mode."""
    if project is None or not any(table.encrypted for table in project.tables.values()):
        return ()
    encryption = project.settings.encryption
    return () if encryption.master_key_file is not None else (encryption.master_key_setting,)


__all__ = ["LintInputs", "lint"]
