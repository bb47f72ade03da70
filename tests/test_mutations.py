"""The mutation check: every one-edit change of a shipped policy that changes who may do what is
caught by `rlsctl test` with the shipped expectations and invariants (no oracle of this suite).

tests/mutations.py makes the mutants (each rank one step down and up, each API-key scope
swapped, each branch of `any` and condition of `all` dropped, each `not` removed, each rule made
`true` and `false`, each guard dropped or loosened). Each is applied to a real database inside a
transaction that is rolled back, and `rlsctl test`'s runner judges it: first the tables the edit
can reach (the table and those whose policies read it), then, if nothing failed, every table.

A mutant that survives must be listed below with why it changes nothing, and must change no cell
of the fixture world; a listed mutant that is caught is an error too (the list stays honest).
Each test prints its figures (pytest -rP shows them).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from rlsctl.change import apply as applying
from rlsctl.declare.compile import declare
from rlsctl.errors import PolicyFileError, UsageError
from rlsctl.policy.project import load_project
from rlsctl.tester.run import MatrixResult, run_matrix
from tests.conftest import ROOT, TestDatabase, migrate_and_apply, vacuum
from tests.mutations import Mutant, affected, mutants, write_mutant

PROJECTS = {"promptcraft": ROOT, "orgs": ROOT / "examples" / "orgs"}
SCOPES = {"promptcraft": ("analytics:read", "audit:read", "prompts:read", "prompts:write"), "orgs": ()}

SELECT_ANDED = (
    "rlsctl ANDs the role's SELECT rule into every UPDATE and DELETE policy (docs/access-matrix.md, "
    "decision 9): {why}"
)
EQUIVALENT = {
    "promptcraft": {
        "Prompt app update.using any[2]: all[1] condition dropped ({\"api_key_member\":\"userId\"})":
            "the check still asks that the author be a member of the key's team, and the author never changes "
            "(guard)",
        "Prompt app update.check any[0]: all[0] condition dropped ({\"user_session\":true})":
            SELECT_ANDED.format(why="a key session's SELECT rule is its own team, so it never leaves a prompt "
                                    "private"),
        "Prompt app update.check any[0] all[1] any[1]: all[0] condition dropped ({\"tenant_role\":\"MEMBER\"})":
            SELECT_ANDED.format(why="the new row must be self's prompt (then self is the author, a member by "
                                    "tenant_member) or in a team of self"),
        "Prompt app update.check any[1]: all[1] condition dropped ({\"api_key_member\":\"userId\"})":
            "the using asks it of the same author in the same team (the key's), and the author never changes",
        "PromptApproval guard[0] (promptId, versionId, approverId): changed approverId dropped":
            "the check (approverId = self) already refuses any other approver",
        "ApiKey app update: rule -> true": SELECT_ANDED.format(why="ApiKey's SELECT rule is ADMIN of the key's team"),
        "ApiKey app update: tenant_role ADMIN -> MEMBER":
            SELECT_ANDED.format(why="ApiKey's SELECT rule is ADMIN of the key's team"),
        "ApiKey app delete: rule -> true": SELECT_ANDED.format(why="ApiKey's SELECT rule is ADMIN of the key's team"),
        "ApiKey app delete: tenant_role ADMIN -> MEMBER":
            SELECT_ANDED.format(why="ApiKey's SELECT rule is ADMIN of the key's team"),
        "Team app select: any[0] branch dropped ({\"self\":\"ownerId\"})":
            "LIMITATION: for reads the owner column already counts as the top rank (tenant_role: MEMBER); the "
            "branch matters only to INSERT ... RETURNING of a new team (tenant_ids reads the statement's "
            "snapshot, which lacks the new row), and rlsctl test's INSERT cells return nothing",
        "TeamMember app update.using any[1]: all[0] condition dropped ({\"tenant_role\":\"ADMIN\"})":
            "the check is the same rule and still asks ADMIN (or OWNER)",
        "TeamMember app update.using any[1] all[0]: tenant_role ADMIN -> MEMBER":
            "the check is the same rule and still asks ADMIN (or OWNER)",
        "TeamMember app update.check: rule -> true":
            "an UPDATE without a check of its own is checked by its using, which was the same rule",
        "TeamMember app update.check any[1]: all[0] condition dropped ({\"tenant_role\":\"ADMIN\"})":
            "the using asks ADMIN (or OWNER) of the same team, and a membership never moves (guard)",
        "TeamMember app update.check any[1] all[0]: tenant_role ADMIN -> MEMBER":
            "the using asks ADMIN (or OWNER) of the same team, and a membership never moves (guard)",
    },
    "orgs": {
        "org_membership guard[0] (org_id, account_id): dropped":
            "the app may update `level` only (column privilege): org_id and account_id cannot change anyway",
        "org_membership guard[0] (org_id, account_id): changed org_id dropped":
            "the app may update `level` only (column privilege)",
        "org_membership guard[0] (org_id, account_id): changed account_id dropped":
            "the app may update `level` only (column privilege)",
        "task app update.using: rule -> true":
            "the check passes a non-editor only as the assignee after the update, and only an editor changes "
            "the assignee (guard): so only as the assignee before it too",
        "task app update.using any[0]: tenant_role editor -> viewer":
            "as above: the check and the assignee guard still decide",
        "task app update.check: all[0] condition dropped ({\"any\":[{\"tenant_role\":\"editor\"},"
        "{\"self\":\"assignee_id\"}]})":
            "the using asks editor or assignee, and the guard keeps a non-editor from changing the assignee",
        "task app update.check all[0] any[0]: tenant_role editor -> viewer":
            "the using asks editor or assignee, and the guard keeps a non-editor from changing the assignee",
        "task guard[1] (assignee_id): dropped":
            "using and check let a non-editor update a task only as its assignee before and after: the "
            "assignee cannot change",
        "task guard[1] (assignee_id): require -> true": "as above: using and check already keep the assignee",
        "task guard[1] (assignee_id) require: tenant_role editor -> viewer":
            "as above: using and check already keep the assignee",
    },
}  # fmt: skip


def _mutants_by_table(name: str) -> dict[str, list[Mutant]]:
    project = load_project(PROJECTS[name])
    assert project.tenancy is not None
    found: dict[str, list[Mutant]] = defaultdict(list)
    for mutant in mutants(PROJECTS[name] / "policies", project.tenancy.ranks, SCOPES[name]):
        found[mutant.table].append(mutant)
    return found


# At most this many mutants per test: a table's mutants are dealt into parts (every n-th), so the
# largest tables (50 mutants, two minutes in one test on two cores) spread over xdist's workers.
PART_SIZE = 20
CHUNKS = [
    (name, table, part, parts)
    for name in PROJECTS
    for table, found in sorted(_mutants_by_table(name).items())
    for parts in [-(-len(found) // PART_SIZE)]
    for part in range(parts)
]


class Lab:
    """A database with the project applied, and a copy of the project whose files mutate."""

    def __init__(self, database: TestDatabase, source: Path, tmp: Path) -> None:
        self.database = database
        self.root = tmp / "project"
        for part in ("policies", "migrations", "expectations"):
            shutil.copytree(source / part, self.root / part)
        self.originals = {path.name: path.read_text() for path in (self.root / "policies").glob("*.yaml")}
        self.project = migrate_and_apply(database, project=load_project(self.root, role_prefix=database.prefix))
        self.state = declare(self.project, self.project.migrated_schema())
        with database.connect() as conn:
            baseline = run_matrix(conn, self.project, "baseline")
        assert not baseline.failed, "the shipped project must pass before it is mutated"
        self.baseline = _outcomes(baseline)

    def judge(self, mutant: Mutant) -> MatrixResult | None:
        """The mutant's matrix, or None when the policy files refuse the edit (it cannot be applied)."""
        write_mutant(self.root, mutant, self.originals)
        vacuum(self.database)  # every mutant is applied and rolled back on this one database
        try:
            project = load_project(self.root, role_prefix=self.database.prefix)
            with self.database.connect() as conn, conn.transaction(force_rollback=True):
                applying.apply(conn, project, "mutant")
                result = run_matrix(conn, project, "mutant", tables=sorted(affected(mutant.table, self.state)))
                if not result.failed:
                    result = run_matrix(conn, project, "mutant")
                return result
        except (UsageError, PolicyFileError):
            return None
        finally:
            (self.root / "policies" / mutant.file).write_text(self.originals[mutant.file])


def _outcomes(result: MatrixResult) -> dict[tuple[str, str, str, str], bool]:
    return {(c.table, c.command, c.case, c.principal): c.actual.allowed for c in result.cells}


@pytest.fixture(scope="module")
def labs(make_module_db, tmp_path_factory) -> Callable[[str], Lab]:
    """Each project's lab, made the first time a test of this worker asks for it."""
    made: dict[str, Lab] = {}

    def lab(name: str) -> Lab:
        if name not in made:
            made[name] = Lab(make_module_db(), PROJECTS[name], tmp_path_factory.mktemp(name))
        return made[name]

    return lab


@pytest.mark.parametrize(
    "name, table, part, parts", CHUNKS, ids=[f"{n}-{t}" + (f"-{p + 1}of{k}" if k > 1 else "") for n, t, p, k in CHUNKS]
)
def test_every_edit_that_changes_access_is_caught(labs, name, table, part, parts):
    lab = labs(name)
    caught, refused, survivors = 0, [], []
    mine = _mutants_by_table(name)[table][part::parts]
    for mutant in mine:
        result = lab.judge(mutant)
        if result is None:
            refused.append(mutant.what)
        elif result.failed:
            caught += 1
        else:
            changed = sorted(key for key, allowed in _outcomes(result).items() if lab.baseline.get(key) != allowed)
            survivors.append((mutant.what, changed))
    judged = {mutant.what for mutant in mine}
    listed = {what: why for what, why in EQUIVALENT[name].items() if what in judged}
    print(
        f"\n{name} {table} (part {part + 1} of {parts}): {caught} of {caught + len(survivors)} edits caught, "
        f"{len(refused)} refused by rlsctl"
    )
    for what, _ in survivors:
        print(f"  survives: {what}\n    because {listed.get(what, 'NOT EXPLAINED')}")
    unexplained = [what for what, _ in survivors if what not in listed]
    assert not unexplained, f"edits that survive the expectations without a reason: {unexplained}"
    assert all(not changed for _, changed in survivors), [s for s in survivors if s[1]]
    stale = set(listed) - {what for what, _ in survivors}
    assert not stale, f"listed as surviving but caught now (remove them from EQUIVALENT): {sorted(stale)}"


def test_every_edit_listed_as_surviving_is_one_the_mutants_make():
    """The surviving edits are checked part by part, each against the mutants it judged: an entry of
    EQUIVALENT that names no mutant at all (a typo, a rule since renamed) would be checked by none."""
    for name in PROJECTS:
        made = {mutant.what for found in _mutants_by_table(name).values() for mutant in found}
        assert set(EQUIVALENT[name]) <= made, sorted(set(EQUIVALENT[name]) - made)


def test_the_mutants_cover_every_kind_of_edit():
    kinds = {"tenant_role", "api_key", "branch dropped", "condition dropped", "not removed", "rule -> true",
             "rule -> false", "guard", "require -> true", "changed"}  # fmt: skip
    seen = {kind for name in PROJECTS for table in _mutants_by_table(name).values() for m in table
            for kind in kinds if kind in m.what}  # fmt: skip
    assert seen == kinds
