"""What tables and columns exist: the schema the policies are rendered for.

One shape for two sources: `rlsctl.schema.ddl` builds it offline from the migration
scripts (for `render --phase N` and for validating policy files without a
database), `rlsctl.catalog` reads it from a live database. Policies are then
rendered for exactly the tables and columns a `Schema` holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool = False
    has_default: bool = False
    # The sequence of the table's schema its default draws from with nextval() (a serial column):
    # whoever inserts needs USAGE on it. None for an identity column, which PostgreSQL numbers
    # without a privilege check, and for any other default.
    sequence: str | None = None


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...] = ()
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def has_column(self, name: str) -> bool:
        return name in self.column_names

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def foreign_key_for(self, column: str) -> ForeignKey | None:
        """The single-column foreign key on `column`, if there is one."""
        for fk in self.foreign_keys:
            if fk.columns == (column,):
                return fk
        return None

    def is_indexed(self, column: str) -> bool:
        """True when some index (or the primary key) leads with `column`."""
        if self.primary_key[:1] == (column,):
            return True
        return any(index.columns[:1] == (column,) for index in self.indexes)


@dataclass(frozen=True)
class ExtensionSite:
    """Where an installed extension lives, and whether code of rlsctl's may call it there: no role
    but a DBA can create objects in that schema (`writers` are the others who can)."""

    name: str
    schema: str
    writers: tuple[str, ...] = ()
    owner_is_session: bool = False  # the schema's owner is the connecting role (not a DBA)
    movable: bool = True  # the session may ALTER EXTENSION ... SET SCHEMA

    @property
    def safe(self) -> bool:
        return not self.writers and not self.owner_is_session


@dataclass(frozen=True)
class Schema:
    """Tables of one PostgreSQL schema (the project's `schema`, usually public), and, read from a
    live database, where its extensions are installed."""

    name: str = "public"
    tables: tuple[Table, ...] = ()
    enums: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    extensions: tuple[ExtensionSite, ...] = field(default=())

    def extension(self, name: str) -> ExtensionSite | None:
        return next((site for site in self.extensions if site.name == name), None)

    @cached_property
    def _by_name(self) -> dict[str, Table]:
        return {table.name: table for table in self.tables}

    def has_table(self, name: str) -> bool:
        return name in self._by_name

    def table(self, name: str) -> Table:
        return self._by_name[name]

    def get(self, name: str) -> Table | None:
        return self._by_name.get(name)

    def has_column(self, table: str, column: str) -> bool:
        found = self._by_name.get(table)
        return found is not None and found.has_column(column)

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.tables)

    def with_table(self, table: Table) -> Schema:
        others = tuple(t for t in self.tables if t.name != table.name)
        return replace(self, tables=tuple(sorted((*others, table), key=lambda t: t.name)))

    def without_table(self, name: str) -> Schema:
        return replace(self, tables=tuple(t for t in self.tables if t.name != name))

    def union(self, other: Schema) -> Schema:
        """Tables and columns known to either schema (for validating policy files)."""
        merged = {table.name: table for table in self.tables}
        for table in other.tables:
            if table.name not in merged:
                merged[table.name] = table
                continue
            mine = merged[table.name]
            extra = tuple(c for c in table.columns if not mine.has_column(c.name))
            merged[table.name] = replace(mine, columns=mine.columns + extra)
        return replace(self, tables=tuple(sorted(merged.values(), key=lambda t: t.name)))


def with_time_zone(type_name: str) -> bool:
    """`timestamp with time zone` / `timestamptz` (with a precision or not), as the catalog or a migration names it."""
    name = " ".join(type_name.lower().split())
    return name.startswith("timestamptz") or ("with time zone" in name and "without" not in name)
