"""Throw-away databases for one benchmark run, on the same servers the tests use."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable

import sqlalchemy as sa

SERVERS = {
    "postgresql": os.environ.get("PDR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    "mysql": os.environ.get("PDR_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/?charset=utf8mb4"),
}
# "psycopg": PostgreSQL through psycopg 3, the driver Airflow's postgres hook gives.
LABELS = {"postgresql": "PostgreSQL", "psycopg": "PostgreSQL (psycopg 3)", "mysql": "MariaDB", "sqlite": "SQLite",
          "firebird": "Firebird"}
FIREBIRD_PASSWORD_FILE = "/etc/firebird/3.0/SYSDBA.password"  # written by Debian's firebird3.0-server
# A directory the Firebird server may create database files in.
FIREBIRD_DIR = os.environ.get("PDR_TEST_FIREBIRD_DIR", "/tmp/pdr-firebird-tests")


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
    """Creates databases on demand; `close()` drops every one of them."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="pdr_bench_")
        self.drops: list[Callable[[], None]] = []
        self.engines: list[sa.Engine] = []

    def url(self, kind: str) -> sa.URL:
        name = f"pdr_bench_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            return sa.make_url(f"sqlite:///{os.path.join(self.tmp, name)}.db")
        if kind == "psycopg":
            return self.url("postgresql").set(drivername="postgresql+psycopg")
        if kind == "firebird":
            url, drop = new_firebird_database(name)
            self.drops.append(drop)
            return url
        server = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
        quote = server.dialect.identifier_preparer.quote_identifier
        with server.connect() as conn:
            extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if kind == "mysql" else ""
            conn.exec_driver_sql(f"CREATE DATABASE {quote(name)}{extra}")
        force = " WITH (FORCE)" if kind == "postgresql" else ""

        def drop():
            with server.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quote(name)}{force}")
            server.dispose()

        self.drops.append(drop)
        return sa.make_url(SERVERS[kind]).set(database=name)

    def new(self, kind: str) -> sa.Engine:
        engine = sa.create_engine(self.url(kind))
        self.engines.append(engine)
        return engine

    def close(self):
        for engine in self.engines:
            engine.dispose()
        for drop in reversed(self.drops):
            drop()
        self.drops.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
