"""PostgreSQL's COPY as the destination's bulk path: batches staged by COPY in a temporary table
and upserted from it (CopyUpserter), and rows that a source database writes as lines of COPY
text, never parsed in Python (TextCopy). The driver (drivers/psycopg.py, psycopg2.py) streams
the data; the SQL is the engine's."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import EngineModule
from airflow_provider_pdr.core.engines.drivers import CopyDriver, Write
from airflow_provider_pdr.core.engines.drivers.copytext import COPY_ESCAPES
from airflow_provider_pdr.core.engines.drivers.dbapi import bind_processors, driver_cursor, driver_rows


def may_create_temporary(conn) -> bool:
    return conn.scalar(sa.text("SELECT has_database_privilege(current_database(), 'TEMPORARY')"))


class CopyUpserter:
    """``write(conn, rows)``: each batch is COPYed into a temporary table with the destination columns'
    own types, then upserted from it in one INSERT ... SELECT: about three times faster than psycopg's
    executemany or psycopg2's execute_values, and values are checked by the columns' own input
    functions (a string too long for its varchar is refused, never cut). psycopg 3 writes the rows
    itself; for psycopg2 they are written as COPY text (copy_text), and a batch with a value of
    another kind goes through execute_values. Where the role may not create temporary tables, rows
    go through execute_values or SQLAlchemy's multi-row insert instead (`fallback`).
    With `text`, each row is already a line of COPY text (TextCopy.line), written as it is;
    TextCopy exists only where temporary tables are allowed."""

    def __init__(self, driver: CopyDriver, dialect: sa.engine.Dialect, table: sa.Table, *, text: bool = False,
                 upsert_from: Callable[[sa.Select], sa.Insert], fallback: Callable[[], Write]):
        sql = driver.sql  # the same composables in both drivers
        columns = [c.name for c in table.columns]
        shape = names.short_hash(table.schema or "", table.name, *[f"{c.name} {c.type!r}" for c in table.columns])
        staging = sa.Table(f"{names.PREFIX}in_{shape}", sa.MetaData(), *[sa.Column(n) for n in columns],
                           schema="pg_temp")
        # psycopg's own quoting here: COPY takes no parameters, so it would not read the dialect's %% as %.
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))
        staged = sql.Identifier(staging.schema, staging.name)
        target = sql.Identifier(*[part for part in (table.schema, table.name) if part])
        # CREATE ... AS takes the column types only (no constraints, no defaults); once per session.
        self.create = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(staging.name), listed, target)
        self.copy = sql.SQL("COPY {} ({}) FROM STDIN").format(staged, listed)
        self.empty = sql.SQL("TRUNCATE {}").format(staged)  # a later write in the same transaction starts empty
        self.upsert = upsert_from(sa.select(staging)).compile(dialect=dialect).string
        self.driver, self.text, self.dbapi_error = driver, text, dialect.loaded_dbapi.Error
        self.processors, self.order = bind_processors(dialect, table), range(len(columns))
        # Made at the first batch that needs it: most drains never do, and it compiles statements.
        self.fallback = functools.cache(fallback)
        # Learnt at the first write: a database may refuse TEMP (known already where rows come as text).
        self.temporary_allowed: bool | None = True if text else None

    def __call__(self, conn: Connection, rows: list) -> None:
        if self.temporary_allowed is None:
            self.temporary_allowed = bool(may_create_temporary(conn))
        data = None
        if self.temporary_allowed:
            data = ("".join(line + "\n" for line in rows) if self.text
                    else self.driver.copy_data(driver_rows(rows, self.order, self.processors)))
        if data is None:  # no temporary table, or a value of a kind the driver cannot COPY
            return self.fallback()(conn, rows)
        self.stage_and_upsert(conn, data)

    def stage_and_upsert(self, conn: Connection, data: str | list) -> None:
        with driver_cursor(conn, self.upsert) as cursor:
            cursor.execute(self.create)
            try:
                self.driver.copy(cursor, self.copy, data)
            except self.dbapi_error as error:
                # The server's context line quotes the refused value: row values stay out of
                # messages and logs, as they do for every other statement (hide_parameters).
                if error.diag.context is None:
                    raise
                raise type(error)(f"{error.diag.message_primary} (COPY into the staging table)") from None
            cursor.execute(self.upsert, ())  # given parameters, the driver reads the compiled %% as %
            cursor.execute(self.empty)


class TextCopy:
    """Rows into PostgreSQL (written by psycopg 3 or psycopg2) as lines of COPY text that the source
    database writes, each value as text the destination column reads back as the very value the
    row path would store (EngineModule.text_field): Python never parses a value."""

    def __init__(self, source: EngineModule, line: sa.ColumnElement, copy_upserter: Callable[..., Write]):
        self.source = source
        self.line = line  # what the source selects for a row (copy_line)
        self.copy_upserter = copy_upserter  # the destination's CopyUpserter of lines, given (dialect, table, keys)

    def prepare(self, conn: Connection) -> None:
        """Fix the text's settings for the rest of the read transaction."""
        self.source.prepare_text(conn)

    def upserter(self, dialect, table: sa.Table, key_columns):
        """write(conn, lines): upsert rows given as lines of COPY text, in the table's column order."""
        return self.copy_upserter(dialect, table, key_columns)


# Types whose text holds no backslash, tab or line break: COPY reads it unescaped.
PLAIN = (sa.Integer, sa.Numeric, sa.Boolean, sa.Date, sa.DateTime, sa.Time, sa.Interval, sa.Uuid)


def copy_line(source: EngineModule, values: Sequence[sa.ColumnElement],
              destinations: Sequence[sa.types.TypeEngine]) -> sa.ColumnElement | None:
    """The values as one line of COPY text (tab between values, \\N for NULL) that the `source`
    engine writes, for destination columns of the types `destinations`; None if it cannot write
    one of them so (EngineModule.text_field)."""
    fields = []
    for value, destination in zip(values, destinations):
        field = source.text_field(value, destination)
        if field is None:
            return None
        if not isinstance(value.type, PLAIN):
            for raw, escaped in COPY_ESCAPES:
                field = sa.func.replace(field, raw, escaped)
        fields.append(sa.func.coalesce(field, "\\N"))
    return sa.func.concat_ws("\t", *fields)


__all__ = ["CopyUpserter", "PLAIN", "TextCopy", "copy_line", "may_create_temporary"]
