"""Throw-away databases for one benchmark run, on the same servers the tests use (created and
dropped by tests/support/databases.py)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from tests.support.databases import create_database

# "psycopg": PostgreSQL through psycopg 3, the driver Airflow's postgres hook gives.
LABELS = {"postgresql": "PostgreSQL", "psycopg": "PostgreSQL (psycopg 3)", "mysql": "MariaDB", "sqlite": "SQLite",
          "firebird": "Firebird"}


def label(source: str, destination: str) -> str:
    return f"{LABELS[source]} -> {LABELS[destination]}"


class Databases:
    """Creates databases on demand; `close()` drops every one of them."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="pdr_bench_")
        self.drops: list[Callable[[], None]] = []
        self.engines: list[sa.Engine] = []

    def url(self, kind: str) -> sa.URL:
        url, drop = create_database(kind, f"pdr_bench_{uuid.uuid4().hex[:10]}", self.tmp)
        self.drops.append(drop)
        return url

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
