"""Real databases for the tests: each test gets its own freshly created database, dropped after.

PostgreSQL and MariaDB are the servers `make test` starts on 127.0.0.1; override with
PDR_TEST_POSTGRES_URL / PDR_TEST_MYSQL_URL (a server URL; the tests create databases in it).
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

from bench.databases import new_firebird_database

POSTGRES_URL = os.environ.get("PDR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_URL = os.environ.get("PDR_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/?charset=utf8mb4")

LIVE_ENGINES = ["sqlite", "postgresql", "mysql"]
# Destinations also include PostgreSQL through psycopg 3, the driver Airflow's postgres hook gives.
DESTINATIONS = LIVE_ENGINES + ["psycopg"]


def unique_name(prefix: str = "pdr_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Databases:
    """Creates databases on demand and drops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.cleanup = []

    def new(self, kind: str) -> sa.Engine:
        name = unique_name()
        if kind == "sqlite":
            engine = sa.create_engine(f"sqlite:///{self.tmp_path / name}.db")
            self.cleanup.append(engine.dispose)
            return engine
        if kind in ("postgresql", "psycopg"):
            server = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with server.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(POSTGRES_URL).set(database=name)
            engine = sa.create_engine(url.set(drivername="postgresql+psycopg") if kind == "psycopg" else url)

            def drop():
                engine.dispose()
                with server.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                server.dispose()

            self.cleanup.append(drop)
            return engine
        if kind == "mysql":
            server = sa.create_engine(MYSQL_URL)
            with server.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            engine = sa.create_engine(sa.make_url(MYSQL_URL).set(database=name))

            def drop():
                engine.dispose()
                with server.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                server.dispose()

            self.cleanup.append(drop)
            return engine
        if kind == "firebird":
            return self.new_firebird(name)
        raise ValueError(kind)

    def new_firebird(self, name: str) -> sa.Engine:
        url, drop = new_firebird_database(name)
        engine = sa.create_engine(url)

        def dispose_and_drop():
            engine.dispose()
            drop()

        self.cleanup.append(dispose_and_drop)
        return engine

    def close(self):
        for step in reversed(self.cleanup):
            step()


def execute(engine: sa.Engine, sql: str, params=None) -> None:
    """Run one statement in its own transaction (test setup and source writes)."""
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params or {})


def rows(engine: sa.Engine, table: str, order_by: str | None = None) -> list[tuple]:
    """All rows of a table, in key order, as plain tuples."""
    metadata = sa.MetaData()
    with engine.connect() as conn:
        t = sa.Table(table, metadata, autoload_with=conn)
        query = sa.select(t).order_by(*t.primary_key.columns)
        return [tuple(r) for r in conn.execute(query)]


def q(engine: sa.Engine, name: str) -> str:
    """Quote an identifier for hand-written test SQL, by the engine's own dialect."""
    return engine.dialect.identifier_preparer.quote_identifier(name)
