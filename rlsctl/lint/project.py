"""The project as lint sees it: migrations and rendered SQL replayed, plus what only the policy files know.

The policy files add the roles (created in DO blocks the replay does not
enter), the columns declared secret with the roles entitled to read them,
and the suppressions (each with its file and line).
"""

from __future__ import annotations

from rlsctl.change.plan import plan_for_empty
from rlsctl.declare.compile import declare
from rlsctl.declare.validate import validate
from rlsctl.lint.model import LintModel, Role
from rlsctl.lint.runner import Suppression
from rlsctl.lint.sqlfiles import replay
from rlsctl.policy.project import Project


def project_model(project: Project) -> LintModel:
    validate(project, project.migrated_schema())
    model = LintModel(source="project")
    for phase in project.phases:
        for step in phase.steps:
            replay(model, step.up_sql(), str(step.up), project.schema_name)
    state = declare(project, project.migrated_schema())
    plan = plan_for_empty(state, project.root / "templates")
    replay(model, ";\n".join(plan.sql) + ";", "rendered SQL", project.schema_name)
    for role in state.roles:
        model.roles.setdefault(role.name, Role(role.name))
    model.secrets.update(declared_secrets(project))
    return model


def declared_secrets(project: Project) -> dict[str, set[str]]:
    """ "schema.table.column" -> the roles entitled to read it, from `secrets:` in the policy files."""
    found: dict[str, set[str]] = {}
    for table, decl in project.tables.items():
        for column, readers in decl.secrets.items():
            found[f"{project.schema_name}.{table}.{column}"] = {project.role_name(key) for key in readers}
    return found


def project_suppressions(project: Project) -> list[Suppression]:
    found: list[Suppression] = []
    inherited = len(project.every_table.suppress) if project.every_table else 0
    for table, decl in project.tables.items():
        for index, suppression in enumerate(decl.suppress):
            # every_table's suppressions come first in each table's list
            if index < inherited:
                source, position = project.source("every_table"), index
            else:
                source, position = project.source("tables", table), index - inherited
            where = f"{source.document.path}:{source.line('suppress', position)}" if source else "policies"
            found.append(
                Suppression(
                    rule=suppression.rule,
                    reason=suppression.reason,
                    scope=f"{project.schema_name}.{table}",
                    object=suppression.object,
                    where=where,
                )
            )
    return found
