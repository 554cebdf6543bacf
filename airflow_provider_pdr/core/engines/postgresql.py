"""PostgreSQL: statement-level triggers with transition tables, ON CONFLICT upsert,
advisory locks, and pg_notify so a waiting sensor wakes without polling."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import importlib
import io
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import (
    CaptureTarget, EngineModule, SourceTable, bind_processors, declared_alike, driver_cursor, driver_rows,
    on_conflict_upsert, release,
)

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
        if dialect.driver in ("psycopg", "psycopg2"):
            return self.copy_upserter(dialect, table, key_columns)
        return super().upserter(dialect, table, key_columns)

    def values_upserter(self, dialect, table, key_columns):
        """psycopg2: multi-row VALUES through execute_values, one statement per batch."""
        from psycopg2.extras import execute_values

        # Compiled once: the single-row VALUES tuple (with SQLAlchemy's casts) becomes the
        # template that execute_values repeats, and the statement keeps one %s in its place.
        plain = sa.insert(table).compile(dialect=dialect)
        template = plain.string[plain.string.rindex(" VALUES ") + len(" VALUES "):]
        full = self.upsert_statement(table, key_columns).compile(dialect=dialect).string
        sql = full.replace(f" VALUES {template}", " VALUES %s", 1)
        if sql == full:  # a form we do not recognise: stay on the general path
            return super().upserter(dialect, table, key_columns)
        names = [c.name for c in table.columns]
        for name in names:  # named binds, in column order, become positional: rows travel as lists
            template = template.replace(f"%({plain.escaped_bind_names.get(name, name)})s", "%s", 1)
        if "%(" in template:
            return super().upserter(dialect, table, key_columns)
        processors = bind_processors(dialect, table)
        order = range(len(names))

        def write(conn, rows):
            with driver_cursor(conn, sql) as cursor:
                execute_values(cursor, sql, driver_rows(rows, order, processors), template=template,
                               page_size=len(rows))

        return write

    def copy_upserter(self, dialect, table, key_columns, text: bool = False):
        """Each batch is COPYed into a temporary table with the destination columns' own types, then
        upserted from it in one INSERT ... SELECT: about three times faster than psycopg's executemany
        or psycopg2's execute_values, and values are checked by the columns' own input functions (a
        string too long for its varchar is refused, never cut). psycopg 3 writes the rows itself;
        for psycopg2 they are written as COPY text here (copy_text), and a batch with a value of
        another kind goes through execute_values. Where the role may not create temporary tables,
        rows go through execute_values or SQLAlchemy's multi-row insert instead.
        With `text`, each row is already a line of COPY text (TextCopy.line), written as it is;
        TextCopy exists only where temporary tables are allowed."""
        psycopg2 = dialect.driver == "psycopg2"
        sql = importlib.import_module(f"{dialect.driver}.sql")  # the same composables in both drivers

        names_ = [c.name for c in table.columns]
        shape = names.short_hash(table.schema or "", table.name, *[f"{c.name} {c.type!r}" for c in table.columns])
        staging = sa.Table(f"{names.PREFIX}in_{shape}", sa.MetaData(), *[sa.Column(n) for n in names_],
                           schema="pg_temp")
        # psycopg's own quoting here: COPY takes no parameters, so it would not read the dialect's %% as %.
        columns = sql.SQL(", ").join(map(sql.Identifier, names_))
        staged = sql.Identifier(staging.schema, staging.name)
        target = sql.Identifier(*[part for part in (table.schema, table.name) if part])
        # CREATE ... AS takes the column types only (no constraints, no defaults); once per session.
        create = sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
            sql.Identifier(staging.name), columns, target)
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(staged, columns)
        empty = sql.SQL("TRUNCATE {}").format(staged)  # a later write in the same transaction starts empty
        upsert = self.upsert_statement(table, key_columns, sa.select(staging)).compile(dialect=dialect).string
        processors = bind_processors(dialect, table)
        order = range(len(names_))
        # Made at the first batch that needs it: most drains never do, and it compiles statements.
        fallback = functools.cache(functools.partial(self.values_upserter if psycopg2 else super().upserter,
                                                     dialect, table, key_columns))
        if psycopg2:  # SQLAlchemy hands psycopg2 its bytes wrapped
            from psycopg2.extensions import Binary

            forms = {**COPY_TEXT, Binary: lambda value: _bytea(value.adapted)}
        # Learnt at the first write: a database may refuse TEMP (known already where rows come as text).
        temporary_allowed: list[bool] = [True] if text else []

        def write(conn, rows):
            if not temporary_allowed:
                temporary_allowed.append(may_create_temporary(conn))
            if not temporary_allowed[0]:
                return fallback()(conn, rows)
            lines = rows if text else None  # psycopg 3 writes value rows itself
            if psycopg2 and not text:
                lines = [copy_text(row, forms) for row in driver_rows(rows, order, processors)]
                if None in lines:  # a value of a kind copy_text does not write
                    return fallback()(conn, rows)
            data = None if lines is None else "".join(line + "\n" for line in lines)
            with driver_cursor(conn, upsert) as cursor:
                cursor.execute(create)
                try:
                    if psycopg2:
                        cursor.copy_expert(copy.as_string(cursor), io.StringIO(data))
                    else:
                        with cursor.copy(copy) as stream:
                            if data is not None:
                                stream.write(data)
                            else:
                                for row in driver_rows(rows, order, processors):
                                    stream.write_row(row)
                except dialect.loaded_dbapi.Error as error:
                    # The server's context line quotes the refused value: row values stay out of
                    # messages and logs, as they do for every other statement (hide_parameters).
                    if error.diag.context is None:
                        raise
                    raise type(error)(f"{error.diag.message_primary} (COPY into the staging table)") from None
                cursor.execute(upsert, ())  # given parameters, the driver reads the compiled %% as %
                cursor.execute(empty)

        return write

    def text_copy(self, destination, source, values, destinations):
        if destination.dialect.driver not in ("psycopg", "psycopg2"):
            return None
        line = copy_line(source, values, destinations)
        # The privilege is asked only where text could travel: one catalog query less for other sources.
        if line is None or not may_create_temporary(destination):
            return None
        return TextCopy(self, source, line)

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

    @contextlib.asynccontextmanager
    async def listener(self, engine, target):
        import psycopg  # async driver: LISTEN must not block an event loop
        from psycopg import sql

        _, params = engine.dialect.create_connect_args(engine.url)
        params.pop("context", None)  # the sync dialect's adapters
        async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.notify_name(target))))
            yield Notifications(conn)

    def ddl_type(self, generic, where):
        if isinstance(generic, sa.LargeBinary):
            return postgresql.BYTEA()
        if isinstance(generic, sa.DateTime):
            return postgresql.TIMESTAMP(timezone=bool(generic.timezone), precision=6)
        if isinstance(generic, sa.JSON):
            return postgresql.JSONB()
        return generic


# What COPY's text format escapes in a value, backslash first.
COPY_ESCAPES = [("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")]


def _escaped(text: str) -> str:
    for raw, escaped in COPY_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _bytea(value) -> str:
    return "\\\\x" + bytes(value).hex()  # \\x, escaped for COPY


def _interval(value: dt.timedelta) -> str:
    return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"  # as psycopg2 sends it


# COPY's text form of each kind of value a driver takes, by exact type (a subclass may print otherwise).
COPY_TEXT = {
    type(None): lambda value: "\\N", bool: lambda value: "t" if value else "f", int: str, float: repr,
    decimal.Decimal: str, str: _escaped, bytes: _bytea, bytearray: _bytea, memoryview: _bytea,
    dt.datetime: lambda value: value.isoformat(" "), dt.date: dt.date.isoformat, dt.time: dt.time.isoformat,
    dt.timedelta: _interval, uuid.UUID: str,
}


def copy_text(values: Sequence, forms: dict = COPY_TEXT) -> str | None:
    """A row as one line of COPY text; None if a value is of a kind without a form here."""
    fields = []
    for value in values:
        form = forms.get(type(value))
        if form is None:
            return None
        fields.append(form(value))
    return "\t".join(fields)


def may_create_temporary(conn) -> bool:
    return conn.scalar(sa.text("SELECT has_database_privilege(current_database(), 'TEMPORARY')"))


class TextCopy:
    """Rows into PostgreSQL (written by psycopg 3 or psycopg2) as lines of COPY text that the source
    database writes, each value as text the destination column reads back as the very value the
    row path would store (EngineModule.text_field): Python never parses a value."""

    def __init__(self, module: PostgresEngine, source: EngineModule, line: sa.ColumnElement):
        self.module, self.source = module, source
        self.line = line  # what the source selects for a row (copy_line)

    def prepare(self, conn: Connection) -> None:
        """Fix the text's settings for the rest of the read transaction."""
        self.source.prepare_text(conn)

    def upserter(self, dialect, table: sa.Table, key_columns):
        """write(conn, lines): upsert rows given as lines of COPY text, in the table's column order."""
        return self.module.copy_upserter(dialect, table, key_columns, text=True)


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


class Notifications:
    """Wakes on the channel's pg_notify; several notifications in a row count as one wake-up."""

    def __init__(self, conn):
        self.conn = conn

    async def wait(self, timeout: float) -> bool:
        woke = False
        async for _ in self.conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
            woke = True
        if woke:  # swallow the rest of a burst without waiting
            async for _ in self.conn.notifies(timeout=0.0):
                pass
        return woke
