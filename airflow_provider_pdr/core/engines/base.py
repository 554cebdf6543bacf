"""What every engine module provides. Callers use this interface and never test engine names.

An engine module knows its SQL: trigger DDL, native bulk upsert, locks, identifier limits
and the column types that carry values exactly. Everything else lives in the core; how rows
travel through a particular DBAPI driver lives in drivers/.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.engines.drivers import Write, driver_for
from airflow_provider_pdr.core.errors import ChannelBusyError
from airflow_provider_pdr.core.keys import MAX_PARAMETERS, keys_among


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


class EngineModule(abc.ABC):
    """One database engine, as the core uses it. Three parts, in this order below:

    - facts (class attributes) and the REQUIRED methods, abstract: every engine gives them;
    - shared behaviour that an engine refines where it differs (quoting, key lookups, types);
    - OPTIONAL fast paths, in one section at the end. Each declines by returning None (`sharing`
      yields None), by giving back what it was given (`grouping`) or by doing nothing (the
      `prepare_` and `decode_` hooks), and the caller then takes the general path, which writes
      the same rows. An engine offers one only where it gives exactly what the general path gives.

    How rows travel through a DBAPI driver (executemany, COPY, decoders) is the driver's part
    (drivers/), chosen once from the dialect's driver name: `self.driver`.
    """

    # -- facts ----------------------------------------------------------------------------
    name: str  # the engine's name: for messages, and for the choice of its driver (drivers.DRIVERS)
    max_identifier_length: int = 63
    # Values one statement may bind in an IN list: the portable limit of core/keys.py unless the
    # engine takes more.
    max_parameters: int = MAX_PARAMETERS
    # Whether a drain may read from it in one thread while writing into the other in another.
    overlaps: bool = True
    # Row values, (a, b) IN ((1, 2), ...), for looking up composite keys (not in Firebird or SQL Server).
    row_values: bool = False
    # The type of a change table's increasing sequence number.
    sequence_type: sa.types.TypeEngine = sa.BigInteger()

    def __init__(self, dialect: sa.engine.Dialect):
        self.dialect = dialect
        self.preparer = dialect.identifier_preparer
        self.driver = driver_for(self.name, dialect)

    # -- required -------------------------------------------------------------------------
    @abc.abstractmethod
    def changed_at_column(self) -> sa.Column:
        """The change table's column of when a change was captured, set by the database."""

    @abc.abstractmethod
    def age_seconds(self, oldest: sa.ColumnElement) -> sa.ColumnElement:
        """Seconds between `oldest` (a changed_at value) and now, computed by the database."""

    @abc.abstractmethod
    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        """Statements creating the triggers (and functions) named from `base`."""

    @abc.abstractmethod
    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        """Statements dropping what capture_ddl created under `base`."""

    @abc.abstractmethod
    def capture_objects(self, conn: Connection, table: SourceTable) -> set[str]:
        """Base names of our capture objects currently installed on `table`."""

    @abc.abstractmethod
    def upsert(self, conn: Connection, table: sa.Table, key_columns: Sequence[str], rows: list[dict]) -> None:
        """Insert the rows (dicts by column name), or update those whose key is there already."""

    @abc.abstractmethod
    def channel_lock(self, engine: Engine, schema: str | None, channel: str,
                     timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold the channel's lock for the whole block; the database frees it if we die. Raises
        `busy` when the lock is not free within `timeout` seconds."""

    @abc.abstractmethod
    def ddl_type(self, generic: sa.types.TypeEngine, where: str) -> sa.types.TypeEngine:
        """The column type to create for a generic type; `where` names the column for errors."""

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
        """The schema of a table named without one; None where tables have no schema."""
        return conn.dialect.default_schema_name

    def execute_ddl(self, conn: Connection, statements: Sequence[str]) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    # -- keys -----------------------------------------------------------------------------
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

    def in_list(self, columns: Sequence[sa.ColumnElement], name: str) -> sa.ColumnElement:
        """`columns` IN the list bound as `name` (values for one column, tuples for several: row
        values, where `row_values`), in the form this engine reads fastest."""
        target = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
        return target.in_(sa.bindparam(name, expanding=True))

    def exact_lookup(self, type_: sa.types.TypeEngine) -> bool:
        """Whether keys of this type, read back from the change table and looked up by `in_list`,
        find exactly the rows `same_key` joins to: then a key the lookup does not find is gone.
        Integers travel and compare exactly everywhere."""
        return isinstance(type_, sa.Integer)

    # -- apply ----------------------------------------------------------------------------
    def upserter(self, dialect: sa.engine.Dialect, table: sa.Table, key_columns: Sequence[str]) -> Write:
        """A function ``write(conn, rows)`` upserting rows (values in the order of the table's
        columns) into `table`, prepared once for many batches. Engines whose driver has a native
        bulk path (drivers/) compile the statement once here."""
        names = [c.name for c in table.columns]
        return lambda conn, rows: self.upsert(conn, table, key_columns, [dict(zip(names, row)) for row in rows])

    def delete_keys(self, conn: Connection, table: sa.Table, key_columns: Sequence[str], keys: list[tuple]) -> int:
        """Delete rows by key; returns how many rows were removed."""
        columns = [table.c[name] for name in key_columns]
        return sum(conn.execute(sa.delete(table).where(condition)).rowcount
                   for condition in keys_among(self, columns, keys))

    def read_forms(self, values: Sequence[sa.ColumnElement]) -> tuple[list, list[tuple[int, sa.ColumnElement]]]:
        """What a query selects to read `values`: an expression for each, and extra expressions
        to select after them, each with the position of the value its non-NULL result replaces
        (DrainPlan.merged). Here the values themselves and no extras."""
        return list(values), []

    def busy(self, channel: str, timeout: float) -> ChannelBusyError:
        return ChannelBusyError(
            f"channel {channel!r} is being drained by another run (lock not free after {timeout:g}s); "
            "this run applied nothing and can simply be retried"
        )

    # -- types ----------------------------------------------------------------------------
    def table_info(self, inspector: sa.Inspector, name: str, schema: str | None) -> dict:
        """Facts of a reflected table this engine needs later, kept in its Table's `info`."""
        return {}

    def io_type(self, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        """The type to read and write a column with, so values travel exactly."""
        return type_

    # == OPTIONAL fast paths: declined here (see the class docstring); the general path runs ==
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

    def shortcut(self, source: sa.types.TypeEngine, destination: sa.types.TypeEngine,
                 destination_dialect: sa.engine.Dialect) -> Callable[[Callable], Callable] | None:
        """Where this engine knows a cheaper way from its driver's value of a `source` field to the
        value the driver of a `destination` column takes, skipping the Python value between: a
        function that, given the exact way (values.exact_path), returns one giving the same at
        less cost, falling back on the exact way for values it does not know. None otherwise."""
        return None

    @contextlib.contextmanager
    def sharing(self, conn: Connection, other: Engine) -> Iterator[str | None]:
        """The schema under which `conn` reaches the tables of `other`'s database while the block
        runs, so that a drain can apply changes inside the source database; None where it cannot.
        An engine that can also gives `upsert_statement` and `define_functions`."""
        yield None

    def upsert_statement(self, table: sa.Table, key_columns: Sequence[str],
                         rows_from: sa.Select | None = None) -> sa.Insert | None:
        """The upsert as one INSERT (of the rows `rows_from` selects, if given), for statements the
        database runs itself; None where this engine has no such form."""
        return None

    def define_functions(self, conn: Connection, functions: dict[str, Callable]) -> None:
        """Let the statements run on `conn` call each Python function of one value by its name (a drain
        inside the source database calls them, where `sharing` reaches the destination)."""
        if functions:
            raise NotImplementedError(f"{self.name}: statements cannot call Python functions")

    def listener(self, engine: Engine, target: CaptureTarget):
        """An async context manager yielding an object whose ``await wait(timeout)`` returns True
        when a change was captured for `target`, waking a waiting sensor; None where the engine can
        only be polled."""
        return None

    def grouping(self, query: sa.Select) -> sa.Select:
        """`query` (a GROUP BY of a span's change rows) as this engine groups it fastest."""
        return query

    def prepare_join(self, conn: Connection, table: sa.Table, keys: int) -> None:
        """Before a statement of the read transaction joins up to `keys` keys to their rows in
        `table`: steer it to each key's row by the table's key index, where this engine's planner
        might read the whole table instead."""

    def decode_faster(self, conn: Connection) -> None:
        """Let the driver decode the rows `conn` reads to the same values at less cost, where it can."""
        self.driver.decode_faster(conn)


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


def declared_alike(types: Sequence[sa.types.TypeEngine], dialect: sa.engine.Dialect) -> bool:
    """Whether the types compile to one declaration; False for a type of no known declaration."""
    try:
        return len({type_.compile(dialect=dialect) for type_ in types}) == 1
    except sa.exc.CompileError:  # a computed field of no known type
        return False


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


__all__ = ["CaptureTarget", "EngineModule", "SourceTable", "declared_alike", "key_mismatch", "on_conflict_upsert",
           "release"]
