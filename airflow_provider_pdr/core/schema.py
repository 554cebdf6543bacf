"""Tables as the core sees them: introspection with clear errors, type mapping across engines,
creating a destination table (the value conversions a destination column needs: core/values.py)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.engines import EngineModule
from airflow_provider_pdr.core.errors import SchemaError, UnsupportedTypeError

# Generic types whose values every engine stores exactly (with the documented rules).
PORTABLE = (sa.Integer, sa.Numeric, sa.Float, sa.String, sa.LargeBinary, sa.DateTime, sa.Date, sa.Time,
            sa.Boolean, sa.Uuid, sa.JSON)


def describe(table_name: str, schema: str | None) -> str:
    return f"{schema}.{table_name}" if schema else table_name


def introspect_table(conn: Connection, module: EngineModule, name: str, schema: str | None) -> sa.Table:
    """The table with io types that carry values exactly; SchemaError if it does not exist."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(name, schema=schema):
        raise SchemaError(f"table {describe(name, schema)!r} does not exist in the {module.name} database")
    module.check_name(name, "table")
    # Columns and primary key only: every reflect reads them, and the other kinds of schema
    # information (indexes, foreign keys, comments...) would cost a catalog query each.
    columns = inspector.get_columns(name, schema=schema)
    key = inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]
    items = [sa.Column(c["name"], c["type"], nullable=c["nullable"]) for c in columns]
    table = sa.Table(name, sa.MetaData(), *items, *([sa.PrimaryKeyConstraint(*key)] if key else []), schema=schema,
                     info=module.table_info(inspector, name, schema))
    for column in table.columns:
        module.check_name(column.name, f"column of table {describe(name, schema)!r}")
        type_ = module.io_type(column.type)
        if isinstance(type_, sa.Float) and type_.asdecimal:  # MySQL's DOUBLE reads as Decimal otherwise
            type_ = type_.copy()
            type_.asdecimal = False
        column.type = type_
    return table


def primary_key(table: sa.Table) -> tuple[str, ...]:
    keys = tuple(column.name for column in table.primary_key.columns)
    if not keys:
        raise SchemaError(
            f"table {describe(table.name, table.schema)!r} has no primary key; a mirror needs one to "
            "know which row a change is about: add a primary key to the source table"
        )
    return keys


def generic_type(column: sa.Column, where: str) -> sa.types.TypeEngine:
    type_ = column.type
    if isinstance(type_, sa.types.TypeDecorator) and "as_generic" not in type(type_).__dict__:
        type_ = type_.impl_instance
    if type(type_).__name__ == "TINYINT" and getattr(type_, "display_width", None) == 1:
        return sa.Boolean()  # MySQL's BOOL is TINYINT(1)
    if isinstance(type_, sa.Enum):
        return sa.String(max((len(value) for value in type_.enums), default=1))
    try:
        generic = type_.as_generic()
    except NotImplementedError:
        generic = None
    if generic is None or not isinstance(generic, PORTABLE) or isinstance(generic, sa.ARRAY):
        raise UnsupportedTypeError(
            f"{where}: column type {type_!r} has no portable equivalent; create the destination "
            "table yourself or leave the column out of the reflection"
        )
    if getattr(type_, "unsigned", False) and isinstance(generic, sa.Integer):
        # MySQL's unsigned integers reach twice the signed range: widen so every value fits.
        return sa.Numeric(20, 0) if isinstance(generic, sa.BigInteger) else sa.BigInteger()
    if isinstance(generic, sa.Float):
        return sa.Double()  # single precision widens losslessly; engines disagree on FLOAT(p)
    if isinstance(generic, sa.String):  # drop the source engine's collation
        return sa.String(generic.length) if generic.length and not isinstance(generic, sa.Text) else sa.Text()
    return generic


def create_destination_table(
    conn: Connection, module: EngineModule, source: sa.Table, key_columns: Sequence[str],
    name: str, schema: str | None,
) -> None:
    module.check_name(name, "table")
    columns = []
    for column in source.columns:
        where = f"{describe(source.name, source.schema)}.{column.name}"
        module.check_name(column.name, f"column {where}")
        columns.append(
            sa.Column(
                column.name,
                module.ddl_type(generic_type(column, where), where),
                nullable=column.nullable and column.name not in key_columns,
                autoincrement=False,
            )
        )
    # The key in the source's order (its index serves lookups by a leading part of it).
    key = sa.PrimaryKeyConstraint(*key_columns)
    sa.Table(name, sa.MetaData(), *columns, key, schema=schema).create(conn, checkfirst=True)


def check_destination(conn: Connection, source: sa.Table, destination: sa.Table, key_columns: Sequence[str]) -> None:
    missing = [c.name for c in source.columns if c.name not in destination.columns]
    if missing:
        raise SchemaError(
            f"destination table {describe(destination.name, destination.schema)!r} lacks the source "
            f"columns {missing}; add them or recreate the table"
        )
    unique_sets = [{c.name for c in destination.primary_key.columns}]
    if set(key_columns) == unique_sets[0]:  # the usual case: no catalog query for other unique keys
        return
    inspector = sa.inspect(conn)
    unique_sets += [set(u["column_names"]) for u in inspector.get_unique_constraints(destination.name, destination.schema)]
    unique_sets += [set(i["column_names"]) for i in inspector.get_indexes(destination.name, destination.schema) if i["unique"]]
    if set(key_columns) not in unique_sets:
        raise SchemaError(
            f"destination table {describe(destination.name, destination.schema)!r} must have the "
            f"primary key {list(key_columns)} (the source's key) so rows can be upserted"
        )
