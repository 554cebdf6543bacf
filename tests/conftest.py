"""Real databases for the tests: each test gets its own freshly created database, dropped after.

PostgreSQL and MariaDB are the servers `make test` starts on 127.0.0.1; override with
PDR_TEST_POSTGRES_URL / PDR_TEST_MYSQL_URL (a server URL; the tests create databases in it).
"""

from __future__ import annotations

import os
import re
import uuid

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("PDR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_URL = os.environ.get("PDR_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/?charset=utf8mb4")
# Firebird: a server URL without database, and a directory the server may create databases in.
FIREBIRD_PASSWORD_FILE = "/etc/firebird/3.0/SYSDBA.password"  # written by Debian's firebird3.0-server
FIREBIRD_DIR = os.environ.get("PDR_TEST_FIREBIRD_DIR", "/tmp/pdr-firebird-tests")

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
        import fdb

        from airflow_provider_pdr import dialects

        dialects.register()  # firebird+fdb
        os.makedirs(FIREBIRD_DIR, exist_ok=True)
        os.chmod(FIREBIRD_DIR, 0o1777)  # the server process creates the file
        url = sa.make_url(firebird_server_url()).set(database=f"{FIREBIRD_DIR}/{name}.fdb")
        fdb.create_database(
            f"CREATE DATABASE '{url.host}/{url.port or 3050}:{url.database}' USER '{url.username}' "
            f"PASSWORD '{url.password}' PAGE_SIZE 16384 DEFAULT CHARACTER SET UTF8"
        ).close()
        engine = sa.create_engine(url.set(query={"charset": "UTF8"}))

        def drop():
            engine.dispose()
            fdb.connect(dsn=f"{url.host}/{url.port or 3050}:{url.database}", user=url.username,
                        password=url.password).drop_database()

        self.cleanup.append(drop)
        return engine

    def close(self):
        for step in reversed(self.cleanup):
            step()


def firebird_server_url() -> str:
    """PDR_TEST_FIREBIRD_URL, or the local server with the SYSDBA password scripts/bootstrap.sh knows."""
    if os.environ.get("PDR_TEST_FIREBIRD_URL"):
        return os.environ["PDR_TEST_FIREBIRD_URL"]
    try:
        with open(FIREBIRD_PASSWORD_FILE) as handle:
            password = re.search(r'^ISC_PASSWORD="?([^"\n]*)"?', handle.read(), re.M).group(1)
    except (OSError, AttributeError) as error:
        raise RuntimeError(
            f"no SYSDBA password readable in {FIREBIRD_PASSWORD_FILE} ({error}): run scripts/bootstrap.sh "
            "as root, or set PDR_TEST_FIREBIRD_URL=firebird+fdb://user:password@host:3050"
        ) from None
    return sa.URL.create("firebird+fdb", "SYSDBA", password, "127.0.0.1", 3050).render_as_string(hide_password=False)


@pytest.fixture
def databases(tmp_path):
    dbs = Databases(tmp_path)
    yield dbs
    dbs.close()


@pytest.fixture(params=LIVE_ENGINES)
def source(request, databases):
    """A fresh source database on each live engine."""
    return databases.new(request.param)


@pytest.fixture(params=DESTINATIONS)
def destination(request, databases):
    """A fresh destination database on each live engine."""
    return databases.new(request.param)


@pytest.fixture(params=LIVE_ENGINES)
def engine(request, databases):
    return databases.new(request.param)


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
