"""Shared test helpers: snapshots of the security layer, comparable across role prefixes; the
orgs example with a phase of the test's own."""

from __future__ import annotations

import shutil
from dataclasses import astuple
from pathlib import Path

from rlsctl.catalog import queries as catalog


def security_snapshot(database, helper_schema: str = "rlsctl") -> dict[str, set]:
    """Policies, grants, helper functions and triggers, with the role prefix replaced by '<p>'."""

    def norm(name: str) -> str:
        return name.replace(database.prefix, "<p>")

    with database.connect() as conn:
        policies = {
            (
                p.table,
                p.name,
                p.command,
                p.permissive,
                tuple(norm(r) for r in p.roles),
                norm(p.using or ""),
                norm(p.check or ""),
            )
            for p in catalog.policies(conn, "public")
        }
        grants = {
            (g.table, norm(g.grantee), g.privilege, g.column, g.grantable, norm(g.grantor or ""))
            for g in catalog.grants(conn, "public")
        }
        functions = {
            (
                f.name,
                f.arg_types,
                norm(f.owner),
                f.security_definer,
                norm(f.body),
                f.volatility,
                f.config,
                f.language,
                f.returns,
                tuple(norm(e) for e in f.executors),
                f.owner_executes,
            )
            for f in catalog.functions(conn, helper_schema)
            if not f.from_extension
        }
        # Everything that decides when a trigger fires, and the server's own definition.
        # the encrypt trigger's WHEN names the keys role: compared with the prefix normalised
        triggers = {
            tuple(norm(v) if isinstance(v, str) else v for v in astuple(t)) for t in catalog.triggers(conn, "public")
        }
        tables = {
            (name, norm(t.owner), t.rls_enabled, t.rls_forced) for name, t in catalog.tables(conn, "public").items()
        }
        roles = {
            (norm(r.name), r.login, r.superuser, r.bypassrls, r.createrole, r.createdb, tuple(map(norm, r.member_of)))
            for r in catalog.roles(conn, database.prefix)
        }
        helper_relations = {
            (name, norm(t.owner), t.rls_enabled, t.rls_forced)
            for name, t in catalog.tables(conn, helper_schema).items()
            if name != "applied_phase"  # rlsctl's own bookkeeping: its rows differ by design
        } | {("grant", g.table, norm(g.grantee), g.privilege, g.column) for g in catalog.grants(conn, helper_schema)}
        helper_relations |= {("policy", p.table, p.name) for p in catalog.policies(conn, helper_schema)}
        schema_privileges = {
            (p.schema, norm(p.grantee), p.privilege) for p in catalog.schema_privileges(conn, [helper_schema, "public"])
        }
        defaults = {
            (norm(d.creator), d.objtype, d.schema, norm(d.grantee), d.privilege, d.grantable)
            for d in catalog.default_privileges(conn, [r.name for r in catalog.roles(conn, database.prefix)])
        }
        extensions = set(catalog.installed_extensions(conn).items())
    return {
        "policies": policies,
        "grants": grants,
        "functions": functions,
        "triggers": triggers,
        "tables": tables,
        "roles": roles,
        "schema_privileges": schema_privileges,
        "helper_relations": helper_relations,
        "default_privileges": defaults,
        "extensions": extensions,
    }


ORGS = Path(__file__).resolve().parent.parent / "examples" / "orgs"


def orgs_with_phase(tmp_path: Path, up: str, down: str, policies: str) -> Path:
    """A copy of examples/orgs (uuid identity, organisations, memberships) with one more phase,
    `2_extra`, and one more policy file: a schema shape the shipped projects do not have."""
    root = tmp_path / "project"
    for part in ("policies", "migrations"):
        shutil.copytree(ORGS / part, root / part)
    phase = root / "migrations" / "2_extra"
    phase.mkdir()
    (phase / "01_extra.up.sql").write_text(up)
    (phase / "01_extra.down.sql").write_text(down)
    (root / "policies" / "extra.yaml").write_text(policies)
    return root
