"""The lint model from SQL statements, replayed offline with the real PostgreSQL parser.

sqlglot models ordinary DDL but turns the statements this linter cares
about most (CREATE POLICY, ALTER TABLE ... ROW LEVEL SECURITY, functions
with SECURITY DEFINER and SET search_path, GRANT on columns) into bare
commands, so statements are read with pglast 7 (the real grammar) and only
policy and view expressions go on to sqlglot (`rlsctl.lint.exprs`).

Replaying assumes PostgreSQL 15 defaults: the running user owns what it
creates, PUBLIC may execute new functions until revoked, PUBLIC has no
CREATE on schema public. Default privileges the running user sets
(ALTER DEFAULT PRIVILEGES without FOR ROLE) apply to what it creates later.
Column comments containing `rlsctl:secret readers=a_role,b_role` declare
secret columns (LintModel.secrets).

Each object is located (LintModel.locations) at the statement that declares
it: its file, and the line and column of the statement's first word. pglast
gives statements as character offsets that start after the previous
semicolon, so the blanks and comments before the first word are skipped.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

import pglast
from pglast import ast, enums
from pglast.stream import RawStream

from rlsctl.errors import UsageError
from rlsctl.lint.model import (
    PUBLIC,
    DefaultAcl,
    ForeignKey,
    Function,
    Grant,
    Index,
    LintModel,
    Location,
    OpenCreate,
    Policy,
    Relation,
    Role,
    Schema,
    Trigger,
    canonical_type,
    parse_secret_comment,
)
from rlsctl.lint.renames import RELATIONS, Renames
from rlsctl.schema.ddl import statement_start

RUNNER = "CURRENT_USER"  # who runs the script; unknown offline
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT", "UPDATE")
DEFAULT_PRIVILEGES = {"r": TABLE_PRIVILEGES, "S": SEQUENCE_PRIVILEGES, "f": ("EXECUTE",), "T": ("USAGE",),
                      "n": ("USAGE", "CREATE")}  # fmt: skip
AT = enums.AlterTableType
OBJ = enums.ObjectType


def deparse(node: ast.Node) -> str:
    return RawStream()(node)


def _names(nodes: Any) -> list[str]:
    return [n.sval for n in nodes or () if isinstance(n, ast.String)]


class Replay(Renames):
    """Applies statements to a model, one by one."""

    def __init__(self, model: LintModel, default_schema: str = "public") -> None:
        self.model = model
        self.schema = default_schema
        model.schemas.setdefault("public", Schema("public", "pg_database_owner"))
        # Default privileges: (creator, objtype, schema or None) -> grantee -> privileges. The built-in
        # default gives PUBLIC EXECUTE on new functions (and USAGE on types) until revoked.
        self.defaults: dict[tuple[str, str, str | None], dict[str, set[str]]] = {
            (RUNNER, "f", None): {PUBLIC: {"EXECUTE"}},
            (RUNNER, "T", None): {PUBLIC: {"USAGE"}},
        }
        self.here: Location | None = None  # the statement being replayed, when its file is worth naming

    def _declared(self, name: str) -> None:
        """The statement being replayed declares `name` (a later CREATE of the same name replaces it)."""
        if self.here is not None:
            self.model.locations[name] = self.here

    def _touched(self, name: str) -> None:
        """The statement names an object the files did not create (a grant on it, ALTER ROLE): the best place
        to point at until a statement declares it."""
        if self.here is not None:
            self.model.locations.setdefault(name, self.here)

    def _moved(self, old: str, new: str) -> None:
        """A rename: the object and what belongs to it (`old.policy`, `old.column`) keep their declaration."""
        locations = self.model.locations
        for key in [k for k in locations if k == old or k.startswith(old + ".")]:
            locations[new + key[len(old) :]] = locations.pop(key)

    # -- names ------------------------------------------------------------------

    def qualified(self, rangevar: ast.RangeVar) -> str:
        return f"{rangevar.schemaname or self.schema}.{rangevar.relname}"

    def role(self, spec: ast.RoleSpec | None) -> str:
        if spec is None:
            return PUBLIC
        kind = spec.roletype
        if kind == enums.RoleSpecType.ROLESPEC_PUBLIC:
            return PUBLIC
        if kind in (enums.RoleSpecType.ROLESPEC_CURRENT_USER, enums.RoleSpecType.ROLESPEC_SESSION_USER):
            return RUNNER
        return spec.rolename

    # -- entry -----------------------------------------------------------------

    def statement(self, stmt: ast.Node) -> None:
        handler = getattr(self, "_" + type(stmt).__name__, None)
        if handler is not None:
            handler(stmt)

    # -- tables, views, indexes -----------------------------------------------------

    def _CreateStmt(self, stmt: ast.CreateStmt, kind: str | None = None) -> None:
        name = self.qualified(stmt.relation)
        schema, _, table = name.partition(".")
        if stmt.if_not_exists:
            self._adopts("CREATE TABLE IF NOT EXISTS", schema, name)
            if name in self.model.relations:
                return
        relation = Relation(schema, table, kind or ("p" if stmt.partspec else "r"), RUNNER)
        if stmt.partbound is not None and stmt.inhRelations:
            relation.parent = self.qualified(stmt.inhRelations[0])
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                relation.columns.append(element.colname)
                relation.types[element.colname] = canonical_type(_type(element.typeName))
                for constraint in element.constraints or ():
                    self._constraint(relation, constraint, (element.colname,))
            elif isinstance(element, ast.Constraint):
                self._constraint(relation, element, tuple(_names(element.keys) or _names(element.fk_attrs)))
        self.model.relations[name] = relation
        self._declared(name)
        self._default_grants("r", schema, table)
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef) and _draws_from_sequence(element):
                self._implicit_sequence(schema, f"{table}_{element.colname}_seq")

    def _implicit_sequence(self, schema: str, name: str) -> None:
        """The sequence a serial or identity column owns (named as PostgreSQL names it, without truncation)."""
        self.model.relations.setdefault(f"{schema}.{name}", Relation(schema, name, "S", RUNNER))
        self._declared(f"{schema}.{name}")
        self._default_grants("S", schema, name)

    def _CreateForeignTableStmt(self, stmt: ast.CreateForeignTableStmt) -> None:
        self._CreateStmt(stmt.base, kind="f")

    def _adopts(self, statement: str, schema: str, name: str) -> None:
        """Note a statement that keeps an existing object (whoever made it) while others can create in the
        schema: one of them may have made it first (SEC017)."""
        found = self.model.schemas.get(schema)
        creators = frozenset(found.creators - {found.owner, RUNNER}) if found else frozenset()
        if creators:
            self.model.open_creates.append(OpenCreate(statement, name, schema, creators))
            self._declared(name)  # SEC017 is about this statement

    def _constraint(self, relation: Relation, constraint: ast.Constraint, columns: tuple[str, ...]) -> None:
        kind = constraint.contype
        if kind == enums.ConstrType.CONSTR_PRIMARY:
            relation.primary_key = tuple(_names(constraint.keys)) or columns
            self.model.indexes.append(
                Index(relation.schema, relation.name, f"{relation.name}_pkey", relation.primary_key)
            )
        elif kind == enums.ConstrType.CONSTR_UNIQUE:
            keys = tuple(_names(constraint.keys)) or columns
            self.model.indexes.append(Index(relation.schema, relation.name, f"{relation.name}_key", keys))
        elif kind == enums.ConstrType.CONSTR_FOREIGN:
            fk_columns = tuple(_names(constraint.fk_attrs)) or columns
            self.model.foreign_keys.append(
                ForeignKey(
                    relation.schema,
                    relation.name,
                    constraint.conname or "fk",
                    fk_columns,
                    self.qualified(constraint.pktable),
                )
            )

    def _IndexStmt(self, stmt: ast.IndexStmt) -> None:
        schema, _, table = self.qualified(stmt.relation).partition(".")
        params = list(stmt.indexParams or ())
        # The columns before the first expression key: (lower(email), tenant_id) leads with no column.
        columns = tuple(itertools.takewhile(bool, (p.name for p in params)))
        first = params[0] if params else None
        expression = deparse(first.expr) if first is not None and first.expr is not None else None
        if columns or expression:
            method = (stmt.accessMethod or "btree").lower()
            predicate = deparse(stmt.whereClause) if stmt.whereClause is not None else None
            self.model.indexes.append(
                Index(schema, table, stmt.idxname or "idx", columns, expression, method=method, predicate=predicate)
            )

    def _ViewStmt(self, stmt: ast.ViewStmt) -> None:
        name = self.qualified(stmt.view)
        schema, _, view = name.partition(".")
        invoker = any(
            o.defname == "security_invoker" and _truthy(o.arg) for o in stmt.options or () if isinstance(o, ast.DefElem)
        )
        if stmt.replace:
            self._adopts("CREATE OR REPLACE VIEW", schema, name)
        replaced = name in self.model.relations and bool(stmt.replace)
        self.model.relations[name] = Relation(
            schema, view, "v", RUNNER, security_invoker=invoker, sources=self._sources(stmt.query)
        )
        self._declared(name)
        if not replaced:
            self._default_grants("r", schema, view)

    def _CreateTableAsStmt(self, stmt: ast.CreateTableAsStmt) -> None:
        name = self.qualified(stmt.into.rel)
        schema, _, view = name.partition(".")
        kind = "m" if stmt.objtype == OBJ.OBJECT_MATVIEW else "r"
        self.model.relations[name] = Relation(schema, view, kind, RUNNER, sources=self._sources(stmt.query))
        self._declared(name)
        self._default_grants("r", schema, view)

    def _CreateSeqStmt(self, stmt: ast.CreateSeqStmt) -> None:
        name = self.qualified(stmt.sequence)
        schema, _, sequence = name.partition(".")
        if stmt.if_not_exists:
            self._adopts("CREATE SEQUENCE IF NOT EXISTS", schema, name)
            if name in self.model.relations:
                return
        self.model.relations[name] = Relation(schema, sequence, "S", RUNNER)
        self._declared(name)
        self._default_grants("S", schema, sequence)

    def _default_grants(self, objtype: str, schema: str, name: str) -> None:
        """Grants the running user's default privileges give a new object (not functions: see _CreateFunctionStmt)."""
        for grantee, privileges in self._defaults_for(objtype, schema).items():
            for privilege in sorted(privileges):
                self.model.grants.add(Grant("table", schema, name, grantee, privilege))

    def _defaults_for(self, objtype: str, schema: str) -> dict[str, set[str]]:
        merged: dict[str, set[str]] = {}
        for key in ((RUNNER, objtype, None), (RUNNER, objtype, schema)):
            for grantee, privileges in self.defaults.get(key, {}).items():
                merged.setdefault(grantee, set()).update(privileges)
        return {grantee: privileges for grantee, privileges in merged.items() if privileges}

    def _sources(self, query: ast.Node) -> set[str]:
        found: set[str] = set()
        ctes = set()
        for node in walk(query):
            if isinstance(node, ast.CommonTableExpr):
                ctes.add(node.ctename)
        for node in walk(query):
            if isinstance(node, ast.RangeVar) and not (node.schemaname is None and node.relname in ctes):
                found.add(self.qualified(node))
        return found

    def _AlterTableStmt(self, stmt: ast.AlterTableStmt) -> None:
        name = self.qualified(stmt.relation)
        relation = self.model.relations.get(name)
        if relation is None:
            return
        self._touched(name)
        for cmd in stmt.cmds or ():
            subtype = cmd.subtype
            if subtype == AT.AT_EnableRowSecurity:
                relation.rls = True
            elif subtype == AT.AT_DisableRowSecurity:
                relation.rls = False
            elif subtype == AT.AT_ForceRowSecurity:
                relation.forced = True
            elif subtype == AT.AT_NoForceRowSecurity:
                relation.forced = False
            elif subtype == AT.AT_ChangeOwner:
                relation.owner = self.role(cmd.newowner)
            elif subtype == AT.AT_AddColumn:
                relation.columns.append(cmd.def_.colname)
                relation.types[cmd.def_.colname] = canonical_type(_type(cmd.def_.typeName))
            elif subtype == AT.AT_AlterColumnType and isinstance(cmd.def_, ast.ColumnDef):
                relation.types[cmd.name] = canonical_type(_type(cmd.def_.typeName))
            elif subtype == AT.AT_DropColumn:
                relation.columns = [c for c in relation.columns if c != cmd.name]
            elif subtype == AT.AT_AddConstraint:
                constraint = cmd.def_
                self._constraint(relation, constraint, tuple(_names(constraint.keys) or _names(constraint.fk_attrs)))
            elif subtype == AT.AT_DropConstraint:
                self.model.foreign_keys = [
                    fk
                    for fk in self.model.foreign_keys
                    if not (fk.schema == relation.schema and fk.table == relation.name and fk.name == cmd.name)
                ]
            elif subtype == AT.AT_AttachPartition:
                child = self.model.relations.get(self.qualified(cmd.def_.name))
                if child is not None:
                    child.parent = name
            elif subtype == AT.AT_DetachPartition:
                child = self.model.relations.get(self.qualified(cmd.def_.name))
                if child is not None and child.parent == name:
                    child.parent = None
            elif subtype in (AT.AT_SetRelOptions, AT.AT_ResetRelOptions):
                for option in cmd.def_ or ():
                    if option.defname == "security_invoker":
                        relation.security_invoker = subtype == AT.AT_SetRelOptions and _truthy(option.arg)

    def _DropStmt(self, stmt: ast.DropStmt) -> None:
        for obj in stmt.objects or ():
            names = _names(obj) if isinstance(obj, tuple) else []
            if stmt.removeType in (OBJ.OBJECT_TABLE, OBJ.OBJECT_VIEW, OBJ.OBJECT_MATVIEW) and names:
                qualified = ".".join(names) if len(names) > 1 else f"{self.schema}.{names[0]}"
                self.model.relations.pop(qualified, None)
                self.model.policies = [p for p in self.model.policies if p.table_qualified != qualified]
            elif stmt.removeType == OBJ.OBJECT_POLICY and len(names) >= 2:
                table = ".".join(names[:-1]) if len(names) > 2 else f"{self.schema}.{names[0]}"
                self.model.policies = [
                    p for p in self.model.policies if not (p.table_qualified == table and p.name == names[-1])
                ]

    # -- policies -------------------------------------------------------------------

    def _CreatePolicyStmt(self, stmt: ast.CreatePolicyStmt) -> None:
        schema, _, table = self.qualified(stmt.table).partition(".")
        roles = tuple(sorted(self.role(r) for r in stmt.roles or ())) or (PUBLIC,)
        self.model.policies.append(
            Policy(
                schema,
                table,
                stmt.policy_name,
                stmt.cmd_name or "all",
                bool(stmt.permissive),
                roles,
                deparse(stmt.qual) if stmt.qual is not None else None,
                deparse(stmt.with_check) if stmt.with_check is not None else None,
            )
        )
        self._declared(self.model.policies[-1].qualified)

    def _AlterPolicyStmt(self, stmt: ast.AlterPolicyStmt) -> None:
        table = self.qualified(stmt.table)
        for policy in self.model.policies:
            if policy.table_qualified == table and policy.name == stmt.policy_name:
                if stmt.roles:
                    policy.roles = tuple(sorted(self.role(r) for r in stmt.roles))
                if stmt.qual is not None:
                    policy.using = deparse(stmt.qual)
                if stmt.with_check is not None:
                    policy.check = deparse(stmt.with_check)

    # -- privileges -------------------------------------------------------------------

    def _GrantStmt(self, stmt: ast.GrantStmt, default_schema: str | None = None) -> None:
        grantees = [self.role(g) for g in stmt.grantees or ()]
        for target in self._grant_targets(stmt):
            kind, schema, name, all_privileges = target
            privileges = [(p.priv_name.upper(), _names(p.cols)) for p in stmt.privileges or ()] or [
                (privilege, []) for privilege in all_privileges
            ]
            for grantee in grantees:
                for privilege, columns in privileges:
                    expanded = [(p, columns) for p in all_privileges] if privilege == "ALL" else [(privilege, columns)]
                    for one, cols in expanded:
                        self._grant(stmt.is_grant, kind, schema, name, grantee, one, cols)

    def _grant_targets(self, stmt: ast.GrantStmt) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
        if stmt.objtype in (OBJ.OBJECT_TABLE, OBJ.OBJECT_SEQUENCE):
            privileges = TABLE_PRIVILEGES if stmt.objtype == OBJ.OBJECT_TABLE else ("USAGE", "SELECT", "UPDATE")
            if stmt.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
                for schema in _names(stmt.objects):
                    kinds = ("r", "p", "v", "m", "f") if stmt.objtype == OBJ.OBJECT_TABLE else ("S",)
                    for relation in self.model.relations.values():
                        if relation.schema == schema and relation.kind in kinds:
                            yield "table", schema, relation.name, privileges
                return
            for rangevar in stmt.objects or ():
                schema, _, name = self.qualified(rangevar).partition(".")
                yield "table", schema, name, privileges
        elif stmt.objtype in (OBJ.OBJECT_FUNCTION, OBJ.OBJECT_PROCEDURE, OBJ.OBJECT_ROUTINE):
            if stmt.targtype == enums.GrantTargetType.ACL_TARGET_ALL_IN_SCHEMA:
                for schema in _names(stmt.objects):
                    for function in self.model.functions.values():
                        if function.schema == schema:
                            yield "function", schema, f"{function.name}({function.args})", ("EXECUTE",)
                return
            for obj in stmt.objects or ():
                function = self._function_named(obj)
                if function is not None:
                    yield "function", function.schema, f"{function.name}({function.args})", ("EXECUTE",)
        elif stmt.objtype == OBJ.OBJECT_SCHEMA:
            for name in _names(stmt.objects):
                yield "schema", name, name, ("USAGE", "CREATE")

    def _grant(
        self, is_grant: bool, kind: str, schema: str, name: str, grantee: str, privilege: str, columns: list[str]
    ) -> None:
        if kind == "function":
            function = self.model.functions.get(f"{schema}.{name}")
            if function is not None:
                (function.executors.add if is_grant else function.executors.discard)(grantee)
        if kind == "schema" and privilege == "CREATE":
            target = self.model.schemas.setdefault(name, Schema(name, RUNNER))
            (target.creators.add if is_grant else target.creators.discard)(grantee)
        self._touched(name if kind == "schema" else f"{schema}.{name}")
        grants = (
            [Grant("column", schema, name, grantee, privilege, c) for c in columns]
            if columns
            else [Grant(kind, schema, name, grantee, privilege)]
        )
        for grant in grants:
            if is_grant:
                self.model.grants.add(grant)
            else:
                self.model.grants.discard(grant)
                if not columns and kind == "table":  # a table-level REVOKE also revokes column privileges
                    self.model.grants -= {
                        g
                        for g in self.model.grants
                        if g.kind == "column"
                        and (g.schema, g.object, g.grantee, g.privilege) == (schema, name, grantee, privilege)
                    }

    def _AlterDefaultPrivilegesStmt(self, stmt: ast.AlterDefaultPrivilegesStmt) -> None:
        creators, schemas = [RUNNER], [None]
        for option in stmt.options or ():
            if option.defname == "roles":
                creators = [self.role(r) for r in option.arg]
            elif option.defname == "schemas":
                schemas = _names(option.arg)
        action = stmt.action
        objtype = {
            OBJ.OBJECT_TABLE: "r",
            OBJ.OBJECT_SEQUENCE: "S",
            OBJ.OBJECT_FUNCTION: "f",
            OBJ.OBJECT_TYPE: "T",
            OBJ.OBJECT_SCHEMA: "n",
        }.get(action.objtype, "r")
        grantees = {self.role(g) for g in action.grantees or ()}
        privileges = {p.priv_name.upper() for p in action.privileges or ()} or set(DEFAULT_PRIVILEGES.get(objtype, ()))
        if "ALL" in privileges:
            privileges = set(DEFAULT_PRIVILEGES.get(objtype, ()))
        for creator in creators:
            self._touched(creator)
            for schema in schemas:
                current = self.defaults.setdefault((creator, objtype, schema), {})
                for grantee in grantees:
                    if action.is_grant:
                        current.setdefault(grantee, set()).update(privileges)
                    else:
                        current.get(grantee, set()).difference_update(privileges)
                if action.is_grant:
                    self.model.default_acls.append(DefaultAcl(creator, objtype, schema, grantees))
                else:  # a grantee stays while it keeps some privilege
                    for acl in self.model.default_acls:
                        if (acl.creator, acl.objtype, acl.schema) == (creator, objtype, schema):
                            acl.grantees = {g for g in acl.grantees if g not in grantees or current.get(g)}

    # -- functions --------------------------------------------------------------------

    def _function_named(self, obj: ast.ObjectWithArgs) -> Function | None:
        names = _names(obj.objname)
        schema, name = (names[0], names[1]) if len(names) > 1 else (None, names[0])
        args = ", ".join(_type(a) for a in obj.objargs or ()) if not obj.args_unspecified else None
        for function in self.model.functions.values():
            if (
                function.name == name
                and (schema is None or function.schema == schema)
                and (args is None or function.args == args)
            ):
                return function
        return None

    def _CreateFunctionStmt(self, stmt: ast.CreateFunctionStmt) -> None:
        names = _names(stmt.funcname)
        schema, name = (names[0], names[1]) if len(names) > 1 else (self.schema, names[0])
        args = ", ".join(
            _type(p.argType)
            for p in stmt.parameters or ()
            if p.mode
            in (
                enums.FunctionParameterMode.FUNC_PARAM_IN,
                enums.FunctionParameterMode.FUNC_PARAM_INOUT,
                enums.FunctionParameterMode.FUNC_PARAM_DEFAULT,
                enums.FunctionParameterMode.FUNC_PARAM_VARIADIC,
            )
        )
        function = Function(schema, name, args, owner=RUNNER, returns=_type(stmt.returnType) if stmt.returnType else "")
        if stmt.replace:
            kind = "PROCEDURE" if stmt.is_procedure else "FUNCTION"
            self._adopts(f"CREATE OR REPLACE {kind}", schema, function.qualified)
        existing = self.model.functions.get(function.qualified)
        if existing is not None and stmt.replace:
            function.executors = existing.executors
            function.owner = existing.owner
        else:
            function.executors = {g for g, p in self._defaults_for("f", schema).items() if "EXECUTE" in p}
            signature = f"{name}({args})"
            self.model.grants -= {
                g for g in self.model.grants if g.kind == "function" and g.schema == schema and g.object == signature
            }
            self.model.grants |= {Grant("function", schema, signature, e, "EXECUTE") for e in function.executors}
        self._function_options(function, stmt.options)
        self.model.functions[function.qualified] = function
        self._declared(function.qualified)

    def _function_options(self, function: Function, options: Any) -> None:
        for option in options or ():
            if not isinstance(option, ast.DefElem):
                continue
            if option.defname == "security":
                function.security_definer = _truthy(option.arg)
            elif option.defname == "leakproof":
                function.leakproof = _truthy(option.arg)
            elif option.defname == "volatility":
                function.volatility = {"immutable": "i", "stable": "s", "volatile": "v"}[option.arg.sval]
            elif option.defname == "language":
                function.language = option.arg.sval
            elif option.defname == "as":
                function.body = "".join(_names(option.arg))
            elif option.defname == "set" and isinstance(option.arg, ast.VariableSetStmt):
                setting = option.arg
                if setting.name == "search_path":
                    if setting.kind == enums.VariableSetKind.VAR_SET_VALUE:
                        function.search_path = ", ".join(_const(a) for a in setting.args or ())
                    else:
                        function.search_path = None

    def _AlterFunctionStmt(self, stmt: ast.AlterFunctionStmt) -> None:
        function = self._function_named(stmt.func)
        if function is not None:
            self._function_options(function, stmt.actions)

    def _AlterOwnerStmt(self, stmt: ast.AlterOwnerStmt) -> None:
        if stmt.objectType in (OBJ.OBJECT_FUNCTION, OBJ.OBJECT_PROCEDURE):
            function = self._function_named(stmt.object)
            if function is not None:
                function.owner = self.role(stmt.newowner)
        elif stmt.objectType == OBJ.OBJECT_SCHEMA:
            name = stmt.object.sval if isinstance(stmt.object, ast.String) else None
            if name in self.model.schemas:
                self.model.schemas[name].owner = self.role(stmt.newowner)

    # -- roles, schemas, extensions, triggers ---------------------------------------------

    def _CreateRoleStmt(self, stmt: ast.CreateRoleStmt) -> None:
        role = Role(stmt.role, login=stmt.stmt_type == enums.RoleStmtType.ROLESTMT_USER)
        self._role_options(role, stmt.options)
        self.model.roles[role.name] = role
        self._declared(role.name)

    def _AlterRoleStmt(self, stmt: ast.AlterRoleStmt) -> None:
        role = self.model.roles.get(self.role(stmt.role))
        if role is not None:
            self._touched(role.name)
            self._role_options(role, stmt.options)

    def _role_options(self, role: Role, options: Any) -> None:
        for option in options or ():
            value = _truthy(option.arg) if option.arg is not None else True
            if option.defname == "canlogin":
                role.login = value
            elif option.defname == "superuser":
                role.superuser = value
            elif option.defname == "bypassrls":
                role.bypassrls = value
            elif option.defname == "addroleto":
                role.member_of |= {self.role(r) for r in option.arg}

    def _GrantRoleStmt(self, stmt: ast.GrantRoleStmt) -> None:
        granted = [getattr(r, "priv_name", None) for r in stmt.granted_roles or ()]
        for grantee in stmt.grantee_roles or ():
            member = self.model.roles.setdefault(self.role(grantee), Role(self.role(grantee)))
            self._touched(member.name)
            for name in granted:
                if name:
                    (member.member_of.add if stmt.is_grant else member.member_of.discard)(name)

    def _CreateSchemaStmt(self, stmt: ast.CreateSchemaStmt) -> None:
        owner = self.role(stmt.authrole) if stmt.authrole is not None else RUNNER
        self.model.schemas.setdefault(stmt.schemaname, Schema(stmt.schemaname, owner))
        self._declared(stmt.schemaname)

    def _CreateExtensionStmt(self, stmt: ast.CreateExtensionStmt) -> None:
        schema = self.schema
        for option in stmt.options or ():
            if option.defname == "schema":
                schema = option.arg.sval
        self.model.extensions.setdefault(stmt.extname, schema)
        self._declared(stmt.extname)

    def _CommentStmt(self, stmt: ast.CommentStmt) -> None:
        if stmt.objtype != OBJ.OBJECT_COLUMN:
            return
        names = _names(stmt.object)
        if len(names) < 2:
            return
        table = ".".join(names[-3:-1]) if len(names) > 2 else f"{self.schema}.{names[0]}"
        key = f"{table}.{names[-1]}"
        readers = parse_secret_comment(stmt.comment)
        if readers is None:
            self.model.secrets.pop(key, None)
        else:
            self.model.secrets[key] = readers
            self._declared(key)

    def _CreateTrigStmt(self, stmt: ast.CreateTrigStmt) -> None:
        schema, _, table = self.qualified(stmt.relation).partition(".")
        names = _names(stmt.funcname)
        function = ".".join(names) if len(names) > 1 else f"{self.schema}.{names[0]}"
        self.model.triggers.append(Trigger(schema, table, stmt.trigname, function))
        self._declared(f"{schema}.{table}.{stmt.trigname}")

    # -- renames: the declaration follows the object --------------------------------------

    def _RenameStmt(self, stmt: ast.RenameStmt) -> None:
        super()._RenameStmt(stmt)
        if stmt.relation is None:
            return
        table = self.qualified(stmt.relation)
        if stmt.renameType in RELATIONS:
            self._moved(table, f"{table.partition('.')[0]}.{stmt.newname}")
        elif stmt.renameType in (OBJ.OBJECT_POLICY, OBJ.OBJECT_COLUMN):
            self._moved(f"{table}.{stmt.subname}", f"{table}.{stmt.newname}")

    def _AlterObjectSchemaStmt(self, stmt: ast.AlterObjectSchemaStmt) -> None:
        super()._AlterObjectSchemaStmt(stmt)
        if stmt.objectType in RELATIONS and stmt.relation is not None:
            old = self.qualified(stmt.relation)
            self._moved(old, f"{stmt.newschema}.{old.partition('.')[2]}")


def walk(node: Any) -> Iterator[Any]:
    """Every AST node under `node` (pglast nodes, tuples of nodes)."""
    if isinstance(node, tuple | list):
        for item in node:
            yield from walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for name in node:
            yield from walk(getattr(node, name))


def _draws_from_sequence(column: ast.ColumnDef) -> bool:
    names = _names(column.typeName.names) if column.typeName is not None else []
    serial = bool(names) and names[-1] in ("serial", "bigserial", "smallserial", "serial2", "serial4", "serial8")
    identity = any(c.contype == enums.ConstrType.CONSTR_IDENTITY for c in column.constraints or ())
    return serial or identity


def _truthy(arg: Any) -> bool:
    if arg is None:
        return True
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    if isinstance(arg, ast.String):
        return arg.sval.lower() in ("true", "on", "1", "yes")
    return bool(arg)


def _const(node: Any) -> str:
    if isinstance(node, ast.A_Const):
        value = node.val
        return value.sval if isinstance(value, ast.String) else str(getattr(value, "ival", value))
    return deparse(node)


def _type(node: ast.TypeName | None) -> str:
    if node is None:
        return ""
    text = deparse(node)
    return {
        "pg_catalog.int4": "integer",
        "int": "integer",
        "pg_catalog.text": "text",
        "pg_catalog.bool": "boolean",
    }.get(text, text)


def replay(
    model: LintModel, text: str, path: str, default_schema: str = "public", *, located: bool = True
) -> LintModel:
    """Replay the statements of `text` (read from `path`) into `model`. With `located`, each object is located
    at its statement in `path`; without (SQL that is no file, such as the rendered SQL), it is not."""
    try:
        statements = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        # pglast gives the 0-based character offset of the error as the second argument
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        line = Positions(text).at(offset)[0] if offset is not None else None
        raise UsageError(
            f"{path}:{line}: SQL syntax error: {exc.args[0]}" if line else f"{path}: {exc.args[0]}"
        ) from None
    player = Replay(model, default_schema)
    positions = Positions(text) if located else None
    for raw in statements:
        if positions is not None:
            player.here = Location(path, *positions.at(statement_start(text, raw.stmt_location or 0)))
        player.statement(raw.stmt)
    return model


class Positions:
    """Character offsets of a text into 1-based (line, column), columns counted in characters."""

    def __init__(self, text: str) -> None:
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self.newlines, offset - 1)  # newlines before the offset
        start = self.newlines[line - 1] + 1 if line else 0
        return line + 1, offset - start + 1
