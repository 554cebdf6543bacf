"""The destination table's DDL, in one place: create it, add the columns it lacks, check it."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.engines import EngineModule
from airflow_provider_pdr.core.errors import ConfigurationError
from airflow_provider_pdr.core.schema import (
    check_destination, create_destination_table, describe, generic_type, introspect_table,
)
from airflow_provider_pdr.core.transform import ColumnPlan

log = logging.getLogger(__name__)


def ensure_destination(destination: Connection, dst: EngineModule, mapped: ColumnPlan, source_table: sa.Table,
                       table: str, schema: str | None, *, create_table: bool, evolve: bool) -> sa.Table:
    """The destination table as introspected, created first (create_table) and given the mapped
    columns it lacks (create_table or evolve); SchemaError if it cannot take the rows."""
    keys = mapped.keys
    created = create_table and not sa.inspect(destination).has_table(table, schema=schema)
    if created:
        create_destination_table(destination, dst, mapped.shape(source_table, creating=True), keys, table, schema)
        destination.commit()
    target = introspect_table(destination, dst, table, schema)
    if created:  # as the database declared it
        log.info("destination table %r: created with columns %s", describe(table, schema), typed(destination, target))
    shape = mapped.shape(source_table, creating=False)
    if create_table or evolve:  # new source columns, or another source's columns of a shared table
        target = add_columns(destination, dst, shape, target)
    check_destination(destination, shape, target, keys)
    return target


def add_columns(conn: Connection, module: EngineModule, shape: sa.Table, target: sa.Table) -> sa.Table:
    """Add the shape's columns the destination lacks, as nullable columns; returns the table introspected anew."""
    missing = [c for c in shape.columns if c.name not in target.columns]
    if not missing:
        return target
    where = describe(target.name, target.schema)
    untyped = [c.name for c in missing if isinstance(c.type, sa.types.NullType)]
    if untyped:
        raise ConfigurationError(f"fields {untyped} are computed and missing from {where!r}: give them a 'type'")
    spare = sa.Table(target.name, sa.MetaData(), *[
        sa.Column(c.name, module.ddl_type(generic_type(c, f"{where}.{c.name}"), f"{where}.{c.name}"), nullable=True)
        for c in missing
    ], schema=target.schema)
    for column in spare.columns:
        spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {module.qualified(target.name, target.schema)} ADD {spec}")
    conn.commit()
    log.warning("destination table %r: added columns %s", where, typed(conn, spare))
    return introspect_table(conn, module, target.name, target.schema)


def typed(conn: Connection, table: sa.Table) -> str:
    """The table's columns with their types as this engine declares them, for a log line; a type
    the dialect cannot name is shown by SQLAlchemy's name for it (a log line never fails a run)."""
    def declared(column: sa.Column) -> str:
        try:
            return column.type.compile(dialect=conn.dialect)
        except sa.exc.SQLAlchemyError:
            return repr(column.type)

    return ", ".join(f"{c.name} {declared(c)}" for c in table.columns)
