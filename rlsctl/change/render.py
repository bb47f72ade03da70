"""`rlsctl render`: the security layer as one SQL script per phase, offline and deterministic."""

from __future__ import annotations

from rlsctl.change.plan import plan_for_empty
from rlsctl.declare.compile import declare
from rlsctl.declare.validate import validate
from rlsctl.pg.templates import render_template
from rlsctl.policy.project import Project


def render_phases(project: Project, phase: int | None = None) -> dict[int, str]:
    """The security layer rendered for the schema after each phase (or one phase), offline."""
    validate(project, project.migrated_schema())
    numbers = [item.number for item in project.phases]
    if phase is not None:
        project.require_phase(phase)
    rendered: dict[int, str] = {}
    templates = project.root / "templates"
    for number in [phase] if phase is not None else numbers:
        state = declare(project, project.migrated_schema(number))
        plan = plan_for_empty(state, templates)
        rendered[number] = render_template(
            "script.sql.j2", templates, project=project.settings.name, statements=plan.statements, pending=state.pending
        )
    return rendered
