"""Throw-away databases for one benchmark run, on the same servers the tests use."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import sqlalchemy as sa

SERVERS = {
    "postgresql": os.environ.get("PDR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
    "mysql": os.environ.get("PDR_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/?charset=utf8mb4"),
}
# "psycopg": PostgreSQL through psycopg 3, the driver Airflow's postgres hook gives.
LABELS = {"postgresql": "PostgreSQL", "psycopg": "PostgreSQL (psycopg 3)", "mysql": "MariaDB", "sqlite": "SQLite"}


class Databases:
    """Creates databases on demand; `close()` drops every one of them."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="pdr_bench_")
        self.dropped: list = []
        self.engines: list[sa.Engine] = []

    def url(self, kind: str) -> sa.URL:
        name = f"pdr_bench_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            return sa.make_url(f"sqlite:///{os.path.join(self.tmp, name)}.db")
        if kind == "psycopg":
            return self.url("postgresql").set(drivername="postgresql+psycopg")
        server = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
        quote = server.dialect.identifier_preparer.quote_identifier
        with server.connect() as conn:
            extra = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if kind == "mysql" else ""
            conn.exec_driver_sql(f"CREATE DATABASE {quote(name)}{extra}")
        force = " WITH (FORCE)" if kind == "postgresql" else ""
        self.dropped.append((server, f"DROP DATABASE IF EXISTS {quote(name)}{force}"))
        return sa.make_url(SERVERS[kind]).set(database=name)

    def new(self, kind: str) -> sa.Engine:
        engine = sa.create_engine(self.url(kind))
        self.engines.append(engine)
        return engine

    def close(self):
        for engine in self.engines:
            engine.dispose()
        for server, statement in reversed(self.dropped):
            with server.connect() as conn:
                conn.exec_driver_sql(statement)
            server.dispose()
        self.dropped.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
