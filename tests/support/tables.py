"""Portable test tables, created through SQLAlchemy so every engine quotes them its own way."""

from __future__ import annotations

import datetime as dt
import random
import threading

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.schema import introspect_table


def create(engine: sa.Engine, name: str, *columns: sa.Column) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), *columns)
    with engine.begin() as conn:
        table.create(conn)
    return table


def orders(engine: sa.Engine, name: str = "orders") -> sa.Table:
    """A simple keyed table: id, note, amount."""
    return create(
        engine, name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(100)),
        sa.Column("amount", sa.Numeric(12, 2)),
    )


def write(engine: sa.Engine, statement, params=None) -> None:
    with engine.begin() as conn:
        conn.execute(statement, params) if params is not None else conn.execute(statement)


def table_rows(engine: sa.Engine, name: str) -> list[tuple]:
    with engine.connect() as conn:
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


# Conflicts between concurrent writers themselves, as the engines word them: theirs, not ours.
WRITER_CONFLICTS = ("deadlock", "locked", "duplicate", "unique", "update conflicts",
                    "cannot update erased record", "violation of primary")


def race_writers(source: sa.Engine, table: sa.Table, drain, writers: int = 4, writes: int = 60) -> list:
    """Writers insert, update and delete random keys of `table` while `drain()` runs again and
    again; returns the errors that were not conflicts between the writers themselves."""
    errors = []

    def writer(seed):
        rng = random.Random(seed)
        for _ in range(writes):
            key = rng.randrange(40)
            try:
                with source.begin() as conn:
                    if conn.execute(sa.select(table.c.id).where(table.c.id == key)).first() is None:
                        conn.execute(table.insert(), {"id": key, "note": f"w{seed}"})
                    elif rng.random() < 0.3:
                        conn.execute(table.delete().where(table.c.id == key))
                    else:
                        conn.execute(table.update().where(table.c.id == key).values(note=f"w{seed}-{rng.random()}"))
            except sa.exc.DBAPIError as error:
                if not any(conflict in str(error).lower() for conflict in WRITER_CONFLICTS):
                    errors.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(writers)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        drain()
    for thread in threads:
        thread.join()
    return errors


def typed_rows(engine: sa.Engine, name: str) -> list[tuple]:
    """Rows read through the provider's own column types, with instants in naive UTC."""
    with engine.connect() as conn:
        table = introspect_table(conn, engine_module(engine), name, None)
        result = conn.execute(sa.select(table).order_by(table.c.id)).all()
    def normal(value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    return [tuple(normal(v) for v in row) for row in result]


def all_types_table(engine: sa.Engine) -> sa.Table:
    return create(
        engine, "all_types",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("big", sa.BigInteger),
        sa.Column("dec", sa.Numeric(15, 6)),
        sa.Column("small_dec", sa.Numeric(5, 2)),
        sa.Column("flt", sa.Double),
        sa.Column("txt", sa.String(200)),
        sa.Column("big_text", sa.Text().with_variant(mysql.LONGTEXT(), "mysql")),
        sa.Column("blob", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")),
        sa.Column("ts_tz", sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")),
        sa.Column("ts", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")),
        sa.Column("d", sa.Date),
        sa.Column("t", sa.Time),
        sa.Column("flag", sa.Boolean),
    )

