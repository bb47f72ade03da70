"""Library entry points that several front ends share (CLI, demo, tests)."""

from __future__ import annotations

from rlsctl.declare import declare
from rlsctl.project import Project
from rlsctl.render import render_state
from rlsctl.validate import validate


def render_phases(project: Project, phase: int | None = None) -> dict[int, str]:
    """The security layer rendered for the schema after each phase (or one phase), offline."""
    validate(project, project.migrated_schema())
    numbers = [phase] if phase is not None else [item.number for item in project.phases]
    if phase is not None and phase not in {item.number for item in project.phases}:
        from rlsctl.errors import UsageError

        raise UsageError(f"--phase {phase}: the project has phases 0..{len(project.phases) - 1}")
    rendered: dict[int, str] = {}
    for number in numbers:
        state = declare(project, project.migrated_schema(number))
        rendered[number] = render_state(state, project.root / "templates", drop_policies={}, drop_functions=[])
    return rendered
