"""Read migration scripts offline with the real PostgreSQL parser (pglast).

`apply_ddl` folds the statements of a script into a `Schema`: tables,
columns, primary keys, foreign keys, indexes and enum types. It understands
the DDL that migrations write (CREATE/ALTER/DROP TABLE, CREATE/DROP INDEX,
CREATE/DROP TYPE ... AS ENUM) and ignores statements that do not change the
shape of tables. This is what lets `render --phase N` and policy-file
validation run without a database.
"""

from __future__ import annotations

from dataclasses import replace

import pglast
from pglast import ast, enums
from pglast.stream import RawStream

from rlsctl.errors import UsageError
from rlsctl.schema.tables import Column, ForeignKey, Index, Schema, Table

ConstrType = enums.ConstrType
AlterType = enums.AlterTableType


def parse_script(text: str, path: str) -> tuple[ast.RawStmt, ...]:
    """Parse a whole SQL script; a syntax error names the file and line."""
    try:
        return tuple(pglast.parse_sql(text))
    except pglast.parser.ParseError as exc:
        # pglast gives the 0-based character offset of the error as the second argument
        offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        where = f"{path}:{line_at(text, offset)}" if offset is not None else path
        raise UsageError(f"{where}: SQL syntax error: {exc.args[0]}") from None


def line_at(text: str, offset: int) -> int:
    """The 1-based line of a character offset."""
    return text.count("\n", 0, max(offset, 0)) + 1


def statement_start(text: str, offset: int) -> int:
    """The offset of the first word of the statement pglast says starts at `offset`: past blanks, `--` comments
    and (nested) `/* */` comments."""
    end = len(text)
    while offset < end:
        if text[offset].isspace():
            offset += 1
        elif text.startswith("--", offset):
            newline = text.find("\n", offset)
            offset = end if newline < 0 else newline + 1
        elif text.startswith("/*", offset):
            depth, offset = 1, offset + 2
            while offset < end and depth:
                if text.startswith("/*", offset):
                    depth, offset = depth + 1, offset + 2
                elif text.startswith("*/", offset):
                    depth, offset = depth - 1, offset + 2
                else:
                    offset += 1
        else:
            break
    return min(offset, end)


def split_rendered(text: str) -> list[str]:
    """Statements of SQL that rlsctl rendered itself: split by the scanner, no full parse."""
    return [statement.strip() for statement in pglast.split(text, with_parser=False) if statement.strip()]


def split_statements(text: str, path: str) -> list[str]:
    """The statements of a script as separate strings (comments kept with them). Transaction
    control is refused: a COMMIT would end the one transaction a phase (or a rollback, or the
    rollback's rolled-back probe) runs in, half-way through."""
    for raw in parse_script(text, path):
        if isinstance(raw.stmt, ast.TransactionStmt):
            # pglast's statement location is where the previous one ended: its first word's line
            line = line_at(text, statement_start(text, raw.stmt_location or 0))
            raise UsageError(
                f"{path}:{line}: transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) in a migration "
                "script: rlsctl runs each phase in one transaction of its own; remove it"
            )
    return [statement for statement in pglast.split(text) if statement.strip()]


DATA_STATEMENTS = (
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.CopyStmt,
    ast.DoStmt,
    ast.CallStmt,
)


def changes_data(statement: str) -> bool:
    """Whether a statement writes rows (or may: DO blocks and procedure calls)."""
    parsed = pglast.parse_sql(statement)
    return any(isinstance(raw.stmt, DATA_STATEMENTS) for raw in parsed)


def concurrent_index(statement: str) -> tuple[str | None, str] | None:
    """(schema or None, index name) when the statement is CREATE INDEX CONCURRENTLY, else None.
    Such a statement cannot run in a transaction: migrate runs a phase made only of them apart."""
    parsed = pglast.parse_sql(statement)
    if len(parsed) != 1:
        return None
    stmt = parsed[0].stmt
    if not isinstance(stmt, ast.IndexStmt) or not stmt.concurrent:
        return None
    return stmt.relation.schemaname, stmt.idxname or ""


def apply_ddl(schema: Schema, text: str, path: str) -> Schema:
    for raw in parse_script(text, path):
        schema = _apply_statement(schema, raw.stmt)
    return schema


def _apply_statement(schema: Schema, stmt: ast.Node) -> Schema:
    if isinstance(stmt, ast.CreateEnumStmt):
        name = stmt.typeName[-1].sval
        labels = tuple(value.sval for value in stmt.vals or ())
        return replace(schema, enums=(*((n, v) for n, v in schema.enums if n != name), (name, labels)))
    if isinstance(stmt, ast.CreateStmt):
        return schema.with_table(_create_table(stmt))
    if isinstance(stmt, ast.IndexStmt):
        return _create_index(schema, stmt)
    if isinstance(stmt, ast.AlterTableStmt):
        return _alter_table(schema, stmt)
    if isinstance(stmt, ast.DropStmt):
        return _drop(schema, stmt)
    return schema


def _type_name(node: ast.TypeName) -> str:
    return RawStream()(node)


def _names(nodes: tuple[ast.String, ...] | None) -> tuple[str, ...]:
    return tuple(node.sval for node in nodes or ())


def _create_table(stmt: ast.CreateStmt) -> Table:
    table = Table(name=stmt.relation.relname)
    for element in stmt.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            table = _add_column(table, element)
        elif isinstance(element, ast.Constraint):
            table = _add_constraint(table, element)
    return table


# A serial column is an integer column NOT NULL DEFAULT nextval('<table>_<column>_seq').
SERIAL_TYPES = {
    "smallserial": "smallint", "serial2": "smallint", "serial": "integer", "serial4": "integer",
    "bigserial": "bigint", "serial8": "bigint",
}  # fmt: skip


def _add_column(table: Table, column_def: ast.ColumnDef) -> Table:
    kinds = {constraint.contype for constraint in column_def.constraints or ()}
    declared_type = _type_name(column_def.typeName)
    serial = SERIAL_TYPES.get(declared_type.lower())
    column = Column(
        name=column_def.colname,
        type=serial or declared_type,
        not_null=serial is not None or bool(kinds & {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY}),
        has_default=serial is not None or bool(kinds & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY}),
        # PostgreSQL's own name for a serial's sequence (unless it is too long or taken: the
        # live catalog, which apply reads, knows the real one). A `DEFAULT nextval()` counts only
        # once the catalog shows the sequence OWNED BY the column (catalog/sql/columns.sql).
        sequence=f"{table.name}_{column_def.colname}_seq" if serial else None,
    )
    table = replace(table, columns=(*table.columns, column))
    for constraint in column_def.constraints or ():
        if constraint.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE):
            constraint = replace_keys(constraint, (column.name,))
            table = _add_constraint(table, constraint)
        elif constraint.contype == ConstrType.CONSTR_FOREIGN:
            table = _add_foreign_key(table, constraint, (column.name,))
    return table


def replace_keys(constraint: ast.Constraint, columns: tuple[str, ...]) -> ast.Constraint:
    return ast.Constraint(
        contype=constraint.contype,
        conname=constraint.conname,
        keys=tuple(ast.String(sval=name) for name in columns),
    )


def _add_constraint(table: Table, constraint: ast.Constraint) -> Table:
    keys = _names(constraint.keys)
    if constraint.contype == ConstrType.CONSTR_PRIMARY:
        name = constraint.conname or f"{table.name}_pkey"
        index = Index(name=name, columns=keys, unique=True)
        table = replace(table, primary_key=keys, indexes=(*table.indexes, index))
        return _mark_not_null(table, keys)
    if constraint.contype == ConstrType.CONSTR_UNIQUE:
        name = constraint.conname or f"{table.name}_{'_'.join(keys)}_key"
        return replace(table, indexes=(*table.indexes, Index(name=name, columns=keys, unique=True)))
    if constraint.contype == ConstrType.CONSTR_FOREIGN:
        return _add_foreign_key(table, constraint, _names(constraint.fk_attrs))
    return table


def _mark_not_null(table: Table, names: tuple[str, ...]) -> Table:
    columns = tuple(replace(c, not_null=True) if c.name in names else c for c in table.columns)
    return replace(table, columns=columns)


def _add_foreign_key(table: Table, constraint: ast.Constraint, columns: tuple[str, ...]) -> Table:
    name = constraint.conname or f"{table.name}_{'_'.join(columns)}_fkey"
    fk = ForeignKey(
        name=name,
        columns=columns,
        ref_table=constraint.pktable.relname,
        ref_columns=_names(constraint.pk_attrs) or ("id",),
    )
    return replace(table, foreign_keys=(*table.foreign_keys, fk))


def _create_index(schema: Schema, stmt: ast.IndexStmt) -> Schema:
    table = schema.get(stmt.relation.relname)
    if table is None:
        return schema
    columns = tuple(param.name for param in stmt.indexParams or () if param.name)
    name = stmt.idxname or f"{table.name}_{'_'.join(columns)}_idx"
    index = Index(name=name, columns=columns, unique=bool(stmt.unique))
    return schema.with_table(replace(table, indexes=(*table.indexes, index)))


def _alter_table(schema: Schema, stmt: ast.AlterTableStmt) -> Schema:
    table = schema.get(stmt.relation.relname)
    if table is None:
        return schema
    for cmd in stmt.cmds or ():
        table = _alter_command(table, cmd)
    return schema.with_table(table)


def _alter_command(table: Table, cmd: ast.AlterTableCmd) -> Table:
    if cmd.subtype == AlterType.AT_AddColumn:
        return _add_column(table, cmd.def_)
    if cmd.subtype == AlterType.AT_DropColumn:
        return replace(table, columns=tuple(c for c in table.columns if c.name != cmd.name))
    if cmd.subtype == AlterType.AT_AddConstraint:
        return _add_constraint(table, cmd.def_)
    if cmd.subtype == AlterType.AT_DropConstraint:
        return replace(
            table,
            foreign_keys=tuple(fk for fk in table.foreign_keys if fk.name != cmd.name),
            indexes=tuple(index for index in table.indexes if index.name != cmd.name),
        )
    if cmd.subtype == AlterType.AT_SetNotNull:
        return _mark_not_null(table, (cmd.name,))
    if cmd.subtype == AlterType.AT_DropNotNull:
        columns = tuple(replace(c, not_null=False) if c.name == cmd.name else c for c in table.columns)
        return replace(table, columns=columns)
    if cmd.subtype == AlterType.AT_ColumnDefault:
        has_default = cmd.def_ is not None
        columns = tuple(replace(c, has_default=has_default) if c.name == cmd.name else c for c in table.columns)
        return replace(table, columns=columns)
    return table


def _drop(schema: Schema, stmt: ast.DropStmt) -> Schema:
    for obj in stmt.objects or ():
        names = _names(obj) if isinstance(obj, tuple) else _names(getattr(obj, "names", ()))
        if not names:
            continue
        name = names[-1]
        if stmt.removeType == enums.ObjectType.OBJECT_TABLE:
            schema = schema.without_table(name)
        elif stmt.removeType == enums.ObjectType.OBJECT_TYPE:
            schema = replace(schema, enums=tuple((n, v) for n, v in schema.enums if n != name))
        elif stmt.removeType == enums.ObjectType.OBJECT_INDEX:
            schema = _drop_index(schema, name)
    return schema


def _drop_index(schema: Schema, name: str) -> Schema:
    for table in schema.tables:
        if any(index.name == name for index in table.indexes):
            kept = tuple(index for index in table.indexes if index.name != name)
            return schema.with_table(replace(table, indexes=kept))
    return schema
