"""Rows handed to a DBAPI driver directly, past SQLAlchemy's per-row work: the same values, each
through the bind processor SQLAlchemy would apply, in a statement compiled once by the dialect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def bind_processors(dialect: sa.engine.Dialect, table: sa.Table) -> list:
    """Per column, the driver's value conversion SQLAlchemy would apply (None where there is none)."""
    return [column.type.dialect_impl(dialect).bind_processor(dialect) for column in table.columns]


def driver_rows(rows: list[Sequence], order: Sequence[int], processors: Sequence) -> list[Sequence]:
    """Rows as the driver takes them: the values at positions `order` of each row, each through
    its bind processor (None where there is none)."""
    convert = [(i, p) for i, p in enumerate(processors) if p is not None]
    if list(order) == list(range(len(order))):
        if not convert:
            return rows
        out = [list(row) for row in rows]
    else:
        out = [[row[i] for i in order] for row in rows]
    for values in out:
        for i, process in convert:
            values[i] = process(values[i])
    return out


def executemany_upserter(statement: sa.Insert, dialect: sa.engine.Dialect, table: sa.Table):
    """``write(conn, rows)`` through the driver's own executemany, the statement compiled once
    (names quoted by the dialect); None where the compiled form has no positional binds."""
    compiled = statement.compile(dialect=dialect)
    if compiled.positiontup is None:
        return None
    keys = [c.key for c in table.columns]
    order = [keys.index(key) for key in compiled.positiontup]
    processors = [table.columns[i].type.dialect_impl(dialect).bind_processor(dialect) for i in order]

    def write(conn, rows):
        with driver_cursor(conn, compiled.string) as cursor:
            cursor.executemany(compiled.string, driver_rows(rows, order, processors))

    return write


@contextlib.contextmanager
def driver_cursor(conn: Connection, statement: str) -> Iterator:
    """A DBAPI cursor inside the connection's transaction; driver errors surface as SQLAlchemy's
    DBAPIError (a lost connection is invalidated), as they would through conn.execute."""
    if not conn.in_transaction():
        conn.begin()  # so that conn.commit() commits what the cursor writes
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        yield cursor
    except dbapi.Error as error:
        lost = conn.dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate()
        raise sa.exc.DBAPIError.instance(statement, None, error, dbapi.Error, connection_invalidated=lost) from error
    finally:
        if not conn.invalidated:
            cursor.close()


__all__ = ["bind_processors", "driver_cursor", "driver_rows", "executemany_upserter"]
