"""`rlsctl lint`: the rule catalogue over the project, SQL files, and any live database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from rlsctl.lint import live, sqlfiles
from rlsctl.lint.model import LintModel
from rlsctl.lint.project import declared_secrets, project_model, project_suppressions
from rlsctl.lint.report import Locations
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
) -> tuple[LintResult, Locations]:
    models: list[LintModel] = []
    suppressions: list[Suppression] = []
    locations: Locations = {}
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
        models.append(live.read_model(inputs.conn))
    if project is not None:
        suppressions = project_suppressions(project)
        secrets = declared_secrets(project)
        for model in models:
            model.secrets.update(secrets)
        locations = _declarations(project)
    return run(models, select=select, ignore=ignore, suppressions=suppressions, baseline=baseline), locations


def _declarations(project: Project) -> Locations:
    found: Locations = {}
    for table in project.tables:
        source = project.source("tables", table)
        if source is not None:
            found[f"{project.schema_name}.{table}"] = (source.document.path, source.line())
    return found


__all__ = ["LintInputs", "lint"]
