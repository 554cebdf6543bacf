"""Real databases for the tests (and the benchmark): each one freshly created, dropped after.

PostgreSQL and MariaDB are the servers `make test` starts on 127.0.0.1; override with
PDR_TEST_POSTGRES_URL / PDR_TEST_MYSQL_URL (a server URL; the tests create databases in it).
Firebird is the local server scripts/bootstrap.sh sets up, or PDR_TEST_FIREBIRD_URL.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

POSTGRES_URL = os.environ.get("PDR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_URL = os.environ.get("PDR_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/?charset=utf8mb4")
SERVERS = {"postgresql": POSTGRES_URL, "mysql": MYSQL_URL}

LIVE_ENGINES = ["sqlite", "postgresql", "mysql"]
# Destinations also include PostgreSQL through psycopg 3, the driver Airflow's postgres hook gives.
DESTINATIONS = LIVE_ENGINES + ["psycopg"]

FIREBIRD_PASSWORD_FILE = "/etc/firebird/3.0/SYSDBA.password"  # written by Debian's firebird3.0-server
# A directory the Firebird server may create database files in.
FIREBIRD_DIR = os.environ.get("PDR_TEST_FIREBIRD_DIR", "/tmp/pdr-firebird-tests")


def unique_name(prefix: str = "pdr_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(kind: str, name: str, directory: Path | str) -> tuple[sa.URL, Callable[[], None]]:
    """A new empty database `name` of `kind` (SQLite files go in `directory`): its URL, and a
    function dropping it once nothing is connected to it any more."""
    if kind == "sqlite":
        return sa.make_url(f"sqlite:///{os.path.join(directory, name)}.db"), lambda: None
    if kind == "psycopg":
        url, drop = create_database("postgresql", name, directory)
        return url.set(drivername="postgresql+psycopg"), drop
    if kind == "firebird":
        return new_firebird_database(name)
    if kind not in SERVERS:
        raise ValueError(kind)
    server = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    quote = server.dialect.identifier_preparer.quote_identifier
    extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if kind == "mysql" else ""
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {quote(name)}{extra}")
    force = " WITH (FORCE)" if kind == "postgresql" else ""

    def drop():
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}{force}")
        server.dispose()

    return sa.make_url(SERVERS[kind]).set(database=name), drop


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


def new_firebird_database(name: str):
    """Create a Firebird database file (UTF8) on the server; returns its URL and a function dropping it."""
    import fdb

    from airflow_provider_pdr import dialects

    dialects.register()  # firebird+fdb
    os.makedirs(FIREBIRD_DIR, exist_ok=True)
    os.chmod(FIREBIRD_DIR, 0o1777)  # the server process creates the file
    url = sa.make_url(firebird_server_url()).set(database=f"{FIREBIRD_DIR}/{name}.fdb")
    dsn = f"{url.host}/{url.port or 3050}:{url.database}"
    fdb.create_database(
        f"CREATE DATABASE '{dsn}' USER '{url.username}' PASSWORD '{url.password}' PAGE_SIZE 16384 "
        "DEFAULT CHARACTER SET UTF8"
    ).close()

    def drop():
        fdb.connect(dsn=dsn, user=url.username, password=url.password).drop_database()

    return url.set(query={"charset": "UTF8"}), drop


class Databases:
    """Creates databases on demand and drops them all at teardown."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.cleanup = []

    def new(self, kind: str) -> sa.Engine:
        url, drop = create_database(kind, unique_name(), self.tmp_path)
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
