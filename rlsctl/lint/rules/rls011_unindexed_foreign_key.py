from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint import exprs
from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class UnindexedForeignKey(Rule):
    """A foreign key whose columns no index starts with.

    Deleting or updating a referenced row makes PostgreSQL look for the rows
    that reference it (to cascade, set null or refuse): without an index that
    is a full scan of the referencing table for every such row. Policies
    that join on tenant and parent keys (EXISTS ... WHERE child.parent_id =
    parent.id) need the same index.

    Bad:

        CREATE TABLE team (id int PRIMARY KEY);
        CREATE TABLE project (id int PRIMARY KEY, team_id int NOT NULL REFERENCES team (id) ON DELETE CASCADE);

    Good:

        CREATE TABLE team (id int PRIMARY KEY);
        CREATE TABLE project (id int PRIMARY KEY, team_id int NOT NULL REFERENCES team (id) ON DELETE CASCADE);
        CREATE INDEX project_team_id_idx ON project (team_id);
        ALTER TABLE team ENABLE ROW LEVEL SECURITY;
        ALTER TABLE team FORCE ROW LEVEL SECURITY;
        ALTER TABLE project ENABLE ROW LEVEL SECURITY;
        ALTER TABLE project FORCE ROW LEVEL SECURITY;
    """

    id = "RLS011"
    name = "unindexed-foreign-key"
    level = "warning"
    hint = "CREATE INDEX ON the referencing table (the foreign key's columns, in any order, leading the index)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        keys: dict[str, list[tuple[str, ...]]] = {}
        for index in model.indexes:
            if index.valid and index.predicate is None and index.method in ("btree", "hash"):  # an equality lookup
                keys.setdefault(f"{index.schema}.{index.table}", []).append(index.columns)
        for relation in model.relations.values():
            if relation.primary_key:
                keys.setdefault(relation.qualified, []).append(relation.primary_key)
        by_table = exprs.policies_by_table(model)
        for fk in model.foreign_keys:
            table = f"{fk.schema}.{fk.table}"
            width = len(fk.columns)
            if any(set(columns[:width]) == set(fk.columns) for columns in keys.get(table, ())):
                continue
            name = fk.name if fk.name != "fk" else f"{fk.table}_{'_'.join(fk.columns)}_fkey"  # unnamed in SQL files
            filtering = sorted(
                p.name
                for p in by_table.get(table, ())
                if set(fk.columns)
                & (
                    exprs.row_names(exprs.parse(p.using), exprs.row_of(model, p))
                    | exprs.row_names(exprs.parse(p.check), exprs.row_of(model, p))
                )
            )
            columns = ", ".join(fk.columns)
            yield self.finding(
                f"{table}.{name}",
                f"no index of {table} starts with {columns}, the columns of foreign key {name} -> "
                f"{fk.ref_table}: every delete or key update in {fk.ref_table} scans {table}"
                + (f", and policies {', '.join(filtering)} filter on it unindexed" if filtering else ""),
            )
