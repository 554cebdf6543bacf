"""PostgreSQL: statement-level triggers with transition tables, ON CONFLICT upsert,
advisory locks, and pg_notify so a waiting sensor wakes without polling."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import (
    CaptureTarget, EngineModule, SourceTable, declared_alike, on_conflict_upsert, release,
)
from airflow_provider_pdr.core.engines.pgcopy import CopyUpserter, TextCopy, copy_line, may_create_temporary

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock wait that ran past lock_timeout


PG_CLASS = sa.table("pg_class", sa.column("oid"), sa.column("reltuples"), schema="pg_catalog")


def bytewise(value: sa.ColumnElement) -> sa.ColumnElement:
    """A value as its text, compared byte by byte: equal only when the values' text is the same."""
    return sa.collate(sa.cast(value, sa.Text), "C")


def sqlstate(error) -> str | None:
    """The SQLSTATE of a driver error: psycopg2 names it pgcode, psycopg 3 sqlstate."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


# One trigger per event: transition tables may not be shared by multi-event triggers.
EVENTS = {
    "i": ("INSERT", "NEW TABLE AS pdr_new"),
    "u": ("UPDATE", "OLD TABLE AS pdr_old NEW TABLE AS pdr_new"),
    "d": ("DELETE", "OLD TABLE AS pdr_old"),
}


class PostgresEngine(EngineModule):
    name = "postgresql"
    max_identifier_length = 63
    row_values = True
    upsert_page_rows = 5000  # rows per INSERT statement (the parameter count limit still applies)
    max_parameters = 30000

    def changed_at_column(self) -> sa.Column:
        return sa.Column("changed_at", postgresql.TIMESTAMP(timezone=True), nullable=False,
                         server_default=sa.text("now()"))

    def age_seconds(self, oldest):
        return sa.extract("epoch", sa.func.now() - oldest)

    @staticmethod
    def notify_name(target: CaptureTarget) -> str:
        return target.change_table

    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        keys = ", ".join(self.quote(c) for c in table.key_columns)
        function = self.qualified(base, table.schema)
        on_row_change, on_truncate = [], []
        key_list = self.key_list(table)
        # UNION: one row per affected key, old and new, so a key update leaves no ghost. Keys
        # count as one only when their text is the same too: under a nondeterministic collation
        # 'a' = 'A', and a case-only key change must record both.
        both = (f"SELECT {key_list} FROM (SELECT {keys}, ROW({keys})::text FROM pdr_new UNION "
                f"SELECT {keys}, ROW({keys})::text FROM pdr_old) AS pdr_both({key_list}, pdr_exact)")
        for target in targets:
            insert = f"INSERT INTO {self.qualified(target.change_table, target.schema)} ({key_list})"
            notify = f"PERFORM pg_notify({self.literal(self.notify_name(target))}, '');"
            on_row_change.append(
                f"IF TG_OP = 'INSERT' THEN {insert} SELECT {keys} FROM pdr_new;\n"
                f"  ELSIF TG_OP = 'DELETE' THEN {insert} SELECT {keys} FROM pdr_old;\n"
                f"  ELSE {insert} {both};\n"
                f"  END IF;\n  IF FOUND THEN {notify} END IF;"
            )
            # TRUNCATE fires no row trigger: record every key while the rows still exist.
            on_truncate.append(f"{insert} SELECT {keys} FROM {self.qualified(table.name, table.schema)}; {notify}")
        body = "\n  ".join(on_row_change)
        truncate_body = "\n  ".join(on_truncate)
        statements = [
            # A key column named like a PL/pgSQL variable ("new", "found") must read as the column.
            # OR REPLACE: dropping the table leaves this function behind (same name, same body).
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $pdr$\n"
            f"#variable_conflict use_column\nBEGIN\n"
            f"  IF TG_OP = 'TRUNCATE' THEN\n  {truncate_body}\n  RETURN NULL;\n  END IF;\n"
            f"  {body}\n  RETURN NULL;\nEND\n$pdr$"
        ]
        source = self.qualified(table.name, table.schema)
        for suffix, (event, transition) in EVENTS.items():
            statements.append(
                f"CREATE TRIGGER {self.quote(base + '_' + suffix)} AFTER {event} ON {source} "
                f"REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        statements.append(
            f"CREATE TRIGGER {self.quote(base + '_t')} BEFORE TRUNCATE ON {source} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
        return statements

    def key_list(self, table: SourceTable) -> str:
        return ", ".join(self.quote(f"key_{i}") for i in range(1, len(table.key_columns) + 1))

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        # Dropping the function with CASCADE drops its four triggers in the same transaction.
        return [f"DROP FUNCTION IF EXISTS {self.qualified(base, table.schema)}() CASCADE"]

    def capture_objects(self, conn, table: SourceTable) -> set[str]:
        rows = conn.execute(
            sa.text(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname = :table AND n.nspname = coalesce(:schema, current_schema()) "
                "AND NOT t.tgisinternal AND t.tgname LIKE :prefix"
            ),
            {"table": table.name, "schema": table.schema,
             "prefix": names.PREFIX.replace("_", r"\_") + names.table_tag(table.schema, table.name) + "%"},
        )
        return {name.rsplit("_", 1)[0] for (name,) in rows}

    @staticmethod
    def upsert_statement(table: sa.Table, key_columns, rows_from: sa.Select | None = None):
        # A row already the same, value for value as bytes, is not written again: a resync over an
        # unchanged mirror only reads it (100,000 narrow rows: 0.43-0.58 s instead of 0.76-0.83 s),
        # and the table does not gain a dead version of each row. Where rows differ, the
        # comparison costs nothing measurable. Bytes, so that 'a' and 'A' differ even in citext.
        return on_conflict_upsert(postgresql.insert(table), table, key_columns, rows_from, exact=bytewise)

    def upserter(self, dialect, table, key_columns):
        if self.driver.copies:
            return self.copy_upserter(dialect, table, key_columns)
        return self.statement_upserter(dialect, table, key_columns)

    def statement_upserter(self, dialect, table, key_columns):
        """Rows upserted by statements: the driver's bulk path (psycopg2's execute_values), else
        SQLAlchemy's multi-row insert."""
        write = self.driver.upserter(self.upsert_statement(table, key_columns), dialect, table)
        return write or super().upserter(dialect, table, key_columns)

    def copy_upserter(self, dialect, table, key_columns, text: bool = False):
        """Batches COPYed by the driver into a staging table and upserted from it (CopyUpserter);
        with `text`, rows given as lines of COPY text (TextCopy)."""
        return CopyUpserter(self.driver, dialect, table, text=text,
                            upsert_from=functools.partial(self.upsert_statement, table, key_columns),
                            fallback=functools.partial(self.statement_upserter, dialect, table, key_columns))

    def text_copy(self, destination, source, values, destinations):
        if not self.driver.copies:
            return None
        line = copy_line(source, values, destinations)
        # The privilege is asked only where text could travel: one catalog query less for other sources.
        if line is None or not may_create_temporary(destination):
            return None
        return TextCopy(source, line, functools.partial(self.copy_upserter, text=True))

    # The settings that shape a value's text, fixed so that any PostgreSQL reads the same values
    # back: floats in full, dates and intervals in forms every DateStyle reads.
    TEXT_SETTINGS = {"DateStyle": "ISO", "IntervalStyle": "postgres", "extra_float_digits": "3", "bytea_output": "hex"}

    def text_field(self, value, destination):
        # Columns declared alike (a time's precision 6 is its default) read their own text back
        # as the same value; never money, whose text follows lc_monetary.
        if isinstance(value.type, postgresql.MONEY) or isinstance(destination, postgresql.MONEY):
            return None
        if not declared_alike([default_precision(value.type), default_precision(destination)], self.dialect):
            return None
        return sa.cast(value, sa.Text)

    def prepare_text(self, conn):
        conn.execute(sa.select(*[sa.func.set_config(name, value, True) for name, value in self.TEXT_SETTINGS.items()]))

    def upsert(self, conn, table: sa.Table, key_columns, rows) -> None:
        statement = self.upsert_statement(table, key_columns)
        # SQLAlchemy sends an ON CONFLICT insert without RETURNING through the driver's
        # executemany, one round trip per row; with RETURNING it batches the rows into
        # multi-row VALUES statements ("insertmanyvalues"), a whole batch per statement.
        statement = statement.returning(*[table.c[k] for k in key_columns])
        conn.execute(statement.execution_options(insertmanyvalues_page_size=self.upsert_page_rows), rows).close()

    def in_list(self, columns, name):
        # `column = ANY(array)`: PostgreSQL parses and plans a long IN list value by value, an array
        # at once (five times faster at 500 keys). The array goes into the statement as a literal,
        # as psycopg2 sends every value: bound as a parameter (psycopg 3), a delete from a table
        # without statistics yet compares each row with each key (a second per batch at 3,000).
        element = array_element(columns[0].type) if len(columns) == 1 else None
        if element is None:
            return super().in_list(columns, name)
        values = sa.bindparam(name, type_=ArrayLiteral(), literal_execute=True)
        return columns[0] == sa.any_(sa.cast(values, postgresql.ARRAY(element)))

    def exact_lookup(self, type_):
        return array_element(type_) is not None

    # A table with more rows than this many per key asked for: its keys are looked up by index.
    ROWS_PER_KEY_LOOKUP = 10

    def prepare_join(self, conn, table, keys):
        # The planner costs an index lookup as a read from disk, and so joins a span's keys to a
        # table of a few hundred thousand rows or more by hashing the whole table. Measured on a
        # span of 20,000 changes: 65 ms from 400,000 rows and 200 ms from 2,000,000, against 40 ms
        # by index whatever the size; a table of 100,000 rows hashes in 33 ms. Past ten rows per
        # key (or with no statistics yet), nested loops through the key index it is.
        large = sa.or_(PG_CLASS.c.reltuples < 0, PG_CLASS.c.reltuples > self.ROWS_PER_KEY_LOOKUP * keys)
        conn.execute(
            sa.select(*[sa.func.set_config(name, sa.case((large, "off"), else_=sa.func.current_setting(name)), True)
                        for name in ("enable_hashjoin", "enable_mergejoin")])
            .where(PG_CLASS.c.oid == sa.func.to_regclass(self.qualified(table.name, table.schema)))
        )

    def key_bytes(self, value):
        # Under a nondeterministic collation (or in citext) 'a' = 'A'; the trigger tells them apart
        # by their text. Keys that compare exactly (exact_lookup) never come here.
        return bytewise(value)

    @contextlib.contextmanager
    def channel_lock(self, engine, schema, channel, timeout):
        key = names.lock_key("pdr", schema or "", channel)
        with engine.connect() as conn:
            # Waiting in the server's queue, not polling: when the holder lets go, the lock goes
            # to this run before the holder can take it again (a copy takes it again at once).
            conn.execute(sa.select(sa.func.set_config("lock_timeout", f"{max(1, round(timeout * 1000))}ms", True)))
            try:
                conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            except sa.exc.OperationalError as error:
                conn.rollback()
                if sqlstate(error.orig) != LOCK_NOT_AVAILABLE:
                    raise
                raise self.busy(channel, timeout) from None
            conn.commit()  # the advisory lock stays with the session, lock_timeout goes back
            try:
                yield
            finally:
                release(conn, sa.select(sa.func.pg_advisory_unlock(key)))

    def listener(self, engine, target):
        # LISTEN on psycopg 3's async connection, whatever the synchronous driver: it must not
        # block an event loop.
        from airflow_provider_pdr.core.engines.drivers import psycopg

        return psycopg.listening(engine, self.notify_name(target))

    def ddl_type(self, generic, where):
        if isinstance(generic, sa.LargeBinary):
            return postgresql.BYTEA()
        if isinstance(generic, sa.DateTime):
            return postgresql.TIMESTAMP(timezone=bool(generic.timezone), precision=6)
        if isinstance(generic, sa.JSON):
            return postgresql.JSONB()
        return generic


def default_precision(type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
    """A timestamp or time of precision 6 as declared without one: PostgreSQL stores both alike."""
    if isinstance(type_, (sa.DateTime, sa.Time)) and getattr(type_, "precision", None) == 6:
        return type(type_)(timezone=type_.timezone)
    return type_


# Collations whose equality is byte equality: the database's own (None; PostgreSQL allows no
# nondeterministic one there) and the built-in ones. Another may be nondeterministic: 'a' = 'A'.
BYTEWISE = {None, "C", "POSIX", "default", "ucs_basic", "pg_c_utf8"}


def array_element(type_: sa.types.TypeEngine) -> sa.types.TypeEngine | None:
    """The element type of an array whose `= ANY` compares exactly as the column's own equality,
    and exactly: bigint for integers, text for varchar and text in a bytewise collation (not
    char, whose trailing spaces text would count, nor citext), uuid; None for other types. Never
    with a length or a precision: a cast to varchar(n)[] would cut longer values short, and match
    other keys."""
    if isinstance(type_, sa.Integer):
        return sa.BigInteger()
    if type(type_) in (sa.String, sa.Text, sa.VARCHAR, sa.TEXT) and type_.collation in BYTEWISE:
        return sa.Text()
    if isinstance(type_, sa.Uuid):
        return sa.Uuid()
    return None


class ArrayLiteral(sa.types.TypeDecorator):
    """A list bound as one array literal, '{1,2}' or '{"a","b"}', to be cast to its array type.
    psycopg2 would send a list as ARRAY[1, 2, ...], adapting element by element, and the server
    would then parse and plan each element as a constant: three times slower at 3,000 keys."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, values, dialect):
        if all(type(value) is int for value in values):  # nothing in an integer to quote
            return "{" + ",".join(map(str, values)) + "}"
        return "{" + ",".join('"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for value in values) + "}"


__all__ = ["ArrayLiteral", "PostgresEngine", "array_element", "bytewise", "default_precision", "sqlstate"]
