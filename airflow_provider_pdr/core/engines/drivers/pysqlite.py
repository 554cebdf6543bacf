"""sqlite3 (SQLAlchemy's pysqlite): its own executemany of an upsert compiled once."""

from __future__ import annotations

from airflow_provider_pdr.core.engines.drivers import Driver
from airflow_provider_pdr.core.engines.drivers.dbapi import executemany_upserter


class Pysqlite(Driver):
    def upserter(self, statement, dialect, table):
        return executemany_upserter(statement, dialect, table)


__all__ = ["Pysqlite"]
