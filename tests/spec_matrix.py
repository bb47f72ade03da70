"""The roles and the access matrix of docs/access-matrix.md written as code, by hand, independent of policies/.

Each function answers one cell: may this principal run this command on this
row? It reads only the fixture rows (the `world`), never the policy files or
the catalog, so `rlsctl test` driven by it checks the shipped policies
against the matrix rather than against themselves.

Two refinements, both written down in docs/access-matrix.md:
- An UPDATE whose WHERE clause reads the table must leave a row the actor can
  still see (PostgreSQL applies SELECT policies to the new row, and to RETURNING rows:
  docs/access-matrix.md, decision 1).
- "the version" an approval names must be a version of the approved prompt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from rlsctl.tester.run import CellContext

RANKS = ("MEMBER", "ADMIN", "OWNER")
RETENTION_DAYS = {
    "PerformanceMetrics": ("createdAt", 90),
    "UsageAnalytics": ("lastUsedAt", 400),
    "AuditLog": ("createdAt", 365),
}


class World:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def find(self, table: str, key: Any) -> dict[str, Any] | None:
        for row in self.rows.get(table, []):
            if row["id"] == key:
                return row
        return None

    def rank(self, user: str | None, team: str | None) -> str | None:
        """The TeamMember role, and Team.ownerId counts as OWNER (docs/access-matrix.md)."""
        if user is None or team is None:
            return None
        found = None
        for member in self.rows.get("TeamMember", []):
            if member["userId"] == user and member["teamId"] == team:
                found = member["role"]
        team_row = self.find("Team", team)
        if team_row is not None and team_row["ownerId"] == user:
            return "OWNER"
        return found

    def at_least(self, user: str | None, team: str | None, rank: str) -> bool:
        held = self.rank(user, team)
        return held is not None and RANKS.index(held) >= RANKS.index(rank)

    def member(self, user: str | None, team: str | None) -> bool:
        return self.at_least(user, team, "MEMBER")

    def admin(self, user: str | None, team: str | None) -> bool:
        return self.at_least(user, team, "ADMIN")

    def owner(self, user: str | None, team: str | None) -> bool:
        return self.at_least(user, team, "OWNER")

    def teams(self, user: str | None) -> set[str]:
        return {team["id"] for team in self.rows.get("Team", []) if self.member(user, team["id"])}

    def prompt_visible(self, user: str | None, prompt_id: Any) -> bool:
        prompt = self.find("Prompt", prompt_id)
        if prompt is None or user is None:
            return False
        return prompt["userId"] == user or prompt.get("teamId") in self.teams(user)

    def prompt_updatable(self, user: str | None, prompt_id: Any) -> bool:
        prompt = self.find("Prompt", prompt_id)
        if prompt is None or user is None or not self.prompt_visible(user, prompt_id):
            return False
        return prompt["userId"] == user or self.admin(user, prompt.get("teamId"))


def _expired(table: str, row: dict[str, Any]) -> bool:
    column, days = RETENTION_DAYS[table]
    value = dt.datetime.fromisoformat(row[column])
    return value < dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=days)


def _changed(old: dict[str, Any], new: dict[str, Any], column: str) -> bool:
    return old.get(column) != new.get(column)


# -- the app role: docs/access-matrix.md row by row ---------------------------------------


def app_cell(c: CellContext, w: World, u: str | None) -> bool:
    if u is None:
        return False  # no identity, no access to any tenant row (docs/identity.md)
    old, new = c.row, c.new
    t, cmd = c.table, c.command
    if t == "User":
        if cmd == "select":
            return old["id"] == u or bool(w.teams(u) & w.teams(old["id"]))
        if cmd == "insert":
            return old["id"] == u
        if cmd == "update":
            return old["id"] == u and new["id"] == u
        return old["id"] == u
    if t == "Team":
        if cmd == "select":
            return w.member(u, old["id"])
        if cmd == "insert":
            return old["ownerId"] == u
        if cmd == "update":
            if not w.admin(u, old["id"]):
                return False
            return not _changed(old, new, "ownerId") or w.owner(u, old["id"])
        return w.owner(u, old["id"])
    if t == "TeamMember":
        team = old["teamId"]
        if cmd == "select":
            return w.member(u, team)
        if cmd == "insert":
            return w.admin(u, team) and (old["role"] != "OWNER" or w.owner(u, team))
        if cmd == "update":
            if not w.admin(u, team):
                return False
            if _changed(old, new, "teamId") or _changed(old, new, "userId"):
                return False  # a membership never moves: it would skip the other team's insert rules
            if (old["role"] == "OWNER" or new["role"] == "OWNER") and not w.owner(u, team):
                return False  # an ADMIN cannot change OWNER rows nor grant OWNER
            return not (old["userId"] == u and _changed(old, new, "role"))  # nobody changes their own role
        return old["userId"] == u or (w.admin(u, team) and (old["role"] != "OWNER" or w.owner(u, team)))
    if t == "Prompt":
        if cmd == "select":
            return old["userId"] == u or old.get("teamId") in w.teams(u)
        if cmd == "insert":
            return old["userId"] == u and (old.get("teamId") is None or w.member(u, old["teamId"]))
        if cmd == "update":
            if not (old["userId"] == u or w.admin(u, old.get("teamId"))):
                return False
            if not (old["userId"] == u or old.get("teamId") in w.teams(u)):
                return False
            if _changed(old, new, "userId"):
                return False  # "userId" never changes
            team = new.get("teamId")
            if team is not None and not (w.member(u, team) and w.member(old["userId"], team)):
                return False
            return new["userId"] == u or team in w.teams(u)  # the actor still sees the row
        return old["userId"] == u or w.admin(u, old.get("teamId"))
    if t == "PromptVersion":
        if cmd == "select":
            return w.prompt_visible(u, old["promptId"])
        if cmd == "insert":
            return w.prompt_updatable(u, old["promptId"]) and old["createdBy"] == u
        return False  # never
    if t == "PromptApproval":
        if cmd == "select":
            return w.prompt_visible(u, old["promptId"])
        if cmd == "insert":
            prompt = w.find("Prompt", old["promptId"])
            version = w.find("PromptVersion", old["versionId"])
            return (
                prompt is not None
                and w.prompt_visible(u, prompt["id"])
                and w.admin(u, prompt.get("teamId"))
                and old["approverId"] == u
                and version is not None
                and version["promptId"] == prompt["id"]
                and version["createdBy"] != u
            )
        if cmd == "update":
            if any(_changed(old, new, column) for column in ("promptId", "versionId", "approverId")):
                return False  # "own approvals": an approval keeps what it approves and who approved it
            return old["approverId"] == u and w.prompt_visible(u, old["promptId"])
        return False  # never
    if t == "UsageAnalytics":
        if cmd == "select":
            return old["userId"] == u or w.admin(u, old.get("teamId"))
        if cmd == "insert":
            return old["userId"] == u and (old.get("teamId") is None or w.member(u, old["teamId"]))
        if cmd == "update":
            team = new.get("teamId")
            return old["userId"] == u and new["userId"] == u and (team is None or w.member(u, team))
        return False  # never
    if t == "PerformanceMetrics":
        if cmd in ("select", "insert"):
            return w.prompt_visible(u, old["promptId"])
        return False  # never
    if t == "ApiKey":
        if cmd == "update":
            return w.admin(u, old["teamId"]) and w.admin(u, new["teamId"])
        return w.admin(u, old["teamId"])
    if t == "AuditLog":
        if cmd == "select":
            return old["userId"] == u or w.admin(u, old.get("teamId"))
        if cmd == "insert":
            return old["userId"] == u and (old.get("teamId") is None or w.member(u, old["teamId"]))
        return False  # never: append-only
    raise AssertionError(f"the access matrix has no row for {t}")


# -- the other roles: docs/access-matrix.md, Roles -----------------------------------------


def other_role_cell(c: CellContext, role: str) -> bool:
    if role == "owner":
        return c.command == "select"  # sees every row (validation, backups), writes nothing
    if role == "auditor":
        return c.table == "AuditLog" and c.command == "select"
    if role == "analyst":
        return c.table in ("UsageAnalytics", "PerformanceMetrics") and c.command == "select"
    if role == "retention":
        return c.table in RETENTION_DAYS and c.command in ("select", "delete") and _expired(c.table, c.row)
    raise AssertionError(f"the access matrix has no role {role}")


# -- API-key sessions: docs/identity.md, API-key sessions --------------------------------

ENCRYPTED = {"PerformanceMetrics": {"errorMessage"}, "UsageAnalytics": {"metadata"}}


def key_session(w: World, raw_key: str) -> tuple[str, set[str]] | None:
    """(team, scopes) of the ApiKey row hashing to the raw key, unless it is expired; None: no session."""
    digest = hashlib.sha256(raw_key.encode()).hexdigest()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for row in w.rows.get("ApiKey", []):
        if row["hashedKey"] != digest:
            continue
        if row.get("expiresAt") and dt.datetime.fromisoformat(row["expiresAt"]) <= now:
            return None
        return row["teamId"], set(row["scopes"])
    return None


def key_cell(c: CellContext, w: World, raw_key: str) -> bool:
    """Policies grant the key's team rows per scope, nothing else (prompts:write also reads what it writes)."""
    session = key_session(w, raw_key)
    if session is None:
        return False
    team, scopes = session
    old, new, t, cmd = c.row, c.new, c.table, c.command
    prompts = bool(scopes & {"prompts:read", "prompts:write"})

    def prompt_team(prompt_id: Any) -> Any:
        prompt = w.find("Prompt", prompt_id)
        return prompt.get("teamId") if prompt else None

    if t == "Prompt":
        if cmd == "select":
            return prompts and old.get("teamId") == team
        writes = "prompts:write" in scopes
        if cmd == "insert":
            return writes and old.get("teamId") == team and w.member(old["userId"], team)
        if cmd == "update":
            assert new is not None
            return (
                writes
                and old.get("teamId") == team
                and w.member(old["userId"], team)
                and not _changed(old, new, "userId")
                and new.get("teamId") == team
            )
        return False
    if t in ("PromptVersion", "PromptApproval"):
        return cmd == "select" and prompts and prompt_team(old["promptId"]) == team
    if t == "UsageAnalytics":
        return cmd == "select" and "analytics:read" in scopes and old.get("teamId") == team
    if t == "PerformanceMetrics":
        return cmd == "select" and "analytics:read" in scopes and prompt_team(old["promptId"]) == team
    if t == "AuditLog":
        return cmd == "select" and "audit:read" in scopes and old.get("teamId") == team
    return False


def keys_role_cell(c: CellContext) -> bool:
    """Rotation and backfill: every row of an encrypted table, rewriting only its encrypted columns."""
    encrypted = ENCRYPTED.get(c.table)
    if encrypted is None:
        return False  # the API-key table and the membership: only while a key is being presented
    if c.command == "select":
        return True
    return c.command == "update" and set(c.set_columns) <= encrypted


def expectation(c: CellContext) -> bool:
    world = World(c.world)
    # docs/threat-model.md, Guarantees: a transaction acts for one principal. A session that set a user cannot
    # authenticate a key (nothing runs); one that authenticated a key first acts as the key.
    if c.principal.first == "user":
        return False
    if c.principal.api_key is not None:
        return key_cell(c, world, c.principal.api_key)
    if c.principal.role_key == "app":
        return app_cell(c, world, c.principal.user_id)
    if c.principal.role_key == "keys":
        return keys_role_cell(c)
    return other_role_cell(c, c.principal.role_key)
