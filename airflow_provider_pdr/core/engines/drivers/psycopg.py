"""psycopg 3: COPY writes rows of values itself, and LISTEN runs on its async connection, which
never blocks an event loop (the PostgreSQL listener uses it whatever the synchronous driver)."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql

from airflow_provider_pdr.core.engines.drivers import CopyDriver


class Psycopg(CopyDriver):
    sql = sql

    def copy_data(self, rows):
        return rows  # psycopg 3 writes value rows itself

    def copy(self, cursor, statement, data):
        with cursor.copy(statement) as stream:
            if isinstance(data, str):
                stream.write(data)
            else:
                for row in data:
                    stream.write_row(row)


@contextlib.asynccontextmanager
async def listening(engine, name: str):
    """Notifications of the channel `name`, on a connection of `engine`'s database."""
    _, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # the sync dialect's adapters
    async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        yield Notifications(conn)


class Notifications:
    """Wakes on the channel's pg_notify; several notifications in a row count as one wake-up."""

    def __init__(self, conn):
        self.conn = conn

    async def wait(self, timeout: float) -> bool:
        woke = False
        async for _ in self.conn.notifies(timeout=max(timeout, 0.0), stop_after=1):
            woke = True
        if woke:  # swallow the rest of a burst without waiting
            async for _ in self.conn.notifies(timeout=0.0):
                pass
        return woke


__all__ = ["Notifications", "Psycopg", "listening"]
