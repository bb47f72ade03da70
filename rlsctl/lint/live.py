"""The lint model from a live database: seven set-based queries, one round trip."""

from __future__ import annotations

import itertools

import psycopg

from rlsctl.catalog import kek
from rlsctl.catalog import queries as catalog
from rlsctl.lint.model import (
    DefaultAcl,
    ForeignKey,
    Function,
    Grant,
    Index,
    LintModel,
    Policy,
    Relation,
    Role,
    Schema,
    Trigger,
    canonical_type,
    parse_secret_comment,
)
from rlsctl.pg import statements

QUERIES = (
    "lint_relations",
    "lint_policies",
    "lint_privileges",
    "lint_functions",
    "lint_roles",
    "lint_indexes",
    "lint_misc",
)


def read_model(
    conn: psycopg.Connection, key_settings: tuple[str, ...] = (), identity_settings: tuple[str, ...] = ()
) -> LintModel:
    """The live catalog as a lint model; `key_settings`: the project's key-encryption key setting;
    `identity_settings`: the setting the policies read the session's user from."""
    with conn.transaction(force_rollback=True):
        statements.run(conn, "stored_form_settings")
        relations, policies, privileges, functions, roles, indexes, misc = catalog.fetch_many(
            conn, [(name, {}) for name in QUERIES]
        )
    model = LintModel(source="live")
    for row in relations:
        relation = Relation(
            schema=row["schema"],
            name=row["name"],
            kind=row["kind"],
            owner=row["owner"],
            rls=row["rls"],
            forced=row["forced"],
            parent=row["parent"],
            columns=list(row["columns"]),
            security_invoker=row["security_invoker"],
            sources=set(row["sources"]),
            primary_key=tuple(row["primary_key"]),
            types={c: canonical_type(t) for c, t in zip(row["columns"], row["column_types"], strict=True)},
        )
        model.relations[relation.qualified] = relation
    model.policies = [
        Policy(
            r["schema"],
            r["table_name"],
            r["name"],
            r["command"],
            r["permissive"],
            tuple(r["roles"]),
            r["using_expr"],
            r["check_expr"],
        )
        for r in policies
    ]
    model.grants = {
        Grant(r["kind"], r["schema"], r["object"], r["grantee"], r["privilege"], r["column_name"]) for r in privileges
    }
    for r in functions:
        function = Function(
            schema=r["schema"],
            name=r["name"],
            args=r["args"],
            security_definer=r["security_definer"],
            volatility=r["volatility"],
            search_path=r["search_path"],
            language=r["language"],
            body=r["body"] or "",
            owner=r["owner"],
            from_extension=r["from_extension"],
            returns=r["returns"] or "",
            executors=set(r["executors"]),
            leakproof=r["leakproof"],
        )
        model.functions[function.qualified] = function
        model.grants |= {
            Grant("function", function.schema, f"{function.name}({function.args})", e, "EXECUTE")
            for e in function.executors
        }
    model.roles = {
        r["name"]: Role(r["name"], r["login"], r["superuser"], r["bypassrls"], set(r["member_of"]), r["bootstrap"])
        for r in roles
    }
    for r in indexes:
        if r["kind"] == "index":
            columns = tuple(itertools.takewhile(bool, r["columns"]))  # an expression key has no name
            model.indexes.append(
                Index(r["schema"], r["table_name"], r["name"], columns, r["expression"],
                      method=r["method"], predicate=r["predicate"], valid=r["valid"])
            )  # fmt: skip
        else:
            model.foreign_keys.append(
                ForeignKey(r["schema"], r["table_name"], r["name"], tuple(r["columns"]), r["ref_table"])
            )
    for r in misc:
        if r["kind"] == "extension":
            model.extensions[r["a"]] = r["b"]
        elif r["kind"] == "schema":
            model.schemas[r["a"]] = Schema(r["a"], r["b"])
        elif r["kind"] == "default_acl":
            model.default_acls.append(DefaultAcl(r["a"], r["b"], r["c"], set(r["list"] or ())))
        elif r["kind"] == "trigger":
            model.triggers.append(Trigger(r["a"], r["b"], r["c"], r["d"]))
        elif r["kind"] == "database":
            model.database_owner = r["b"]
        elif r["kind"] == "secret":
            readers = parse_secret_comment(r["d"])
            if readers is not None:
                model.secrets[f"{r['a']}.{r['b']}.{r['c']}"] = readers
    for grant in model.grants:
        if grant.kind == "schema" and grant.privilege == "CREATE" and grant.object in model.schemas:
            model.schemas[grant.object].creators.add(grant.grantee)
    with conn.transaction(force_rollback=True):
        statements.run(conn, "secure_path")
        for setting in sorted({*key_settings, *kek.key_settings(conn)}):
            places = kek.setting_exposure(conn, setting)
            if places:
                model.key_exposure[setting] = places
        for setting in sorted({*identity_settings, *kek.identity_settings(conn)}):
            # The same places give every login (of a database, of a role) a value for it: a default user.
            places = kek.setting_exposure(conn, setting)
            if places:
                model.identity_defaults[setting] = places
    return model
