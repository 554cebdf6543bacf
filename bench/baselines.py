"""The baseline of apply throughput: the fastest plain bulk upsert of the final rows into the
same destination with the same driver, as a hand-written copy script would do it (rows
already in memory, one transaction per batch). Each method writes into its own fresh copy
of the destination table."""

from __future__ import annotations

import io
import time

import sqlalchemy as sa

from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.engines.drivers.copytext import copy_text
from airflow_provider_pdr.core.schema import introspect_table
from airflow_provider_pdr.core.values import value_converters
from bench import cpu


def final_rows(source: sa.Engine, destination: sa.Engine, name: str) -> list[dict]:
    """The source's rows as the destination receives them (same conversions as the core)."""
    with source.connect() as conn:
        table = introspect_table(conn, engine_module(source), name, None)
        rows = [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
    with destination.connect() as conn:
        convert = value_converters(introspect_table(conn, engine_module(destination), name, None))
    for row in rows:
        for column, function in convert.items():
            row[column] = function(row[column])
    return rows


def driver_rows(conn, table, rows) -> list[tuple]:
    """Values as the driver takes them, through the column types' own bind processing."""
    processors = [c.type._cached_bind_processor(conn.dialect) for c in table.columns]
    names = [c.name for c in table.columns]
    return [tuple(p(row[n]) if p else row[n] for p, n in zip(processors, names)) for row in rows]


def raw_sql(conn, table, keys, placeholder: str, conflict: str, new: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    columns = [quote(c.name) for c in table.columns]
    updates = ", ".join(f"{c} = {new.format(c)}" for c in columns if c not in [quote(k) for k in keys])
    target = conn.dialect.identifier_preparer.format_table(table)
    return f"INSERT INTO {target} ({', '.join(columns)}) VALUES {placeholder(len(columns))} {conflict} {updates}"


def postgres_values(page_size: int):
    def run(conn, table, keys, rows, batch):
        from psycopg2.extras import execute_values

        quote = conn.dialect.identifier_preparer.quote
        sql = raw_sql(conn, table, keys, lambda n: "%s",
                      f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET", "EXCLUDED.{}")
        values = driver_rows(conn, table, rows)
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            for start in range(0, len(values), batch):
                execute_values(cursor, sql, values[start : start + batch], page_size=page_size)
                raw.commit()
    return run


def executemany(placeholder: str, conflict, new: str):
    def run(conn, table, keys, rows, batch):
        quote = conn.dialect.identifier_preparer.quote
        sql = raw_sql(conn, table, keys, lambda n: "(" + ", ".join([placeholder] * n) + ")",
                      conflict.format(", ".join(quote(k) for k in keys)), new)
        executemany_in_batches(conn, table, rows, batch, sql)
    return run


def executemany_in_batches(conn, table, rows, batch: int, sql: str) -> None:
    """The driver's executemany of `sql`, one transaction per batch."""
    values = driver_rows(conn, table, rows)
    raw = conn.connection.dbapi_connection
    cursor = raw.cursor()
    for start in range(0, len(values), batch):
        cursor.executemany(sql, values[start : start + batch])
        raw.commit()
    cursor.close()


def psycopg_rows(conn, cursor, copy: str, table, rows) -> None:
    with cursor.copy(copy) as stream:
        for row in driver_rows(conn, table, rows):
            stream.write_row(row)


def psycopg2_text(conn, cursor, copy: str, table, rows) -> None:
    """Rows formatted as COPY text in Python, as a hand-written psycopg2 script would (the same
    formatting the drain uses), sent by copy_expert."""
    names = [c.name for c in table.columns]
    lines = [copy_text([row[n] for n in names]) for row in rows]
    if None in lines:
        raise TypeError("a baseline row holds a value copy_text does not format")
    cursor.copy_expert(copy, io.StringIO("".join(line + "\n" for line in lines)))


def copy_then_upsert(fill):
    """COPY each batch into a temporary table (`fill` writes the rows), then upsert it with one
    INSERT ... SELECT."""
    def run(conn, table, keys, rows, batch):
        quote = conn.dialect.identifier_preparer.quote
        columns = ", ".join(quote(c.name) for c in table.columns)
        target = conn.dialect.identifier_preparer.format_table(table)
        updates = ", ".join(f"{quote(c.name)} = EXCLUDED.{quote(c.name)}" for c in table.columns if c.name not in keys)
        upsert = (f"INSERT INTO {target} ({columns}) SELECT {columns} FROM staging "
                  f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET {updates}")
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE staging AS SELECT {columns} FROM {target} WITH NO DATA")
            for start in range(0, len(rows), batch):
                fill(conn, cursor, f"COPY staging ({columns}) FROM STDIN", table, rows[start : start + batch])
                cursor.execute(upsert)
                cursor.execute("TRUNCATE staging")
                raw.commit()
            cursor.execute("DROP TABLE staging")
            raw.commit()
    return run


def firebird_update_or_insert(conn, table, keys, rows, batch):
    """Firebird's own upsert through fdb's executemany (the statement prepared once)."""
    quote = conn.dialect.identifier_preparer.quote
    sql = (f"UPDATE OR INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in table.columns)}) "
           f"VALUES ({', '.join('?' * len(table.columns))}) MATCHING ({', '.join(quote(k) for k in keys)})")
    executemany_in_batches(conn, table, rows, batch, sql)


# Per destination dialect and driver, the driver's own fastest bulk forms.
MYSQL = {"mysqlclient executemany": executemany("%s", "ON DUPLICATE KEY UPDATE", "VALUES({})")}
DRIVER_METHODS = {
    "postgresql+psycopg2": {"psycopg2 execute_values page 1000": postgres_values(1000),
                            "psycopg2 execute_values page 5000": postgres_values(5000),
                            "psycopg2 COPY + INSERT ... SELECT": copy_then_upsert(psycopg2_text)},
    "postgresql+psycopg": {"psycopg executemany": executemany("%s", "ON CONFLICT ({}) DO UPDATE SET", "EXCLUDED.{}"),
                           "psycopg COPY + INSERT ... SELECT": copy_then_upsert(psycopg_rows)},
    "mysql+mysqldb": MYSQL,
    "mariadb+mysqldb": MYSQL,
    "sqlite+pysqlite": {"sqlite3 executemany": executemany("?", "ON CONFLICT ({}) DO UPDATE SET", "excluded.{}")},
    "firebird+fdb": {"fdb executemany UPDATE OR INSERT": firebird_update_or_insert},
}


def fastest(destination: sa.Engine, name: str, rows: list[dict], batch: int) -> dict:
    methods = DRIVER_METHODS[f"{destination.dialect.name}+{destination.dialect.driver}"]
    tried, work_of = {}, {}
    with destination.connect() as conn:
        mirror = introspect_table(conn, engine_module(destination), name, None)
        keys = [c.name for c in mirror.primary_key.columns]
        conn.rollback()
        for number, (method, run) in enumerate(methods.items()):
            copy = mirror.to_metadata(sa.MetaData(), name=f"{name}_baseline_{number}")
            copy.primary_key.name = None  # constraint names are unique per schema on PostgreSQL
            copy.create(conn)
            conn.commit()
            began = time.perf_counter()
            with cpu.measured(destination=destination) as work:
                run(conn, copy, keys, rows, batch)
            tried[method] = time.perf_counter() - began
            work_of[method] = work.total
            copied = conn.execute(sa.select(sa.func.count()).select_from(copy)).scalar()
            if copied != len(rows):
                raise RuntimeError(f"baseline {method} wrote {copied} rows of {len(rows)}")
            copy.drop(conn)
            conn.commit()
    method = min(tried, key=tried.get)
    return {"method": method, "seconds": tried[method], "rows_per_s": len(rows) / tried[method], "tried": tried,
            "cpu_s": work_of[method]}
