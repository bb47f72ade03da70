"""Expected outcomes: the declared policies evaluated in Python over fixture rows.

This is a second implementation of what the rendered SQL means, written
from PostgreSQL's documented rules ("Policies Applied by Command Type"):

- SELECT: a row is visible when any permissive SELECT policy of the role
  holds for it;
- INSERT (no RETURNING): INSERT privilege on the given columns, and any
  INSERT policy's WITH CHECK holds for the new row, else an error;
- UPDATE ... WHERE pk = x: UPDATE privilege on the set columns and SELECT on
  the key; the old row must pass SELECT and UPDATE USING (else 0 rows); then
  guards, the UPDATE WITH CHECK (USING when absent) and, because the WHERE
  reads columns, the SELECT policies must hold for the new row (else error);
- DELETE ... WHERE pk = x: SELECT and DELETE USING on the old row (else 0 rows).

Subqueries inside policies read other tables through the same role's RLS;
`tenant_ids` reads the membership as of the statement's start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from rlsctl.declare import expr as e
from rlsctl.declare.state import DeclaredState, GrantSpec, PolicySpec, TableSpec

Row = dict[str, Any]


@dataclass(frozen=True)
class Principal:
    name: str
    role_key: str
    role: str
    user_id: str | None  # None: no identity (unset or empty)
    sets_identity: bool = True  # False: the identity setting is never set (vs. set to '')
    description: str = ""
    api_key: str | None = None  # the raw key the session authenticates with
    api_session: ApiSession | None = None  # what authenticate_api_key records (None: wrong or expired key)
    # Both a user and a key (docs/identity.md): "api_key" when the key is authenticated first (the
    # session acts for the key alone), "user" when the user is set first (authentication refuses).
    first: str | None = None
    presented_user: str | None = None  # the user id a mixed session sets (ignored, or refused)
    raw_setting: str | None = None  # the identity setting's value as given, valid for the type or not

    @property
    def refused(self) -> bool:
        """The session cannot start: a key authenticated after a user identity raises."""
        return self.first == "user"


@dataclass(frozen=True)
class ApiSession:
    tenant: Any
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    detail: str  # why: "ok", "0 rows", "no privilege", "check fails", ...


REFUSED = Outcome(False, "error: a user session cannot also authenticate an API key")


class EvalError(Exception):
    """The statement would raise for a reason other than a policy (e.g. a privilege a subquery lacks)."""


@dataclass
class Evaluator:
    state: DeclaredState
    world: dict[str, list[Row]]
    principal: Principal
    _visible: dict[str, list[Row]] = field(default_factory=dict)
    _tenants: dict[str, set[Any]] = field(default_factory=dict)

    # -- privileges ------------------------------------------------------------

    def _table(self, name: str) -> TableSpec | None:
        for table in self.state.tables:
            if table.name == name:
                return table
        return None

    def _grant(self, table: str, privilege: str) -> GrantSpec | None:
        spec = self._table(table)
        return spec.grant_for(self.principal.role_key, privilege) if spec else None

    def has_privilege(self, table: str, privilege: str, columns: tuple[str, ...] = ()) -> bool:
        if self.principal.role == self.state.owner and self._table(table) is not None:
            return True  # the owner holds every privilege; only its (forced) policies limit it
        grant = self._grant(table, privilege)
        if grant is None:
            return False
        if grant.columns is None:
            return True
        return all(column in grant.columns for column in columns)

    def _policies(self, table: str, command: str) -> tuple[PolicySpec, ...]:
        spec = self._table(table)
        return spec.policies_for(self.principal.role_key, command) if spec else ()

    # -- three-valued evaluation of the IR -------------------------------------------

    def truth(self, pred: e.Pred, env: dict[int, Row]) -> e.Truth:
        if isinstance(pred, e.Const):
            return pred.value
        if isinstance(pred, e.And):
            results = [self.truth(item, env) for item in pred.items]
            if False in results:
                return False
            return None if None in results else True
        if isinstance(pred, e.Or):
            results = [self.truth(item, env) for item in pred.items]
            if True in results:
                return True
            return None if None in results else False
        if isinstance(pred, e.Not):
            value = self.truth(pred.item, env)
            return None if value is None else not value
        if isinstance(pred, e.Compare):
            return _compare(self.value(pred.left, env), pred.op, self.value(pred.right, env))
        if isinstance(pred, e.IsNull):
            return self.value(pred.operand, env) is None
        if isinstance(pred, e.InList):
            value = self.value(pred.operand, env)
            if value is None:
                return None
            return any(_compare(value, "=", item.value) for item in pred.values)
        if isinstance(pred, e.InTenants):
            value = self.value(pred.operand, env)
            if value is None:
                return None
            return value in self.tenant_ids(pred.tenants.rank)
        if isinstance(pred, e.InApiKeyMembers):
            value = self.value(pred.operand, env)
            if value is None:
                return None
            return value in self.api_key_members()
        if isinstance(pred, e.InApiKeyRows):
            value = self.value(pred.operand, env)
            if value is None:
                return None
            return any(_same(value, key) for key in self.api_key_rows(pred.table, pred.scope))
        if isinstance(pred, e.RoleMember):
            return pred.role == self.principal.role
        if isinstance(pred, e.Exists):
            return any(
                self.truth(pred.where, {**env, pred.alias: row}) is True for row in self.visible_rows(pred.table)
            )
        raise TypeError(f"cannot evaluate {pred!r}")

    def value(self, operand: e.Operand, env: dict[int, Row]) -> Any:
        if isinstance(operand, e.Col):
            return env[operand.alias].get(operand.name)
        if isinstance(operand, e.Identity):
            return self.principal.user_id
        if isinstance(operand, e.Value):
            return operand.value
        if isinstance(operand, e.ApiKeyTenant):
            session = self.principal.api_session
            if session is None or (operand.scope is not None and operand.scope not in session.scopes):
                return None
            return session.tenant
        if isinstance(operand, e.PresentedKeyHash):
            return None  # set only inside authenticate_api_key
        if isinstance(operand, e.Cutoff):
            now = dt.datetime.now(dt.UTC)  # aware for a timestamptz column, naive UTC for a timestamp one
            return (now if operand.with_zone else now.replace(tzinfo=None)) - dt.timedelta(days=operand.days)
        raise TypeError(f"cannot evaluate {operand!r}")

    def tenant_ids(self, rank: str) -> set[Any]:
        """What rlsctl.tenant_ids(rank) returns for the principal (membership as of statement start)."""
        if rank in self._tenants:
            return self._tenants[rank]
        tenancy = self.state.tenancy
        user = self.principal.user_id
        found: set[Any] = set()
        if tenancy is not None and user is not None:
            wanted = tenancy.ranks[tenancy.ranks.index(rank) :] if rank in tenancy.ranks else ()
            if tenancy.membership_table is not None:
                for row in self.world.get(tenancy.membership_table, []):
                    if row.get(tenancy.membership_user) != user:
                        continue
                    held = row.get(tenancy.membership_rank) if tenancy.membership_rank else tenancy.ranks[0]
                    if held in wanted:
                        found.add(row.get(tenancy.membership_tenant))
            if tenancy.tenants_owner is not None and wanted:
                for row in self.world.get(tenancy.tenants_table, []):
                    if row.get(tenancy.tenants_owner) == user:
                        found.add(row.get(tenancy.tenants_key))
        self._tenants[rank] = found
        return found

    def api_key_rows(self, table: str, scope: str) -> list[Any]:
        """What rlsctl.api_key_rows_<table>(scope) returns: run as the keys role, filtered by its reach."""
        session = self.principal.api_session
        if session is None or scope not in session.scopes or self.state.keys is None:
            return []
        parent = next(p for p in self.state.api_key_parents if p.table == table)
        if scope not in self.state.api_key_scopes(parent.function):
            return []  # a scope no policy asks this helper for
        keys_role = next(role for role in self.state.roles if role.name == self.state.keys)
        as_keys = Evaluator(
            self.state, self.world, replace(self.principal, role_key=keys_role.key, role=keys_role.name)
        )
        rows = [row for row in as_keys.visible_rows(table) if as_keys.truth(parent.reach, {0: row}) is True]
        return [row.get(parent.key) for row in rows]

    def api_key_members(self) -> set[Any]:
        """The users for whom rlsctl.api_key_member(user) is true: every user of the API key's
        tenant, when the key holds a scope of a rule that asks for them."""
        tenancy, session = self.state.tenancy, self.principal.api_session
        if tenancy is None or session is None:
            return set()
        if not set(session.scopes) & set(self.state.api_key_scopes("api_key_member")):
            return set()
        found: set[Any] = set()
        if tenancy.membership_table is not None:
            for row in self.world.get(tenancy.membership_table, []):
                if _same(row.get(tenancy.membership_tenant), session.tenant):
                    found.add(row.get(tenancy.membership_user))
        if tenancy.tenants_owner is not None:
            for row in self.world.get(tenancy.tenants_table, []):
                if _same(row.get(tenancy.tenants_key), session.tenant):
                    found.add(row.get(tenancy.tenants_owner))
        return found

    def policies(self, table: str, command: str) -> tuple[PolicySpec, ...]:
        return self._policies(table, command)

    def policy_holds(self, policy: PolicySpec, row: Row, use_check: bool = False) -> bool:
        pred = policy.check if use_check and policy.check is not None else policy.using
        try:
            return pred is not None and self.truth(pred, {0: row}) is True
        except EvalError:
            return False

    def passes(self, table: str, command: str, row: Row, use_check: bool = False) -> bool:
        """Any permissive policy of the role for `command` holds for `row`."""
        for policy in self._policies(table, command):
            pred = policy.using
            if use_check and policy.check is not None:
                pred = policy.check
            if pred is not None and self.truth(pred, {0: row}) is True:
                return True
        return False

    def visible_rows(self, table: str) -> list[Row]:
        """Rows of `table` that a subquery run as the role sees (privilege needed, RLS applied)."""
        if table not in self._visible:
            if not self.has_privilege(table, "SELECT"):
                raise EvalError(f"{self.principal.role} has no SELECT on {table}, which a policy reads")
            self._visible[table] = [row for row in self.world.get(table, []) if self.passes(table, "select", row)]
        return self._visible[table]

    # -- command outcomes -------------------------------------------------------------

    def select(self, table: str, row: Row, key: tuple[str, ...]) -> Outcome:
        if self.principal.refused:
            return REFUSED
        if not self.has_privilege(table, "SELECT", key):
            return Outcome(False, "error: no SELECT privilege")
        return self._guarded(
            lambda: Outcome(True, "visible") if self.passes(table, "select", row) else Outcome(False, "hidden")
        )

    def insert(self, table: str, new: Row, columns: tuple[str, ...]) -> Outcome:
        if self.principal.refused:
            return REFUSED
        if not self.has_privilege(table, "INSERT", columns):
            return Outcome(False, "error: no INSERT privilege")

        def decide() -> Outcome:
            if self.passes(table, "insert", new, use_check=True):
                return Outcome(True, "inserted")
            return Outcome(False, "error: WITH CHECK fails")

        return self._guarded(decide)

    def update(self, table: str, old: Row, new: Row, columns: tuple[str, ...], key: tuple[str, ...]) -> Outcome:
        if self.principal.refused:
            return REFUSED
        if not self.has_privilege(table, "UPDATE", columns) or not self.has_privilege(table, "SELECT", key):
            return Outcome(False, "error: no UPDATE privilege")

        def decide() -> Outcome:
            if not (self.passes(table, "select", old) and self.passes(table, "update", old)):
                return Outcome(False, "0 rows")
            refused = self._guard_refuses(table, old, new)
            if refused:
                return Outcome(False, f"error: guard: {refused}")
            if not self.passes(table, "update", new, use_check=True):
                return Outcome(False, "error: WITH CHECK fails")
            if not self.passes(table, "select", new):
                return Outcome(False, "error: new row not visible")
            return Outcome(True, "1 row")

        return self._guarded(decide)

    def delete(self, table: str, row: Row, key: tuple[str, ...]) -> Outcome:
        if self.principal.refused:
            return REFUSED
        if not self.has_privilege(table, "DELETE") or not self.has_privilege(table, "SELECT", key):
            return Outcome(False, "error: no DELETE privilege")

        def decide() -> Outcome:
            if self.passes(table, "select", row) and self.passes(table, "delete", row):
                return Outcome(True, "1 row")
            return Outcome(False, "0 rows")

        return self._guarded(decide)

    def _guard_refuses(self, table: str, old: Row, new: Row) -> str | None:
        spec = self._table(table)
        for guard in spec.guards if spec else ():
            if self.principal.role not in guard.roles:
                continue
            changed = any(not _same(old.get(c), new.get(c)) for c in guard.changed)
            if not changed:
                continue
            both = {e.OLD_ROW: old, e.NEW_ROW: new}
            if (
                self.truth(guard.require, {0: old, **both}) is not True
                or self.truth(guard.require_new, {0: new, **both}) is not True
            ):
                return guard.message
        return None

    @staticmethod
    def _guarded(decide: Any) -> Outcome:
        try:
            return decide()
        except EvalError as exc:
            return Outcome(False, f"error: {exc}")


def _same(left: Any, right: Any) -> bool:
    return _compare(left, "=", right) is True or (left is None and right is None)


def _as_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def _compare(left: Any, op: str, right: Any) -> e.Truth:
    if left is None or right is None:
        return None
    if isinstance(left, dt.datetime) or isinstance(right, dt.datetime):
        left, right = _as_time(left), _as_time(right)
    elif type(left) is not type(right):
        left, right = str(left), str(right)
    if op == "=":
        return bool(left == right)
    if op == "<>":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    raise ValueError(op)
