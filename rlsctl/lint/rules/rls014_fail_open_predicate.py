from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from rlsctl.lint import exprs, scope
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


def negated(node: exp.Expression) -> bool:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return isinstance(parent, exp.Not) or bool(node.args.get("negate"))


class FailOpenPredicate(Rule):
    """A policy grants more when the session's identity is missing: it fails open.

    `current_setting('app.tenant_id', true) IS NULL OR tenant_id = ...` (or
    `... = ''`) lets every row through on a connection that has not set its
    identity: a background job, a code path that forgot the SET, a pooled
    connection reset. So does a LIKE, ILIKE or regular expression whose
    pattern is built from a setting: an empty setting makes `'%' || ''` (or
    the empty regex) match every row. A policy must fail closed: no
    identity, no rows. A fallback does the same: `tenant_id =
    COALESCE(<setting>, tenant_id)` compares the column with itself when
    the setting is missing, and `COALESCE(<test of the setting>, true)` is
    true.

    Bad:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING ((SELECT current_setting('app.tenant_id', true)) IS NULL
                   OR tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));

    Good:

        CREATE ROLE app_role;
        CREATE TABLE invoice (id int PRIMARY KEY, tenant_id int NOT NULL);
        CREATE INDEX ON invoice (tenant_id);
        ALTER TABLE invoice ENABLE ROW LEVEL SECURITY;
        ALTER TABLE invoice FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_read ON invoice FOR SELECT TO app_role
            USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::int));
    """

    id = "RLS014"
    name = "fail-open-predicate"
    level = "error"
    hint = (
        "Drop the branch that tests for a missing identity, compare with equality against "
        "NULLIF(current_setting('x', true), ''), and give trusted jobs their own role and policy"
    )

    def check(self, model: LintModel) -> Iterator[Finding]:
        for policy in model.policies:
            row = exprs.row_of(model, policy)
            reasons: list[str] = []
            for label, text in (("USING", policy.using), ("WITH CHECK", policy.check)):
                tree = exprs.parse(text)
                if tree is None:
                    continue
                for disjunction in tree.find_all(exp.Or):
                    parent = disjunction.parent
                    while isinstance(parent, exp.Paren):
                        parent = parent.parent
                    if isinstance(parent, exp.Or):
                        continue  # inner link of a longer OR chain: seen from its top
                    for branch in exprs.or_branches(disjunction):
                        if scope.missing_identity_test(branch, model):
                            reasons.append(f"{label} grants every row when {exprs.short(branch, 60)}")
                fallbacks = ("coalesce", "ifnull", "nvl")  # the text decides cheaply whether to look
                nodes = (
                    tree.find_all(exp.EQ, exp.NullSafeEQ, exp.Coalesce)
                    if any(f in text.lower() for f in fallbacks)
                    else ()
                )
                for node in nodes:
                    fallback = scope.identity_fallback(node, row, model)
                    if fallback is not None:
                        reasons.append(f"in {label}, {fallback}")
                for match in tree.find_all(*exprs.PATTERN_MATCHES):
                    if negated(match) or not exprs.row_refs(match.this, row):
                        continue
                    if exprs.reads_identity(match.expression, model):
                        reasons.append(
                            f"{label} matches {exprs.short(match.this, 30)} against a pattern built from the "
                            "session's identity, which an empty setting turns into match-everything"
                        )
            if reasons:
                yield self.finding(
                    policy.qualified,
                    f"policy {policy.name} on {policy.table_qualified} fails open: {'; '.join(dict.fromkeys(reasons))}",
                )
