"""How each DBAPI driver carries what an engine module asks, where it does better than SQLAlchemy's
general path: SQLAlchemy keeps a dialect's SQL apart from its drivers, and so do we. An engine
module holds the SQL; its driver only says how rows travel (executemany, COPY, decoders). One is
chosen per engine module from the dialect's driver name, here and nowhere else (driver_for)."""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Write = Callable[[Connection, list[Sequence]], None]


class Driver:
    """A driver taking SQLAlchemy's general paths. A driver that does better overrides the methods
    below; each returns None (or does nothing) to decline, and the engine then takes that path."""

    copies = False  # whether it streams PostgreSQL's COPY (CopyDriver)

    def upserter(self, statement: sa.Insert, dialect: sa.engine.Dialect, table: sa.Table) -> Write | None:
        """``write(conn, rows)`` running the one-row upsert `statement` for many rows (values in the
        order of `table`'s columns), compiled once, at less cost than SQLAlchemy would; None to decline."""
        return None

    def decode_faster(self, conn: Connection) -> None:
        """Let the driver decode the rows `conn` reads to the same values at less cost, where it can."""


class CopyDriver(Driver, abc.ABC):
    """A PostgreSQL driver streaming COPY ... FROM STDIN (engines/pgcopy.py)."""

    copies = True
    sql: ModuleType  # its composables: COPY takes no parameters, so the driver quotes the names itself

    @abc.abstractmethod
    def copy_data(self, rows: list[Sequence]) -> str | list[Sequence] | None:
        """What `copy` sends for rows of driver values; None where a value has no form it can send."""

    @abc.abstractmethod
    def copy(self, cursor, statement, data: str | list[Sequence]) -> None:
        """Run the COPY `statement` on `cursor` with `data`: lines of COPY text, or what copy_data gave."""


# (engine module name, DBAPI driver name) -> "module:class" of this package; new drivers are added
# here and nowhere else. A driver not listed takes SQLAlchemy's general paths.
DRIVERS = {
    ("postgresql", "psycopg"): "psycopg:Psycopg",
    ("postgresql", "psycopg2"): "psycopg2:Psycopg2",
    ("mysql", "mysqldb"): "mysqldb:Mysqldb",
    ("sqlite", "pysqlite"): "pysqlite:Pysqlite",
}


def driver_for(engine: str, dialect: sa.engine.Dialect) -> Driver:
    """The driver of `dialect`, as the engine module named `engine` uses it."""
    try:
        module_name, class_name = DRIVERS[engine, getattr(dialect, "driver", None)].split(":")
    except KeyError:
        return Driver()
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)()


__all__ = ["DRIVERS", "CopyDriver", "Driver", "Write", "driver_for"]
