"""The project as lint sees it: migrations and rendered SQL replayed, plus what only the policy files know.

The policy files add the roles (created in DO blocks the replay does not
enter), the columns declared secret with the roles entitled to read them,
and the suppressions (each with its file and line).

Findings point at the policy-file line that declares their object (a table,
a role's command rule, a secret or encrypted column, a role), else at the
migration statement that created it; objects only the rendered SQL creates
(rlsctl's helper schema) point at the schema's line in the `project:` section.
"""

from __future__ import annotations

from rlsctl.change.plan import plan_for_empty
from rlsctl.declare.compile import declare
from rlsctl.declare.validate import validate
from rlsctl.lint.model import LintModel, Location, Role
from rlsctl.lint.runner import Suppression
from rlsctl.lint.sqlfiles import replay
from rlsctl.policy.project import Project, Source


def project_model(project: Project) -> LintModel:
    validate(project, project.migrated_schema())
    model = LintModel(source="project")
    for phase in project.phases:
        for step in phase.steps:
            replay(model, step.up_sql(), str(step.up), project.schema_name)
    state = declare(project, project.migrated_schema())
    plan = plan_for_empty(state, project.root / "templates")
    replay(model, ";\n".join(plan.sql) + ";", "rendered SQL", project.schema_name, located=False)
    for role in state.roles:
        model.roles.setdefault(role.name, Role(role.name))
    model.secrets.update(declared_secrets(project))
    model.locations.update(declared_locations(project))
    for schema, location in schema_locations(project).items():
        model.locations.setdefault(schema, location)
    platform_design(model, project)
    return model


def platform_design(model: LintModel, project: Project) -> None:
    """What the project says of its platform (`project.platform`, `project.lint`), into the model."""
    settings = project.settings
    model.trusted_schemas = set(settings.lint_setting("trusted_schemas"))
    model.exposed_schemas = set(settings.lint_setting("exposed_schemas"))
    model.anonymous_roles = set(project.anonymous_role_names)


def declared_secrets(project: Project) -> dict[str, set[str]]:
    """ "schema.table.column" -> the roles entitled to read it, from `secrets:` in the policy files."""
    found: dict[str, set[str]] = {}
    for table, decl in project.tables.items():
        for column, readers in decl.secrets.items():
            found[f"{project.schema_name}.{table}.{column}"] = {project.role_name(key) for key in readers}
    return found


def declared_locations(project: Project) -> dict[str, Location]:
    """Where the policy files declare the objects lint reports: a table at its entry under `tables:`; a policy at
    its role's command (`tables.X.policies.app.select`, or `every_table.policies.owner.select` when the table
    takes it from there); the policies rlsctl adds at what asks for them (`retention:`, `encrypted:`); a secret
    or encrypted column at its entry; a role at its entry under `roles:`; an extension in `project.extensions`."""
    found: dict[str, Location] = {}
    every = project.source("every_table")
    keys_role = next((key for key, decl in project.roles.items() if decl.kind == "keys"), None)
    for table, decl in project.tables.items():
        source = project.source("tables", table)
        if source is None:
            continue
        name = f"{project.schema_name}.{table}"
        found[name] = _at(source)
        for role, rules in decl.policies.items():
            for command in rules.declared():
                path = ("policies", role, command)
                declaring = every if every is not None and not _has(source, *path) and _has(every, *path) else source
                found[f"{name}.{role}_{command}"] = _at(declaring, *path)
        if decl.retention is not None and _has(source, "retention"):
            for command in ("select", "delete"):
                found.setdefault(f"{name}.{decl.retention.role}_{command}", _at(source, "retention"))
        for section in ("encrypted", "decrypting"):
            for index, column in enumerate(getattr(decl, section)):
                found[f"{name}.{column}"] = _at(source, section, index)
            if keys_role is not None and getattr(decl, section) and _has(source, section):
                for command in ("select", "update"):
                    found.setdefault(f"{name}.{keys_role}_{command}", _at(source, section))
        for column in decl.secrets:
            found[f"{name}.{column}"] = _at(source, "secrets", column)
    for key in project.roles:
        source = project.source("roles", key)
        if source is not None:
            found[project.role_name(key)] = _at(source)
    settings = project.source("project")
    if settings is not None:
        for index, extension in enumerate(project.settings.extensions):
            found[extension] = _at(settings, "extensions", index)
    return found


def schema_locations(project: Project) -> dict[str, Location]:
    """The project's schema and rlsctl's helper schema, at their settings (or the `project:` section): what
    neither a migration nor a policy file declares lives in one of them because the project says so."""
    source = project.source("project")
    if source is None:
        return {}
    return {project.helper_schema: _at(source, "helper_schema"), project.schema_name: _at(source, "schema")}


def _at(source: Source, *path: str | int) -> Location:
    return Location(source.document.path, source.line(*path))


def _has(source: Source, *path: str | int) -> bool:
    return (*source.path, *path) in source.document.lines


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
