"""Invariants that need no expectations: derived from `tenancy`, the ranks and the cells alone.

Checked by every `rlsctl test`, with or without expectation files:

- **tenant isolation**: no app principal (a user, an API-key session, no identity)
  reads, inserts, updates or deletes a row of a tenant it does not belong to. A
  table shared on purpose says so (`invariants: shared:` in the expectations, with
  a reason); a row naming the user in its `own_rows` column is the user's, whatever
  tenant it is in (an author who left the team), and so is a row hanging from it
  through its tenant mapping (the versions and metrics of that author's prompt);
- **nobody raises their own rank**: the runner tries, for every user holding a
  membership, to raise it, and to make themselves the tenant's owner; both must
  be refused (`rank_probes`);
- **a denied write changes nothing**: the runner compares the table before and
  after every write the database refused (`Outcome.changed`).

- **rank monotonicity**: a user raised one step within a tenant (the next rank
  on their membership row; holding the top rank, named in the tenant's owner
  column) can do at least what they could before: the runner raises each user
  in a savepoint and runs their cells again (`run.promotions`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlsctl.policy.model import TenantVia
from rlsctl.tester.expectations import Domain, Expectations, same

ISOLATION = "tenant isolation"
OWN_RANK = "nobody raises their own rank"
DENIED_WRITE = "a denied write changes nothing"
MONOTONE = "a higher rank can do what a lower one could"


@dataclass(frozen=True)
class Violation:
    invariant: str
    table: str
    command: str
    case: str
    principal: str
    detail: str
    statement: str = ""  # what the principal ran
    setup: str = ""  # what the owner role ran first (rank monotonicity: the raise)


@dataclass(frozen=True)
class Seen:
    """One cell as the invariants see it."""

    table: str
    command: str
    case: str
    principal: str
    kind: str | None  # user, api_key, anonymous for the app role; None for other roles
    user: Any
    key_tenant: Any
    allowed: bool
    rows: tuple[dict[str, Any], ...]  # the old row, and the new one of an insert or update


def owned(domain: Domain, own_rows: dict[str, str], table: str, row: dict[str, Any], user: Any) -> bool:
    """The row names the user in its table's `own_rows` column, or hangs (through its `tenant:
    {via: ...}` mapping) from a row that does: a prompt's versions and metrics belong to the
    prompt's author as the prompt does, whatever team it is in."""
    for _ in range(len(domain.project.tables) + 1):  # a mapping never loops; bound it anyway
        own = own_rows.get(table)
        if own is not None and same(row.get(own), user):
            return True
        decl = domain.project.tables.get(table)
        via = decl.tenant if decl is not None and isinstance(decl.tenant, TenantVia) else None
        if via is None:
            return False
        parent, key = domain.parent(table, via.via, via.table, via.key)
        found = domain.find(parent, key, row.get(via.via))
        if found is None:
            return False
        table, row = parent, found
    return False


def tenant_isolation(
    seen: Iterable[Seen], domain: Domain, expectations: Expectations | None
) -> list[Violation]:
    shared = expectations.shared if expectations else {}
    own_rows = expectations.own_rows if expectations else {}
    tenancy = domain.project.tenancy
    found: list[Violation] = []
    for cell in seen:
        if not cell.allowed or cell.kind is None or not domain.has_tenant(cell.table) or cell.table in shared:
            continue
        held = domain.tenants_of(cell.user) if cell.kind == "user" else set()
        if cell.kind == "api_key" and cell.key_tenant is not None:
            held = {cell.key_tenant}
        for row in cell.rows:
            tenant = domain.tenant_of(cell.table, row)
            if tenant is None or any(same(tenant, t) for t in held):
                continue
            if cell.user is not None and owned(domain, own_rows, cell.table, row, cell.user):
                continue
            if (
                tenancy is not None
                and cell.table == tenancy.tenants.table
                and tenancy.tenants.owner is not None
                and cell.user is not None
                and same(row.get(tenancy.tenants.owner), cell.user)
            ):
                continue  # a tenant one owns (creating one's own team)
            found.append(
                Violation(
                    ISOLATION, cell.table, cell.command, cell.case, cell.principal,
                    f"allowed on a row of tenant {tenant}, which the principal does not belong to",
                )
            )  # fmt: skip
            break
    return found
