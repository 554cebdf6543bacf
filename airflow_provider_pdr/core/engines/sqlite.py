"""SQLite: row triggers, INSERT ... ON CONFLICT upsert, a lock file per channel, and
decimal values carried as text so that no digit is lost through REAL."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import (
    CaptureTarget, EngineModule, SourceTable, key_mismatch, on_conflict_upsert,
)

log = logging.getLogger(__name__)
_memory_locks: dict[str, threading.Lock] = {}


class DecimalText(sa.types.UserDefinedType):
    """Declared type of decimal columns we create: its name contains TEXT, so SQLite keeps
    the digits as text instead of rounding them to a 15-digit REAL (NUMERIC affinity)."""

    cache_ok = True

    def __init__(self, precision=None, scale=None):
        self.precision, self.scale = precision, scale

    def get_col_spec(self, **kw):
        if self.precision is None:
            return "DECIMAL_TEXT"
        return f"DECIMAL_TEXT({self.precision}, {self.scale or 0})"


class ExactDecimal(sa.types.TypeDecorator):
    """Decimals in SQLite without the float round trip SQLAlchemy's Numeric takes."""

    impl = DecimalText
    cache_ok = True

    def __init__(self, precision=None, scale=None):
        super().__init__(precision, scale)
        self.precision, self.scale = precision, scale

    def as_generic(self, allow_nulltype=False):
        return sa.Numeric(self.precision, self.scale)

    def process_bind_param(self, value, dialect):
        return None if value is None else str(value)

    def result_processor(self, dialect, coltype):
        quantum = None if self.scale is None else decimal.Decimal(1).scaleb(-self.scale)

        def process(value):
            if value is None:
                return None
            if isinstance(value, str):
                return decimal.Decimal(value)
            number = decimal.Decimal(str(value))
            # NUMERIC affinity stores '80.00' as INTEGER 80 or REAL 80.5: give the scale back.
            return number if quantum is None else number.quantize(quantum)

        return process


class IsoDateTime(sqlite.DATETIME):
    """SQLite datetimes written by datetime.isoformat where it gives SQLAlchemy's default storage
    format (a naive datetime): the same text at a fifth of the cost of formatting a dict."""

    def bind_processor(self, dialect):
        formatted = super().bind_processor(dialect)
        if self._storage_format != sqlite.DATETIME._storage_format:
            return formatted
        datetime = dt.datetime

        def process(value):
            if type(value) is datetime and value.tzinfo is None:
                return value.isoformat(" ", "microseconds")
            return formatted(value)

        return process


def decimal_text(scale: int, exact: Callable) -> Callable:
    """ExactDecimal to ExactDecimal: the text of a value SQLite returns as it is read (quantized to
    `scale`) and written (str), by appending zeros to repr where quantizing only appends them."""
    digits = decimal.getcontext().prec  # more, and quantize raises
    plain = scale <= 6  # str(Decimal) writes an exponent from 7 zeros after the point on ('0E-7')

    def carry(value):
        kind = type(value)
        if kind is float:
            text = repr(value)  # Decimal(str(value)) reads these digits
            point = text.find(".")
            missing = scale - (len(text) - point - 1)
            if (point > 0 and missing >= 0 and "e" not in text and len(text) + missing <= digits
                    and (plain or abs(value) >= 1)):
                return text + "0" * missing
        elif kind is int:
            text = str(value)
            if len(text) + scale <= digits and (plain or value):
                return f"{text}.{'0' * scale}" if scale else text
        return exact(value)

    return carry


def iso_text(parse: Callable, size: int, separators: tuple[slice, str], exact: Callable) -> Callable:
    """DATETIME or DATE to the same, both in SQLAlchemy's default storage format: a valid, naive
    text of exactly that format (`size` characters, the separators where that format has them)
    is what reading and writing it gives back."""
    where, marks = separators

    def carry(value):
        # "24": a later fromisoformat may read 24:00 as the next day's midnight
        if type(value) is str and len(value) == size and value[where] == marks and value[11:13] != "24":
            try:
                if getattr(parse(value), "tzinfo", None) is None:
                    return value
            except ValueError:
                pass
        return exact(value)

    return carry


datetime_text = functools.partial(iso_text, dt.datetime.fromisoformat, 26, (slice(4, 20, 3), "-- ::."))
date_text = functools.partial(iso_text, dt.date.fromisoformat, 10, (slice(4, 8, 3), "--"))


def boolean_int(exact: Callable) -> Callable:
    """BOOLEAN to BOOLEAN: 0 and 1 are what reading and writing them gives back."""
    def carry(value):
        return value if type(value) is int and (value == 0 or value == 1) else exact(value)

    return carry


class Untyped(sa.types.UserDefinedType):
    """A column declared without a type: values pass as they are, and a change table's copy of
    it is declared BLOB, the one affinity that converts nothing ('1' and 1 stay two keys)."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "BLOB"


def database_file(url: sa.URL) -> str | None:
    """The path of a plain SQLite database file; None for memory databases and URI filenames."""
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:") or url.query:
        return None
    return path


class SqliteEngine(EngineModule):
    name = "sqlite"
    max_identifier_length = 128  # SQLite has no limit; stay within what the others accept
    row_values = True
    overlaps = False  # sqlite3 releases the interpreter lock per row: another busy thread stalls it
    sequence_type = sa.Integer()  # SQLite's rowid alias must be declared INTEGER exactly

    def __init__(self, dialect):
        super().__init__(dialect)
        # Reflection must know our decimal columns back (SQLite keeps declared type names).
        if "DECIMAL_TEXT" not in dialect.ischema_names:
            dialect.ischema_names = {**dialect.ischema_names, "DECIMAL_TEXT": ExactDecimal}
        if dialect.colspecs.get(sa.DateTime) is not IsoDateTime:
            dialect.colspecs = {**dialect.colspecs, sa.DateTime: IsoDateTime}

    def default_schema(self, conn):
        return None

    def changed_at_column(self) -> sa.Column:
        return sa.Column("changed_at", sa.Float, nullable=False, server_default=sa.text("(julianday('now'))"))

    def age_seconds(self, oldest):
        return (sa.func.julianday("now") - oldest) * 86400.0

    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        source = self.quote(table.name)  # SQLite triggers may only name tables of their own schema
        key_list = ", ".join(self.quote(f"key_{i}") for i in range(1, len(table.key_columns) + 1))

        def insert(row: str, where: str = "") -> str:
            values = ", ".join(f"{row}.{self.quote(c)}" for c in table.key_columns)
            return " ".join(
                f"INSERT INTO {self.quote(t.change_table)} ({key_list}) SELECT {values}{where};" for t in targets
            )

        changed = key_mismatch("OLD", "NEW", table.key_columns, self.quote, lambda v: f"CAST({v} AS BLOB)")
        bodies = {
            "i": ("INSERT", insert("NEW")),
            "u": ("UPDATE", insert("NEW") + " " + insert("OLD", f" WHERE {changed}")),
            "d": ("DELETE", insert("OLD")),
        }
        return [
            f"CREATE TRIGGER {self.quote(base + '_' + suffix)} AFTER {event} ON {source} BEGIN {body} END"
            for suffix, (event, body) in bodies.items()
        ]

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {self.quote(base + '_' + s)}" for s in "iud"]

    def capture_objects(self, conn, table: SourceTable) -> set[str]:
        rows = conn.execute(
            sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
            {"table": table.name},
        )
        prefix = names.PREFIX + names.table_tag(table.schema, table.name)
        return {name.rsplit("_", 1)[0] for (name,) in rows if name.startswith(prefix)}

    @staticmethod
    def upsert_statement(table: sa.Table, key_columns, rows_from: sa.Select | None = None):
        return on_conflict_upsert(sqlite.insert(table), table, key_columns, rows_from)

    def shortcut(self, source, destination, destination_dialect):
        if destination_dialect.name != self.name:
            return None
        source, destination = source.dialect_impl(self.dialect), destination.dialect_impl(destination_dialect)
        if isinstance(source, ExactDecimal) and isinstance(destination, ExactDecimal):
            if source.scale is not None and source.scale >= 0:
                return functools.partial(decimal_text, source.scale)
        elif isinstance(source, sa.Boolean) and isinstance(destination, sa.Boolean):
            return boolean_int
        for kind, shortcut in ((IsoDateTime, datetime_text), (sqlite.DATE, date_text)):
            if isinstance(source, kind) and isinstance(destination, kind):
                default = kind._storage_format  # the storage format SQLAlchemy reads without a regexp
                if source._reg is None and source._storage_format == destination._storage_format == default:
                    return shortcut
        return None

    def upserter(self, dialect, table, key_columns):
        write = self.driver.upserter(self.upsert_statement(table, key_columns), dialect, table)
        return write or super().upserter(dialect, table, key_columns)

    def upsert(self, conn, table: sa.Table, key_columns, rows) -> None:
        conn.execute(self.upsert_statement(table, key_columns), rows)

    def define_functions(self, conn, functions):
        # They stay defined on the pooled connection, under names that only a drain calls, and each
        # drain defines its own before its statements run.
        for name, function in functions.items():
            conn.connection.dbapi_connection.create_function(name, 1, function, deterministic=True)

    @contextlib.contextmanager
    def sharing(self, conn, other):
        """Another SQLite file is attached to the connection for the block and detached after; the
        same file is reached as it is."""
        here, there = database_file(conn.engine.url), database_file(other.url)
        same_driver = (other.dialect.name, other.dialect.driver) == (self.name, conn.dialect.driver)
        if not same_driver or here is None or there is None:
            yield None
            return
        if os.path.exists(there) and os.path.samefile(here, there):
            yield "main"
            return
        alias = f"{names.PREFIX}destination"
        conn.rollback()
        try:
            conn.exec_driver_sql(f"ATTACH DATABASE ? AS {self.quote(alias)}", (there,))
        except sa.exc.DBAPIError as error:  # e.g. the connection's limit of attached databases
            conn.rollback()
            log.info("could not attach the destination database %s (%s); applying changes row by row",
                     there, str(error.orig).strip())
            yield None
            return
        try:
            yield alias
        finally:
            if not conn.invalidated:  # an invalidated connection is closed, not pooled
                try:
                    conn.rollback()
                    conn.exec_driver_sql(f"DETACH DATABASE {self.quote(alias)}")
                except sa.exc.DBAPIError:
                    conn.invalidate()  # never back to the pool with the other file attached

    @contextlib.contextmanager
    def channel_lock(self, engine, schema, channel, timeout):
        path = engine.url.database
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            lock = _memory_locks.setdefault(f"{id(engine)}:{channel}", threading.Lock())
            if not lock.acquire(timeout=max(0.0, timeout)):
                raise self.busy(channel, timeout)
            try:
                yield
            finally:
                lock.release()
            return
        # The OS releases an fcntl lock when the process dies, like a database session lock.
        lock_path = f"{os.path.abspath(path)}.pdr-{names.short_hash(channel)}.lock"
        with open(lock_path, "a+") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self.busy(channel, timeout) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def io_type(self, type_):
        if isinstance(type_, sa.types.NullType):
            return Untyped()
        if isinstance(type_, ExactDecimal):
            return type_
        if isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float):
            return ExactDecimal(type_.precision, type_.scale)
        return type_

    def ddl_type(self, generic, where):
        if isinstance(generic, sa.Uuid):
            return sa.String(36)  # the canonical text form, as every driver writes a UUID to text
        if isinstance(generic, sa.Numeric) and not isinstance(generic, sa.Float):
            return ExactDecimal(generic.precision, generic.scale)
        return generic


__all__ = ["DecimalText", "ExactDecimal", "IsoDateTime", "SqliteEngine", "Untyped", "boolean_int", "database_file",
           "date_text", "datetime_text", "decimal_text", "iso_text"]
