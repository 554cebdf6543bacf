"""psycopg2: COPY takes text, which copy_text writes here from the driver's values; rows upserted
by statements go as multi-row VALUES through execute_values, one statement per batch."""

from __future__ import annotations

import io

import sqlalchemy as sa
from psycopg2 import sql
from psycopg2.extensions import Binary
from psycopg2.extras import execute_values

from airflow_provider_pdr.core.engines.drivers import CopyDriver
from airflow_provider_pdr.core.engines.drivers.copytext import COPY_TEXT, bytea, copy_text
from airflow_provider_pdr.core.engines.drivers.dbapi import bind_processors, driver_cursor, driver_rows

# SQLAlchemy hands psycopg2 its bytes wrapped.
FORMS = {**COPY_TEXT, Binary: lambda value: bytea(value.adapted)}


class Psycopg2(CopyDriver):
    sql = sql

    def copy_data(self, rows):
        lines = [copy_text(row, FORMS) for row in rows]
        if None in lines:  # a value of a kind copy_text does not write
            return None
        return "".join(line + "\n" for line in lines)

    def copy(self, cursor, statement, data):
        cursor.copy_expert(statement.as_string(cursor), io.StringIO(data))

    def upserter(self, statement, dialect, table):
        return values_upserter(statement, dialect, table)


def values_upserter(statement: sa.Insert, dialect: sa.engine.Dialect, table: sa.Table):
    """``write(conn, rows)`` through execute_values; None for a compiled form not recognised here."""
    # Compiled once: the single-row VALUES tuple (with SQLAlchemy's casts) becomes the
    # template that execute_values repeats, and the statement keeps one %s in its place.
    plain = sa.insert(table).compile(dialect=dialect)
    template = plain.string[plain.string.rindex(" VALUES ") + len(" VALUES "):]
    full = statement.compile(dialect=dialect).string
    sql_ = full.replace(f" VALUES {template}", " VALUES %s", 1)
    if sql_ == full:  # a form we do not recognise: stay on the general path
        return None
    names = [c.name for c in table.columns]
    for name in names:  # named binds, in column order, become positional: rows travel as lists
        template = template.replace(f"%({plain.escaped_bind_names.get(name, name)})s", "%s", 1)
    if "%(" in template:
        return None
    processors = bind_processors(dialect, table)
    order = range(len(names))

    def write(conn, rows):
        with driver_cursor(conn, sql_) as cursor:
            execute_values(cursor, sql_, driver_rows(rows, order, processors), template=template,
                           page_size=len(rows))

    return write


__all__ = ["FORMS", "Psycopg2", "values_upserter"]
