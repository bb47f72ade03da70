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
from rlsctl.declare.audit import log_table
from rlsctl.declare.bind import BindError
from rlsctl.declare.compile import declare
from rlsctl.declare.validate import validate
from rlsctl.lint.model import LintModel, Location, Role
from rlsctl.lint.runner import Suppression
from rlsctl.lint.sqlfiles import replay
from rlsctl.policy.project import Project, Source
from rlsctl.state.objects import (
    API_KEY_TABLES,
    AUDIT_TABLES,
    AUDIT_TRIGGER,
    CHAIN_TRIGGER,
    KEY_TABLES,
    RETENTION_TABLES,
)


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
    model.own_schemas = {project.helper_schema}


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


OWN_OBJECTS = "rlsctl, for its own objects: docs/lint.md#rlsctls-own-objects"  # where their suppressions are declared
_OWN_TABLE = (
    "rlsctl's {what}, read and written only by its owner through rlsctl's functions: RLS is enabled without "
    "policies so that a grant made by mistake still shows nobody else a row"
)
_AUDIT_TRIGGER = (
    "rlsctl's audit trigger runs as the definer role so that only it can write a row saying the table changed "
    "(a function the application could run would let it claim changes that never happened); it copies the "
    "allow-listed columns of OLD and NEW and takes the actor from the session, never from CURRENT_USER"
)
_CHAIN_TRIGGER = (
    "the audit log's hash chain trigger runs as the definer role, the only one that may move the chain's lane "
    "heads; it reads nothing but the lane's head"
)
_LOG_INSERT = (
    "the definer role writes the rows of rlsctl's audit triggers and of rlsctl.audit_record, which record changes "
    "in every tenant by design; nobody else can make it insert (the triggers and the function are rlsctl's, "
    "executable by no application role), and it reads no row"
)
_LOG_SEAL = (
    "rlsctl.audit_seal (the definer role's) puts every committed row of the audit log into its one order; its "
    "column grant covers only the chain's columns"
)
_KEYS = (
    "the keys role rewrites the ciphertext of the encrypted columns of every row, in every tenant, for key "
    "rotation, backfill and decryption for a rollback (docs/encryption.md); it is NOLOGIN and its column grants "
    "cover only those columns"
)


def own_object_suppressions(project: Project) -> list[Suppression]:
    """What lint reports, in every project that uses them, of the objects rlsctl itself makes (its helper
    tables, audit triggers and policies, the keys role's policies), each with the reason it is so: a
    project need not copy these suppressions from PromptCraft, and they never count as unused."""
    helper, schema = project.helper_schema, project.schema_name
    own_tables = {**KEY_TABLES, **RETENTION_TABLES, **AUDIT_TABLES, **API_KEY_TABLES}
    found = [_own("RLS005", f"{helper}.{name}", _OWN_TABLE.format(what=what)) for name, what in own_tables.items()]
    # Only where rlsctl puts it (an audited table): a trigger of that name anywhere else is someone else's.
    audited = [table for table, decl in project.tables.items() if decl.audit is not None]
    found += [_own("SEC014", f"{schema}.{table}.{AUDIT_TRIGGER}", _AUDIT_TRIGGER) for table in audited]
    keys = [key for key, declared in project.roles.items() if declared.kind == "keys"]
    for table, decl in project.tables.items():
        if decl.encrypted and keys:
            found += [_own("RLS007", f"{schema}.{table}.{keys[0]}_{verb}", _KEYS) for verb in ("select", "update")]
    if project.settings.audit is not None:
        try:
            log = f"{schema}.{log_table(project)}"
        except BindError:
            return found  # validation names the problem
        found += [
            _own("RLS012", f"{log}.definer_insert", _LOG_INSERT),
            _own("RLS007", f"{log}.definer_seal", _LOG_SEAL),
            _own("SEC014", f"{log}.{CHAIN_TRIGGER}", _CHAIN_TRIGGER),
        ]
    return found


def _own(rule: str, name: str, reason: str) -> Suppression:
    return Suppression(rule=rule, reason=reason, scope=None, object=name, where=OWN_OBJECTS, builtin=True)
