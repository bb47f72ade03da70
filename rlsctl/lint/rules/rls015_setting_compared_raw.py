from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel, canonical_type
from rlsctl.lint.rule import Finding, Rule

TEXT_TYPES = {
    exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR, exp.DataType.Type.BPCHAR,
    exp.DataType.Type.NAME, exp.DataType.Type.NCHAR, exp.DataType.Type.NVARCHAR,
}  # fmt: skip


# Types whose text form is never '': a column of one of them cast to text matches no row of a
# session whose setting reads '' (no leak, no error), so comparing it raw is no hazard of this rule's.
NEVER_EMPTY_AS_TEXT = {
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "boolean", "uuid", "date",
    "time", "timetz", "timestamp", "timestamptz", "interval", "json", "jsonb", "bytea", "inet", "cidr",
    "macaddr", "macaddr8", "oid", "money",
}  # fmt: skip


def _peel(node: exp.Expression) -> tuple[exp.Expression, bool]:
    """The expression under parentheses, casts, aliases and a scalar-subquery wrapper, and whether it is
    compared as text (no cast, or an outermost cast to a text type)."""
    textual: bool | None = None
    while True:
        if isinstance(node, exp.Cast | exp.TryCast):
            textual = node.to.this in TEXT_TYPES if textual is None else textual
            node = node.this
        elif isinstance(node, exp.Paren | exp.Alias):
            node = node.this
        elif isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            node = node.expression
        elif isinstance(node, exp.Coalesce) and all(_literal(arg) for arg in node.expressions):
            # coalesce(current_setting(...), '') turns "unset" into '' itself: the same hazard, worse.
            node = node.this
        elif (
            isinstance(node, exp.Subquery)
            and isinstance(node.this, exp.Select)
            and len(node.this.expressions) == 1
            and not node.this.args.get("from_")
            and not node.this.args.get("where")
        ):
            node = node.this.expressions[0]
        else:
            return node, textual is not False


def _literal(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren | exp.Cast | exp.TryCast):
        node = node.this
    return isinstance(node, exp.Literal)


def raw_setting(node: exp.Expression) -> tuple[exp.Expression, bool] | None:
    """current_setting(...) itself (cast, parenthesized or in a scalar subquery), with no NULLIF around it."""
    inner, textual = _peel(node)
    return (inner, textual) if exprs.is_setting_call(inner) else None


def column_side(node: exp.Expression, row: exprs.Row) -> tuple[exp.Column, bool] | None:
    inner, textual = _peel(node)
    if isinstance(inner, exp.Column) and exprs.is_row_ref(inner, row):
        return inner, textual
    return None


class SettingComparedRaw(Rule):
    """A row column is compared with current_setting(...) directly, without NULLIF(..., ''): '' is not NULL.

    Once a session has run `SET LOCAL app.tenant_id = ...` (or set_config)
    in any earlier transaction, the setting exists for the rest of the
    session and reads as '' (not NULL) when unset. `tenant_id =
    current_setting('app.tenant_id', true)` then matches the rows whose
    column is '' on a pooled connection without identity; with a cast
    (`::uuid`, `::int`) the same connection gets "invalid input syntax"
    errors instead of no rows. `coalesce(current_setting(...), '')` does the
    same even in a session that never set it. NULLIF(current_setting(...), '')
    turns both into NULL, and the policy fails closed. A column whose text form is
    never '' (a number, a uuid, a date, a boolean, an array) cast to text
    matches no row then, and is not reported.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE note (id int PRIMARY KEY, owner_name text NOT NULL);
        CREATE INDEX ON note (owner_name);
        ALTER TABLE note ENABLE ROW LEVEL SECURITY;
        ALTER TABLE note FORCE ROW LEVEL SECURITY;
        CREATE POLICY own_read ON note FOR SELECT TO app_role
            USING (owner_name = (SELECT current_setting('app.user_name', true)));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE note (id int PRIMARY KEY, owner_name text NOT NULL);
        CREATE INDEX ON note (owner_name);
        ALTER TABLE note ENABLE ROW LEVEL SECURITY;
        ALTER TABLE note FORCE ROW LEVEL SECURITY;
        CREATE POLICY own_read ON note FOR SELECT TO app_role
            USING (owner_name = (SELECT NULLIF(current_setting('app.user_name', true), '')));
    """

    id = "RLS015"
    name = "setting-compared-raw"
    level = "warning"
    hint = "Compare with NULLIF(current_setting('x', true), '') (cast after NULLIF), ideally in a scalar subquery"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            row = exprs.row_of(model, policy)
            relation = model.relations.get(policy.table_qualified)
            types = relation.types if relation is not None else {}
            problems: list[str] = []
            for text in (policy.using, policy.check):
                tree = exprs.parse(text)
                if tree is None:
                    continue
                for comparison in tree.find_all(exp.EQ, exp.NullSafeEQ):
                    for side, other in (
                        (comparison.this, comparison.expression),
                        (comparison.expression, comparison.this),
                    ):
                        column, setting = column_side(side, row), raw_setting(other)
                        if column is None or setting is None:
                            continue
                        call, textual = setting
                        shown = exprs.short(comparison, 80)
                        as_text = textual and column[1]
                        if as_text and _never_empty(types.get(column[0].name)):
                            continue  # a number, a uuid, a date... cast to text is never ''
                        if as_text:
                            problem = (
                                f"{shown} matches the rows whose {column[0].name} is '' on a session where "
                                f"{exprs.setting_name(call)} reads '' (unset after an earlier SET LOCAL)"
                            )
                        else:
                            problem = (
                                f'{shown} raises "invalid input syntax" instead of matching no row on a session '
                                f"where {exprs.setting_name(call)} reads '' (unset after an earlier SET LOCAL)"
                            )
                        if problem not in problems:
                            problems.append(problem)
            if problems:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified}: {'; '.join(problems)}",
                )


def _never_empty(column_type: str | None) -> bool:
    if column_type is None:
        return False  # unknown: reported
    name = canonical_type(column_type)
    return name.endswith("[]") or name in NEVER_EMPTY_AS_TEXT
