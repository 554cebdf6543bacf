"""What every engine module provides. Callers use this interface and never test engine names.

An engine module knows its SQL: trigger DDL, native bulk upsert, locks, identifier limits
and the column types that carry values exactly. Everything else lives in the core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.keys import MAX_PARAMETERS, keys_among
from airflow_provider_pdr.core.errors import ChannelBusyError


@dataclass(frozen=True)
class SourceTable:
    """A table whose changes are captured, with its primary key columns in order."""

    name: str
    schema: str | None
    key_columns: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class CaptureTarget:
    """One channel's change table, as the capture trigger writes to it."""

    change_table: str
    schema: str | None
    channel: str


class EngineModule:
    name: str = "generic"
    max_identifier_length: int = 63
    # Values one statement may bind in an IN list: the portable limit of core/keys.py unless the
    # engine takes more.
    max_parameters: int = MAX_PARAMETERS
    # Whether a drain may read from it in one thread while writing into the other in another.
    overlaps: bool = True
    # Row values, (a, b) IN ((1, 2), ...), for looking up composite keys (not in Firebird or SQL Server).
    row_values: bool = False

    def __init__(self, dialect: sa.engine.Dialect):
        self.dialect = dialect
        self.preparer = dialect.identifier_preparer

    # -- names ----------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        return self.preparer.quote_identifier(name)

    def check_name(self, name: str, what: str) -> None:
        """Refuse (ConfigurationError) a name this engine cannot read back reliably."""

    def qualified(self, name: str, schema: str | None) -> str:
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    def literal(self, value: str) -> str:
        """A SQL string literal, for the few places (trigger bodies) where binds cannot go."""
        return sa.literal(value, sa.String()).compile(
            dialect=self.dialect, compile_kwargs={"literal_binds": True}
        ).string

    def default_schema(self, conn: Connection) -> str | None:
        return conn.dialect.default_schema_name

    # -- the change table -----------------------------------------------------------------
    def changed_at_column(self) -> sa.Column:
        raise NotImplementedError

    def age_seconds(self, oldest: sa.ColumnElement) -> sa.ColumnElement:
        """Seconds between `oldest` (a changed_at value) and now, computed by the database."""
        raise NotImplementedError

    # -- capture triggers -----------------------------------------------------------------
    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        """Statements creating the triggers (and functions) named from `base`."""
        raise NotImplementedError

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        raise NotImplementedError

    def capture_objects(self, conn: Connection, table: SourceTable) -> set[str]:
        """Base names of our capture objects currently installed on `table`."""
        raise NotImplementedError

    def execute_ddl(self, conn: Connection, statements: Sequence[str]) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    def same_key(self, column: sa.ColumnElement, value: sa.ColumnElement) -> sa.ColumnElement:
        """Joins a change row's key to its source row: as exact as the trigger's "key changed" test.
        Where this engine's equality may call two different strings equal ('a' = 'A', 'a' = 'a '),
        their bytes are compared too (`key_bytes`), so an old key does not find the row its new
        key names and stay in a case-sensitive mirror as a ghost."""
        if not isinstance(column.type, sa.String) or self.exact_lookup(column.type):
            return column == value
        exact = self.key_bytes(column), self.key_bytes(value)
        return column == value if exact[0] is None else sa.and_(column == value, exact[0] == exact[1])

    def key_bytes(self, value: sa.ColumnElement) -> sa.ColumnElement | None:
        """A string key as a form compared bytewise, where this engine's equality of strings
        may call different keys equal; None where it never does."""
        return None

    # -- apply ----------------------------------------------------------------------------
    def upsert(self, conn: Connection, table: sa.Table, key_columns: Sequence[str], rows: list[dict]) -> None:
        raise NotImplementedError

    def upserter(self, dialect: sa.engine.Dialect, table: sa.Table, key_columns: Sequence[str]):
        """A function ``write(conn, rows)`` upserting rows (values in the order of the table's
        columns) into `table`, prepared once for many batches. Engines whose driver has a native
        bulk path compile the statement once here."""
        names = [c.name for c in table.columns]
        return lambda conn, rows: self.upsert(conn, table, key_columns, [dict(zip(names, row)) for row in rows])

    def in_list(self, columns: Sequence[sa.ColumnElement], name: str) -> sa.ColumnElement:
        """`columns` IN the list bound as `name` (values for one column, tuples for several: row
        values, where `row_values`), in the form this engine reads fastest."""
        target = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
        return target.in_(sa.bindparam(name, expanding=True))

    def read_forms(self, values: Sequence[sa.ColumnElement]) -> tuple[list, list[tuple[int, sa.ColumnElement]]]:
        """What a query selects to read `values`: an expression for each, and extra expressions
        to select after them, each with the position of the value its non-NULL result replaces
        (Drain.merged). Here the values themselves and no extras."""
        return list(values), []

    def exact_lookup(self, type_: sa.types.TypeEngine) -> bool:
        """Whether keys of this type, read back from the change table and looked up by `in_list`,
        find exactly the rows `same_key` joins to: then a key the lookup does not find is gone.
        Integers travel and compare exactly everywhere."""
        return isinstance(type_, sa.Integer)

    def delete_keys(self, conn: Connection, table: sa.Table, key_columns: Sequence[str], keys: list[tuple]) -> int:
        """Delete rows by key; returns how many rows were removed."""
        columns = [table.c[name] for name in key_columns]
        return sum(conn.execute(sa.delete(table).where(condition)).rowcount
                   for condition in keys_among(self, columns, keys))

    def text_copy(self, destination: Connection, source: EngineModule, values: Sequence[sa.ColumnElement],
                  destinations: Sequence[sa.types.TypeEngine]):
        """Where this engine, as the destination on `destination`, can take rows as lines of text
        that the `source` engine writes for every one of `values` into columns of the types
        `destinations` (EngineModule.text_field), never parsed in Python: the means to (see
        PostgreSQL's TextCopy); None where it cannot."""
        return None

    def text_field(self, value: sa.ColumnElement, destination: sa.types.TypeEngine) -> sa.ColumnElement | None:
        """The field `value` as SQL text that a PostgreSQL column of type `destination` reads as the
        very value the row path would store (PostgreSQL's COPY, the only destination taking text);
        None where this engine cannot promise that."""
        return None

    def prepare_text(self, conn: Connection) -> None:
        """Fix, for the rest of the read transaction, the settings that shape text_field's text."""

    def prepare_join(self, conn: Connection, table: sa.Table, keys: int) -> None:
        """Before a statement of the read transaction joins up to `keys` keys to their rows in
        `table`: steer it to each key's row by the table's key index, where this engine's planner
        might read the whole table instead."""

    def decode_faster(self, conn: Connection) -> None:
        """Let the driver decode the rows `conn` reads to the same values at less cost, where it can."""

    def shortcut(self, source: sa.types.TypeEngine, destination: sa.types.TypeEngine,
                 destination_dialect: sa.engine.Dialect) -> Callable[[Callable], Callable] | None:
        """Where this engine knows a cheaper way from its driver's value of a `source` field to the
        value the driver of a `destination` column takes, skipping the Python value between: a
        function that, given the exact way (reflect.exact_path), returns one giving the same at
        less cost, falling back on the exact way for values it does not know. None otherwise."""
        return None

    @contextlib.contextmanager
    def sharing(self, conn: Connection, other: Engine) -> Iterator[str | None]:
        """The schema under which `conn` reaches the tables of `other`'s database while the block
        runs, so that a drain can apply changes inside the source database; None where it cannot."""
        yield None

    def define_functions(self, conn: Connection, functions: dict[str, Callable]) -> None:
        """Let the statements run on `conn` call each Python function of one value by its name (a drain
        inside the source database calls them, where `sharing` reaches the destination)."""
        if functions:
            raise NotImplementedError(f"{self.name}: statements cannot call Python functions")

    # -- locking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def channel_lock(self, engine: Engine, schema: str | None, channel: str, timeout: float) -> Iterator[None]:
        """Hold the channel's lock for the whole block; the database frees it if we die."""
        raise NotImplementedError
        yield

    def busy(self, channel: str, timeout: float) -> ChannelBusyError:
        return ChannelBusyError(
            f"channel {channel!r} is being drained by another run (lock not free after {timeout:g}s); "
            "this run applied nothing and can simply be retried"
        )

    # -- waking a waiting sensor -----------------------------------------------------------
    def listener(self, engine: Engine, target: CaptureTarget):
        """An async context manager yielding an object whose ``await wait(timeout)`` returns True
        when a change was captured for `target`; None where the engine can only be polled."""
        return None

    # -- types ----------------------------------------------------------------------------
    def table_info(self, inspector: sa.Inspector, name: str, schema: str | None) -> dict:
        """Facts of a reflected table this engine needs later, kept in its Table's `info`."""
        return {}

    def io_type(self, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        """The type to read and write a column with, so values travel exactly."""
        return type_

    def ddl_type(self, generic: sa.types.TypeEngine, where: str) -> sa.types.TypeEngine:
        """The column type to create for a generic type; `where` names the column for errors."""
        return generic


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


def on_conflict_upsert(statement, table: sa.Table, key_columns: Sequence[str], rows_from: sa.Select | None = None,
                       exact: Callable[[sa.ColumnElement], sa.ColumnElement] | None = None):
    """A PostgreSQL or SQLite INSERT (of the rows `rows_from` selects, if given) that, for a key
    already there, updates the other columns; with `exact` (a value's exact form), only where
    one of them differs from the value there."""
    if rows_from is not None:
        statement = statement.from_select([c.name for c in table.columns], rows_from)
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in key_columns}
    if not updates:
        return statement.on_conflict_do_nothing(index_elements=list(key_columns))
    differs = None
    if exact is not None:
        differs = sa.tuple_(*[exact(table.c[name]) for name in updates]).is_distinct_from(
            sa.tuple_(*[exact(value) for value in updates.values()]))
    return statement.on_conflict_do_update(index_elements=list(key_columns), set_=updates, where=differs)


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


def declared_alike(types: Sequence[sa.types.TypeEngine], dialect: sa.engine.Dialect) -> bool:
    """Whether the types compile to one declaration; False for a type of no known declaration."""
    try:
        return len({type_.compile(dialect=dialect) for type_ in types}) == 1
    except sa.exc.CompileError:  # a computed field of no known type
        return False


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


def release(conn: Connection, unlock: sa.Executable) -> None:
    """Release a session lock; if the session is gone or broken, close it: that releases it too
    (and a failed release never hides the error that ended the drain)."""
    try:
        conn.execute(unlock)
        conn.commit()
    except sa.exc.DBAPIError:
        conn.invalidate()


def key_mismatch(old: str, new: str, columns: Sequence[str], quote, cast) -> str:
    """SQL condition true when any key column differs byte for byte (key columns are never NULL)."""
    return " OR ".join(
        f"{cast(f'{old}.{quote(c)}')} <> {cast(f'{new}.{quote(c)}')}" for c in columns
    )


__all__ = ["CaptureTarget", "EngineModule", "SourceTable", "bind_processors", "chunks", "driver_cursor", "driver_rows",
           "executemany_upserter", "names", "on_conflict_upsert"]
