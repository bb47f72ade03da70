"""The fixtures can tell a right policy from a wrong one.

Each case weakens one rule of the shipped policy files in a copy of the
project and checks that the hand-written oracle (tests/spec_matrix.py) then reports the cells
that prove the weakening. A clause that no fixture row can decide would pass
both ways; these tests keep such a clause from hiding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rlsctl.tester.run import run_matrix
from tests import spec_matrix
from tests.conftest import ROOT, migrate_and_apply

MUTATIONS = {
    # Prompt UPDATE: a prompt may move only to a team where both self and its author are members.
    "prompt moves to a team its author is not in": (
        "prompts.yaml",
        """                      - all:
                          - tenant_role: MEMBER
                          - tenant_member: userId
""",
        """                      - all:
                          - tenant_role: MEMBER
""",
        ("Prompt", "update", "share_b:p_a_member_shared", "ab_admin"),
    ),
    "a membership moves to another team": (
        "teams.yaml",
        """      - changed: [teamId, userId]
        message: a membership never moves to another team or user
""",
        "",
        ("TeamMember", "update", "move_team:m_a_member", "ab_admin"),
    ),
    "an approval is repointed at another version": (
        "prompts.yaml",
        """      - changed: [promptId, versionId, approverId]
        message: an approval keeps its prompt, version and approver (the insert checks would be bypassed)
""",
        """      - changed: [promptId, approverId]
        message: an approval keeps its prompt and approver
""",
        ("PromptApproval", "update", "repoint_version:ap_a_admin_on_member", "a_admin"),
    ),
    "the metrics retention window is one day longer": (
        "analytics.yaml",
        "retention: {column: createdAt, days: 90}",
        "retention: {column: createdAt, days: 92}",
        ("PerformanceMetrics", "delete", "pm_a_shared_91d", "retention"),
    ),
    "the usage retention window is one day shorter": (
        "analytics.yaml",
        "retention: {column: lastUsedAt, days: 400}",
        "retention: {column: lastUsedAt, days: 398}",
        ("UsageAnalytics", "delete", "ua_a_member_399d", "retention"),
    ),
}


def mutated_project(tmp_path: Path, file: str, old: str, new: str) -> Path:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "policies", root / "policies")
    shutil.copytree(ROOT / "migrations", root / "migrations")
    path = root / "policies" / file
    text = path.read_text()
    assert text.count(old) == 1, f"the mutation no longer matches {file}"
    path.write_text(text.replace(old, new))
    return root


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_weakened_rule_is_caught_by_the_fixtures(make_db, tmp_path, name):
    file, old, new, (table, command, case, principal) = MUTATIONS[name]
    database = make_db()
    project = database.project(mutated_project(tmp_path, file, old, new))
    migrate_and_apply(database, project=project)
    with database.connect() as conn:
        result = run_matrix(conn, project, "mutant", expect=spec_matrix.expectation)
    caught = {(c.table, c.command, c.case, c.principal) for c in result.failures}
    assert (table, command, case, principal) in caught, sorted(caught)[:10]
