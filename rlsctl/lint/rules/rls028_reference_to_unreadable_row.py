from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from rlsctl.lint import bodies, exprs, scope
from rlsctl.lint.model import PUBLIC, ForeignKey, Grant, LintModel, Policy, Relation
from rlsctl.lint.rule import Finding, Rule


class ReferenceToUnreadableRow(Rule):
    """A write policy lets its role point a foreign key at a row it cannot read.

    A join table (`collection_item(collection_id, item_id)`, `share(list_id,
    document_id)`) whose INSERT or UPDATE check tests only the user's side
    ("the collection is mine") lets a user attach someone else's private
    row (`item_id`) to their own collection. When the referenced table's
    SELECT policy shows rows through the join table, everyone the collection
    is shared with now reads that private row (a test shows it on the
    server); when it does not, the user has still linked a row they cannot
    see, into their tenant or their collection, and learned that it exists.
    The message says which of the two it is.

    The check vouches for the reference when every way it can be true
    leaves the column NULL or requires one of: an `EXISTS` (or `IN`, or a
    join) over the referenced table matching the column, which reads it
    under the role's own policies; a comparison of the column with the
    session's identity (`item_id = ANY ((SELECT my_items())::int[])`,
    `team_id = ANY (<my teams>)`); a subquery matching the column with a
    row read for the session (`share.user_id = <me>`); a helper taking the
    column (`can_read_item(item_id)`). For a composite key, one column is
    enough. For UPDATE the check is WITH CHECK, or USING when there is none.

    Not reported: keys to a table without row-level security, or whose every
    row the role reads (an open SELECT policy, BYPASSRLS, an owner the
    policies do not bind); keys to the principals' own table, whose key its
    policies compare with the session's identity as one value (`"User".id =
    <me>`, `auth.uid() = id`): naming a user reads none of their data, and
    whether they must share a tenant is a question of its own
    (`tenant_member`, `co_member`), while a tenants table (`id = ANY (<my
    teams>)`) is reported; policies whose check is open altogether (RLS006,
    RLS007 or RLS012 report those); columns the role may not write (column
    grants), and, for UPDATE, columns a trigger refuses to change (raising
    when `NEW.col IS DISTINCT FROM OLD.col`, as rlsctl's `guards:` do;
    rlsctl does not judge the trigger's own condition). Checks made in
    triggers are not seen: suppress the finding with the reason. The rule
    reads the policies' SQL, so it works the same offline (policy files,
    migrations, SQL files) and on a live database.

    In the policy files the fix is `via` on the column:

        tables:
          collection_item:
            tenant: {via: collection_id}
            policies:
              app:
                select: {via: collection_id}
                insert:
                  all:
                    - via: {column: collection_id, rule: update}  # a collection the user may change...
                    - via: item_id                                # ...and an item the user can read

    When the referenced table's own SELECT policy reads the join table, as
    `item` does below, an `EXISTS` in each direction makes PostgreSQL's
    policy expansion recurse (RLS017): the good example lets `item` see
    through the join table with a SECURITY DEFINER helper instead.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE collection (id int PRIMARY KEY, owner_id int NOT NULL, viewer_id int);
        CREATE INDEX ON collection (owner_id);
        CREATE INDEX ON collection (viewer_id);
        CREATE TABLE item (id int PRIMARY KEY, owner_id int NOT NULL);
        CREATE INDEX ON item (owner_id);
        CREATE TABLE collection_item (
            collection_id int NOT NULL REFERENCES collection,
            item_id int NOT NULL REFERENCES item,
            PRIMARY KEY (collection_id, item_id));
        CREATE INDEX ON collection_item (item_id);
        ALTER TABLE collection ENABLE ROW LEVEL SECURITY;
        ALTER TABLE collection FORCE ROW LEVEL SECURITY;
        ALTER TABLE item ENABLE ROW LEVEL SECURITY;
        ALTER TABLE item FORCE ROW LEVEL SECURITY;
        ALTER TABLE collection_item ENABLE ROW LEVEL SECURITY;
        ALTER TABLE collection_item FORCE ROW LEVEL SECURITY;
        GRANT SELECT ON collection, item TO app_role;
        GRANT SELECT, INSERT ON collection_item TO app_role;
        CREATE POLICY mine_or_shared ON collection FOR SELECT TO app_role
            USING (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)
                   OR viewer_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
        CREATE POLICY in_visible_collection ON collection_item FOR SELECT TO app_role
            USING (EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id));
        CREATE FUNCTION collected_items() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT coalesce(array_agg(ci.item_id), '{}') FROM public.collection_item AS ci
                  JOIN public.collection AS c ON c.id = ci.collection_id
                  WHERE NULLIF(current_setting('app.user_id', true), '')::int IN (c.owner_id, c.viewer_id) $$;
        REVOKE EXECUTE ON FUNCTION collected_items() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION collected_items() TO app_role;
        CREATE POLICY mine_or_collected ON item FOR SELECT TO app_role
            USING (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)
                   OR id = ANY ((SELECT collected_items())::int[]));
        CREATE POLICY add_to_mine ON collection_item FOR INSERT TO app_role
            WITH CHECK (EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id
                AND c.owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE collection (id int PRIMARY KEY, owner_id int NOT NULL, viewer_id int);
        CREATE INDEX ON collection (owner_id);
        CREATE INDEX ON collection (viewer_id);
        CREATE TABLE item (id int PRIMARY KEY, owner_id int NOT NULL);
        CREATE INDEX ON item (owner_id);
        CREATE TABLE collection_item (
            collection_id int NOT NULL REFERENCES collection,
            item_id int NOT NULL REFERENCES item,
            PRIMARY KEY (collection_id, item_id));
        CREATE INDEX ON collection_item (item_id);
        ALTER TABLE collection ENABLE ROW LEVEL SECURITY;
        ALTER TABLE collection FORCE ROW LEVEL SECURITY;
        ALTER TABLE item ENABLE ROW LEVEL SECURITY;
        ALTER TABLE item FORCE ROW LEVEL SECURITY;
        ALTER TABLE collection_item ENABLE ROW LEVEL SECURITY;
        ALTER TABLE collection_item FORCE ROW LEVEL SECURITY;
        GRANT SELECT ON collection, item TO app_role;
        GRANT SELECT, INSERT ON collection_item TO app_role;
        CREATE POLICY mine_or_shared ON collection FOR SELECT TO app_role
            USING (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)
                   OR viewer_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int));
        CREATE POLICY in_visible_collection ON collection_item FOR SELECT TO app_role
            USING (EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id));
        CREATE FUNCTION collected_items() RETURNS int[] LANGUAGE sql STABLE SECURITY DEFINER
            SET search_path = pg_catalog, pg_temp
            AS $$ SELECT coalesce(array_agg(ci.item_id), '{}') FROM public.collection_item AS ci
                  JOIN public.collection AS c ON c.id = ci.collection_id
                  WHERE NULLIF(current_setting('app.user_id', true), '')::int IN (c.owner_id, c.viewer_id) $$;
        REVOKE EXECUTE ON FUNCTION collected_items() FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION collected_items() TO app_role;
        CREATE POLICY mine_or_collected ON item FOR SELECT TO app_role
            USING (owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int)
                   OR id = ANY ((SELECT collected_items())::int[]));
        CREATE POLICY add_to_mine ON collection_item FOR INSERT TO app_role
            WITH CHECK (EXISTS (SELECT 1 FROM collection AS c WHERE c.id = collection_item.collection_id
                AND c.owner_id = (SELECT NULLIF(current_setting('app.user_id', true), '')::int))
                AND EXISTS (SELECT 1 FROM item AS i WHERE i.id = collection_item.item_id));
    """

    id = "RLS028"
    name = "reference-to-unreadable-row"
    level = "error"
    hint = (
        "Require the referenced row to be visible in the check: AND EXISTS (SELECT 1 FROM <referenced table> "
        "WHERE <key> = <column>), which runs under the role's own policies ({via: <column>} in the policy files)"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        by_table = exprs.policies_by_table(model)
        keys: dict[str, list[ForeignKey]] = {}
        for key in model.foreign_keys:
            keys.setdefault(f"{key.schema}.{key.table}", []).append(key)
        principals: dict[str, bool] = {}
        for table, policies in sorted(by_table.items()):
            relation = model.relations.get(table)
            if relation is None or not relation.is_table or not relation.rls or table not in keys:
                continue
            references = []
            for key, parent in _references(model, keys[table]):
                if parent.qualified not in principals:
                    principals[parent.qualified] = _principal_table(model, parent, by_table)
                if not principals[parent.qualified]:
                    references.append((key, parent))
            for policy in policies:
                if not policy.permissive or not policy.writes:
                    continue
                gaps = [
                    gap for key, parent in references for gap in _gaps(model, policy, policies, key, parent, by_table)
                ]
                if gaps:
                    yield self.finding(policy.qualified, _message(model, policy, gaps, by_table))


@dataclass(frozen=True)
class Gap:
    """A foreign key a write policy lets its roles point at a row they cannot read."""

    key: ForeignKey
    parent: Relation
    command: str  # insert or update
    roles: tuple[str, ...]  # the policy's roles that do not read every row of the referenced table


def _gaps(
    model: LintModel,
    policy: Policy,
    policies: list[Policy],
    key: ForeignKey,
    parent: Relation,
    by_table: dict[str, list[Policy]],
) -> Iterator[Gap]:
    row = exprs.row_of(model, policy)
    columns = set(key.columns)
    for command in _write_commands(policy):
        check = _effective_check(policy, command)
        if check is None or scope.opening(check, row, model, policy.roles) is not None:
            continue  # no check to read, or one open altogether: RLS006, RLS007 or RLS012's
        tree = exprs.parse(check)
        if tree is None or _constrains(tree, columns, parent, row, model):
            continue
        if any(_restricted(policy, other, command, columns, parent, row, model) for other in policies):
            continue
        if not _writable(model, policy, command, key.columns):
            continue
        if command == "update" and _guarded(model, policy, key.columns):
            continue
        blind = tuple(r for r in policy.roles if not _reads_every_row(model, r, parent, by_table))
        if blind:
            yield Gap(key, parent, command, blind)


# -- what a policy may write ----------------------------------------------------------------------


def _write_commands(policy: Policy) -> tuple[str, ...]:
    return ("insert", "update") if policy.command == "all" else (policy.command,)


def _effective_check(policy: Policy, command: str) -> str | None:
    """What a new row must satisfy: WITH CHECK, or USING when there is none (UPDATE and ALL)."""
    if command == "insert" and policy.command == "insert":
        return policy.check
    return policy.check if policy.check is not None else policy.using


def _references(model: LintModel, keys: list[ForeignKey]) -> list[tuple[ForeignKey, Relation]]:
    """The foreign keys whose referenced table has row-level security, once per (columns, table)."""
    found: dict[tuple[tuple[str, ...], str], tuple[ForeignKey, Relation]] = {}
    for key in keys:
        parent = model.relations.get(key.ref_table)
        if parent is not None and parent.is_table and parent.rls:
            found.setdefault((key.columns, parent.qualified), (key, parent))
    return list(found.values())


def _subject_names(model: LintModel, roles: tuple[str, ...]) -> set[str] | None:
    """Roles whose privileges count for the roles a policy applies to (None: any role, PUBLIC policies)."""
    if PUBLIC in roles:
        return None
    names: set[str] = set()
    for role in roles:
        names |= model.holders(role) | model.members_of(role)
    return names


def _writable(model: LintModel, policy: Policy, command: str, columns: tuple[str, ...]) -> bool:
    """Whether the policy's roles may write the key's columns. Column grants that leave them out say no; no grant
    at all says no on a live catalog only (SQL files may rely on grants made elsewhere, such as a host's default
    privileges)."""
    names = _subject_names(model, policy.roles)
    table = model.relations.get(policy.table_qualified)
    if table is not None and (table.owner in names if names is not None else table.forced):
        return True  # the owner (and its members) hold every privilege without a grant
    privilege = command.upper()
    table_level, column_level = False, set()
    for grant in _grants_on(model, policy.table_qualified):
        if grant.privilege != privilege:
            continue
        if names is not None and grant.grantee not in names:
            continue
        if grant.kind == "table":
            table_level = True
        elif grant.kind == "column" and grant.column is not None:
            column_level.add(grant.column)
    if table_level:
        return True
    if column_level:
        return bool(column_level & set(columns))
    return not model.live


def _grants_on(model: LintModel, table: str) -> list[Grant]:
    """The table and column grants on a table (indexed once per model: a catalog holds thousands)."""
    key = (id(model.grants), len(model.grants))
    cached = model.__dict__.get("_grants_by_relation")
    if cached is None or cached[0] != key:
        index: dict[str, list[Grant]] = {}
        for grant in model.grants:
            if grant.kind in ("table", "column"):
                index.setdefault(grant.qualified, []).append(grant)
        cached = model.__dict__["_grants_by_relation"] = (key, index)
    return cached[1].get(table, [])


def _guarded(model: LintModel, policy: Policy, columns: tuple[str, ...]) -> bool:
    """Whether a trigger on the table raises when one of the columns changes (rlsctl's `guards: changed`)."""
    for trigger in model.triggers:
        if f"{trigger.schema}.{trigger.table}" != policy.table_qualified:
            continue
        function = model.functions.get(f"{trigger.function}()")
        if function is None or not re.search(r"\bRAISE\s+EXCEPTION\b", function.body, re.I):
            continue
        if any(_change_test(column).search(function.body) for column in columns):
            return True
    return False


def _change_test(column: str) -> re.Pattern[str]:
    name = rf'(?:"{re.escape(column)}"|{re.escape(column)}\b)'
    return re.compile(rf"\bNEW\s*\.\s*{name}\s*(?:IS\s+DISTINCT\s+FROM|<>|!=)\s*OLD\s*\.\s*{name}", re.I)


# -- what a check says about the referenced row ------------------------------------------------------


def _constrains(node: exp.Expression, columns: set[str], parent: Relation, row: exprs.Row, model: LintModel) -> bool:
    """Whether every way the condition can be true makes the key reference nothing or a row the role reads."""
    node = exprs.unwrap(node)
    if isinstance(node, exp.Or):
        return _constrains(node.this, columns, parent, row, model) and _constrains(
            node.expression, columns, parent, row, model
        )
    if isinstance(node, exp.And):
        return any(_constrains(term, columns, parent, row, model) for term in exprs.and_terms(node))
    if isinstance(node, exp.Not):
        return False
    return _vouches(node, columns, parent, row, model)


def _is_key(node: exp.Expression | None, columns: set[str], row: exprs.Row) -> bool:
    if node is None:
        return False
    node = exprs.strip(node)
    return isinstance(node, exp.Column) and node.name in columns and exprs.is_row_ref(node, row)


def _vouches(term: exp.Expression, columns: set[str], parent: Relation, row: exprs.Row, model: LintModel) -> bool:
    """One term of a conjunction: `key IS NULL`; `key = <identity>` / `key = ANY(<identity>)` / `key IN (SELECT
    ... FROM parent)`; a subquery correlating the key with the referenced table's row (or with a row it reads
    under the session's identity); a helper the key is passed to."""
    if isinstance(term, exp.Is) and isinstance(term.expression, exp.Null) and not term.args.get("negate"):
        return _is_key(term.this, columns, row)
    if isinstance(term, exp.EQ | exp.NullSafeEQ | exp.In):
        sides = [term.this, term.args.get("expression"), term.args.get("query")]
        sides = [side for side in sides if side is not None]
        for side in sides:
            if not _is_key(side, columns, row):
                continue
            for other in sides:
                if other is side or exprs.row_refs(other, row):
                    continue
                if _identity(other, model) or _reads(other, parent, row, model):
                    return True
    for compare in term.find_all(exp.EQ, exp.NullSafeEQ):
        if _correlates(compare, columns, parent, row, model):
            return True
    for call in term.find_all(exp.Anonymous):
        if exprs.user_function(call, model) and any(_is_key(arg, columns, row) for arg in call.expressions):
            return True
    return False


def _identity(node: exp.Expression, model: LintModel) -> bool:
    """Whether a value derives from the session: its settings, its role, a helper of the schema's own."""
    if any(isinstance(n, exp.CurrentUser | exp.SessionUser) for n in node.walk()):
        return True
    return any(exprs.is_setting_call(c) or exprs.user_function(c, model) for c in node.find_all(exp.Anonymous))


def _reads(node: exp.Expression, parent: Relation, row: exprs.Row, model: LintModel) -> bool:
    """Whether a subquery in the expression reads the referenced table."""
    return any(
        _is_parent(source, parent, row, model) for select in node.find_all(exp.Select) for source in _sources(select)
    )


def _sources(select: exp.Select) -> list[exp.Expression]:
    """The FROM items of a subquery, with a parenthesized join (`FROM (a JOIN b ON ...)`, as pg_get_expr writes
    it) taken apart."""
    found: list[exp.Expression] = []
    frontier = list(exprs.select_sources(select))
    while frontier:
        source = frontier.pop(0)
        if isinstance(source, exp.Subquery | exp.Paren) and isinstance(source.this, exp.Table):
            source = source.this
            frontier.extend(join.this for join in source.args.get("joins") or ())
        found.append(source)
    return found


def _is_parent(source: exp.Expression, parent: Relation, row: exprs.Row, model: LintModel) -> bool:
    if not (isinstance(source, exp.Table) and source.name):
        return False
    name = f"{source.db}.{source.name}" if source.db else source.name
    return exprs.resolve_relation(model, name, row.schema) is parent


def _correlates(compare: exp.Expression, columns: set[str], parent: Relation, row: exprs.Row, model: LintModel) -> bool:
    """`parent.key = T.column` inside a subquery that reads the referenced table, or that reads another table's
    rows under the session's identity (`share.document_id = T.document_id AND share.user_id = <me>`)."""
    left, right = exprs.strip(compare.this), exprs.strip(compare.expression)
    for mine, theirs in ((left, right), (right, left)):
        if not _is_key(mine, columns, row) or not isinstance(theirs, exp.Column) or exprs.is_row_ref(theirs, row):
            continue
        select = compare.find_ancestor(exp.Select)
        if select is None or _optional(compare, select):
            continue
        while select is not None:
            bound = [s for s in _sources(select) if _provides(s, theirs, row, model)]
            if bound:
                if any(_is_parent(s, parent, row, model) for s in bound) or _identity(select, model):
                    return True
                break
            select = select.find_ancestor(exp.Select)
    return False


def _optional(node: exp.Expression, select: exp.Select) -> bool:
    """Whether a condition inside a subquery can be skipped or negated there (under OR, NOT or CASE)."""
    parent = node.parent
    while parent is not None and parent is not select:
        if isinstance(parent, exp.Or | exp.Not | exp.Case | exp.If):
            return True
        parent = parent.parent
    return False


def _provides(source: exp.Expression, column: exp.Column, row: exprs.Row, model: LintModel) -> bool:
    if column.table:
        return source.alias_or_name.lower() == column.table.lower()
    if isinstance(source, exp.Table) and source.name:
        name = f"{source.db}.{source.name}" if source.db else source.name
        relation = exprs.resolve_relation(model, name, row.schema)
        if relation is not None and relation.columns:
            return column.name in relation.columns
    return True


def _restricted(
    policy: Policy, other: Policy, command: str, columns: set[str], parent: Relation, row: exprs.Row, model: LintModel
) -> bool:
    """Whether a restrictive policy for the command, applying to every role of `policy`, vouches for the key: it
    is AND-ed with every permissive policy of those roles."""
    if other.permissive or command not in exprs.commands(other.command):
        return False
    if PUBLIC not in other.roles and any(not set(other.roles) & model.holders(role) for role in policy.roles):
        return False
    tree = exprs.parse(_effective_check(other, command))
    return tree is not None and _constrains(tree, columns, parent, row, model)


# -- who reads the referenced table ---------------------------------------------------------------


def _reads_every_row(model: LintModel, role: str, parent: Relation, by_table: dict[str, list[Policy]]) -> bool:
    """Whether `role` reads every row of the referenced table: it bypasses its policies, or a SELECT policy
    applying to it is open (true, or unscoped in some branch)."""
    names = {PUBLIC} if role == PUBLIC else model.holders(role)
    attributes = model.roles.get(role)  # SUPERUSER and BYPASSRLS are the role's own, never inherited
    if attributes is not None and (attributes.superuser or attributes.bypassrls):
        return True
    if parent.owner in names and not parent.forced:
        return True  # ownership is inherited: the owner's members bypass the policies too
    row = _row(model, parent)
    for policy in by_table.get(parent.qualified, ()):
        if not policy.permissive or "select" not in exprs.commands(policy.command):
            continue
        if not (PUBLIC in policy.roles or names & set(policy.roles)):
            continue
        if scope.opening(policy.using, row, model, policy.roles) is not None:
            return True
    return False


def _row(model: LintModel, relation: Relation) -> exprs.Row:
    return exprs.Row(relation.schema, relation.name, frozenset(relation.columns), model)


def _principal_table(model: LintModel, parent: Relation, by_table: dict[str, list[Policy]]) -> bool:
    """Whether the table's rows are the principals themselves: its policies compare its (one-column) key with the
    session's identity as one value (`"User".id = (SELECT current_user_id())`, `auth.uid() = id`), never as one
    of a set. Tenants matched with `id = ANY (<my tenants>)` are not principals: pointing at another tenant's
    row is what this rule is about."""
    key = parent.primary_key or (("id",) if "id" in parent.columns else ())
    if len(key) != 1:
        return False
    row = _row(model, parent)
    single = False
    for policy in by_table.get(parent.qualified, ()):
        for text in (policy.using, policy.check):
            tree = exprs.parse(text)
            if tree is None:
                continue
            for compare in tree.find_all(exp.EQ, exp.NullSafeEQ, exp.In):
                if compare.find_ancestor(exp.Select) is not None:
                    continue  # in a subquery: another table's row
                sides = [compare.this, compare.args.get("expression"), compare.args.get("query")]
                sides += list(compare.expressions or ())
                sides = [side for side in sides if side is not None]
                if not any(_is_key(side, set(key), row) for side in sides):
                    continue
                others = [side for side in sides if not _is_key(side, set(key), row)]
                if not others or any(exprs.row_refs(o, row) or not _identity(o, model) for o in others):
                    continue
                if isinstance(compare, exp.In) or any(isinstance(exprs.strip(o), exp.Any) for o in others):
                    return False  # one of a set: the session reaches several such rows, a tenant
                single = True
    return single


# -- the message --------------------------------------------------------------------------------


def _message(model: LintModel, policy: Policy, gaps: list[Gap], by_table: dict[str, list[Policy]]) -> str:
    roles = sorted({role for gap in gaps for role in gap.roles})
    keys: list[Gap] = []
    for gap in gaps:
        if all(gap.key is not seen.key for seen in keys):
            keys.append(gap)
    pointed = " and ".join(f"{_columns(gap.key)} at a {gap.parent.qualified} row" for gap in keys)
    commands = " and ".join(c.upper() for c in ("insert", "update") if any(gap.command == c for gap in gaps))
    if policy.check is not None:
        label, text = "WITH CHECK", policy.check
    else:
        label, text = "USING (which checks the new row too)", policy.using
    message = (
        f"{policy.table_qualified}.{policy.name}: {', '.join(roles)} may point {pointed} it cannot read: "
        f"its {commands} {label} ({_shown(text)}) does not require the referenced row to be visible"
    )
    for gap in keys:
        if _shows_through(model, gap.parent, policy.table_qualified, by_table):
            message += (
                f"; {gap.parent.qualified}'s SELECT policy shows rows through {policy.table_qualified}, so whoever "
                "sees the new row reads the referenced one too"
            )
    vias = ", ".join(f"{{via: {gap.key.columns[-1]}}}" for gap in keys)
    return message + f"; add a check that the referenced row is visible (e.g. {vias})"


def _shown(text: str | None, width: int = 60) -> str:
    """The condition as the catalog or the SQL has it, on one line and cut (cheaper than re-generating it)."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _columns(key: ForeignKey) -> str:
    return key.columns[0] if len(key.columns) == 1 else f"({', '.join(key.columns)})"


def _shows_through(model: LintModel, parent: Relation, table: str, by_table: dict[str, list[Policy]]) -> bool:
    """Whether a SELECT policy of the referenced table reads the writing table (in a subquery or a helper)."""
    for policy in by_table.get(parent.qualified, ()):
        if "select" not in exprs.commands(policy.command):
            continue
        tree = exprs.parse(policy.using)
        read = [exprs.resolve_relation(model, name, parent.schema) for name in exprs.subquery_tables(tree)]
        if any(r is not None and r.qualified == table for r in read):
            return True
        for call in exprs.anonymous_calls(tree):
            for function in exprs.functions_called(call, model):
                for schema, name in bodies.read_body(function).relations:
                    found = exprs.resolve_relation(model, f"{schema}.{name}" if schema else name, function.schema)
                    if found is not None and found.qualified == table:
                        return True
    return False
