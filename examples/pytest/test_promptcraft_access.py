"""PromptCraft's access rules (docs/access-matrix.md), tested from pytest with rlsctl's plugin.

The plugin comes with rlsctl (docs/pytest-plugin.md). Run from the project's directory (the one
holding policies/ and migrations/):

    RLSCTL_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres pytest examples/pytest

The `rlsctl_db` fixture creates a throw-away database on that server, runs the project's
migrations and `rlsctl apply`, and drops the database and its roles when the session ends. Each
test gets `rlsctl_tx`: a transaction holding the rows of policies/fixtures.yaml (team A: an
owner, a co-owner, an ADMIN and a MEMBER; team B: an owner, an ADMIN and a MEMBER; an outsider;
prompts, memberships, API keys...), rolled back when the test ends. A key or user id may be given
as the name of its fixture row ("u_a_member", "team_a", "m_a_owner").
"""

from __future__ import annotations

from rlsctl.testing import Delete, Insert, Update
from rlsctl.testing.session import RlsctlTransaction


def test_a_member_reads_the_prompts_shared_with_their_team(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_team_role("team_a", "MEMBER") as member:
        member.assert_visible("Prompt", "p_a_admin_shared")
        member.assert_visible("Prompt", where={"teamId": "@team_a", "title": "AB admin shared"})


def test_a_member_of_team_b_cannot_read_team_a_prompts(rlsctl_tx: RlsctlTransaction) -> None:
    # The MEMBER of team B in the fixture rows (u_b_member) acts, as the application's role.
    with rlsctl_tx.as_team_role("team_b", "MEMBER") as member:
        member.assert_not_visible("Prompt", "p_a_member_shared")
        member.assert_not_visible("Prompt", where={"teamId": "@team_a"})
        member.assert_rows_affected('SELECT * FROM "Prompt" WHERE "teamId" = %s', 0, [rlsctl_tx.key("team_a")])


def test_private_prompts_stay_private_inside_the_team(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_team_role("team_a", "OWNER") as owner:
        owner.assert_not_visible("Prompt", "p_a_member_private")


def test_an_admin_removes_a_member_but_not_an_owner(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_team_role("team_a", "ADMIN") as admin:
        # A DELETE the policies refuse affects no row; the row exists, so the denial means something.
        admin.assert_denied(Delete("TeamMember", "m_a_owner"))
        admin.assert_rows_affected(Delete("TeamMember", "m_a_member"), 1)


def test_nobody_raises_their_own_rank(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_user("u_a_admin") as admin:
        admin.assert_denied(Update("TeamMember", "m_a_admin", {"role": "OWNER"}))


def test_a_user_cannot_write_a_prompt_in_another_users_name(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_user("u_outsider") as outsider:
        # A refused INSERT raises 42501 (the WITH CHECK fails); "@name" is a fixture row's key.
        outsider.assert_denied(Insert("Prompt", {"userId": "@u_a_member", "title": "forged", "content": "x"}))
        outsider.assert_rows_affected(Insert("Prompt", {"userId": "@u_outsider", "title": "mine", "content": "x"}), 1)


def test_a_read_key_reads_its_team_and_writes_nothing(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_api_key("pc_test_a_read") as key:
        key.assert_visible("Prompt", "p_a_member_shared")
        key.assert_not_visible("Prompt", "p_b_member_shared")
        key.assert_denied(Update("Prompt", "p_a_member_shared", {"title": "changed by a read key"}))


def test_an_expired_key_reads_nothing(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_api_key("pc_test_a_expired") as key:
        assert not key.authenticated
        key.assert_not_visible("Prompt", "p_a_member_shared")


def test_the_analyst_reads_usage_across_teams_and_no_prompt(rlsctl_tx: RlsctlTransaction) -> None:
    with rlsctl_tx.as_role("analyst") as analyst:
        analyst.assert_visible("UsageAnalytics", "ua_b_member_team")
        analyst.assert_denied('SELECT title FROM "Prompt"')  # no privilege at all: 42501


def test_rows_a_test_writes_as_the_owner(rlsctl_tx: RlsctlTransaction) -> None:
    # The owner role writes a test's own rows; they stay until the test ends.
    with rlsctl_tx.as_owner() as owner:
        owner.execute(
            'INSERT INTO "Prompt" (id, "userId", "teamId", title, content, "updatedAt") '
            "VALUES ('p_new', %s, %s, 'new', 'new', now())",
            [rlsctl_tx.key("u_b_member"), rlsctl_tx.key("team_b")],
        )
    with rlsctl_tx.as_team_role("team_b", "ADMIN") as admin:
        admin.assert_visible("Prompt", "p_new")
    with rlsctl_tx.as_team_role("team_a", "ADMIN") as admin:
        admin.assert_not_visible("Prompt", "p_new")


def test_a_tests_writes_are_rolled_back(rlsctl_tx: RlsctlTransaction) -> None:
    # The test above inserted p_new: it is gone, whatever order the tests run in.
    with rlsctl_tx.as_owner() as owner:
        owner.assert_rows_affected("SELECT FROM \"Prompt\" WHERE id = 'p_new'", 0)
