"""The compiled bulk upsert: names SQLAlchemy must escape, and updates of rows already mirrored."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from airflow_provider_pdr.core import ReflectionSpec, install_channel, reflect
from airflow_provider_pdr.core.engines import engine_module

TABLE = "odd%s VALUES (x)"


@pytest.mark.parametrize("driver", ["postgresql", "psycopg"])  # psycopg2's execute_values, psycopg 3's COPY
def test_percent_and_values_in_names_reach_postgresql_exactly(databases, driver):
    source, destination = databases.new(driver), databases.new(driver)
    table = sa.Table(
        TABLE, sa.MetaData(),
        sa.Column("k%(ey)s", sa.BigInteger, primary_key=True),
        sa.Column("j VALUES %s", postgresql.JSONB),
        sa.Column("u", sa.Uuid),
        sa.Column("d%%", sa.Numeric(30, 10)),
        sa.Column('q"uote', sa.Text),
    )
    table.create(source)
    install_channel(source, "c", TABLE)
    rows = [{"k%(ey)s": 2**62 + i, "j VALUES %s": {"a": [i, "x%s"], "n": None}, "u": uuid.uuid4(),
             "d%%": decimal.Decimal("12345678901234567890.0123456789"), 'q"uote': "it's %s %(x)s"}
            for i in range(3)]
    with source.begin() as conn:
        conn.execute(table.insert(), rows)
    assert reflect(source, destination, ReflectionSpec("c", create_table=True)).upserted == 3
    with source.begin() as conn:  # a second batch updates rows the first one wrote
        conn.execute(table.update().values({"d%%": decimal.Decimal("-1.5"), 'q"uote': "%%"}))
    assert reflect(source, destination, ReflectionSpec("c")).upserted == 3

    mirror = sa.Table(TABLE, sa.MetaData(), autoload_with=destination)
    with destination.connect() as conn:
        got = [dict(row._mapping) for row in conn.execute(sa.select(mirror).order_by(mirror.c["k%(ey)s"]))]
    expected = [{**row, "d%%": decimal.Decimal("-1.5000000000"), 'q"uote': "%%"} for row in rows]
    assert got == expected


@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])  # from PostgreSQL rows would come as text
def test_psycopg_writes_without_the_right_to_create_temporary_tables(databases, source_kind):
    """psycopg 3 stages batches in a temporary table; a role refused TEMP still gets every row."""
    source, destination = databases.new(source_kind), databases.new("psycopg")
    role = f"pdr_no_temp_{uuid.uuid4().hex[:8]}"
    database = destination.url.database
    with destination.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        conn.exec_driver_sql(f'GRANT ALL ON SCHEMA public TO "{role}"')
    restricted = sa.create_engine(destination.url.set(username=role))
    try:
        with restricted.connect() as conn:  # the staging table could not be created
            assert not conn.scalar(sa.text("SELECT has_database_privilege(current_database(), 'TEMPORARY')"))
        table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("note", sa.Text))
        table.create(source)
        install_channel(source, "c", "t")
        with source.begin() as conn:
            conn.execute(table.insert(), [{"id": i, "note": f"n{i}"} for i in range(5)])
        assert reflect(source, restricted, ReflectionSpec("c", create_table=True)).upserted == 5
        with source.begin() as conn:
            conn.execute(table.update().values(note="again"))
        assert reflect(source, restricted, ReflectionSpec("c")).upserted == 5
        with restricted.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t WHERE note = 'again'")).scalar() == 5
    finally:  # roles belong to the whole server: leave none behind
        restricted.dispose()
        with destination.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')


def test_psycopg2_copy_text_writes_what_psycopg_3_writes(databases):
    """psycopg2's batches are COPY text formatted here (copy_text): every kind of value must land as
    psycopg 3's own COPY lands it; a kind copy_text does not know (a list, for an array column)
    sends the batch through execute_values."""
    columns = ("id integer PRIMARY KEY, t text, b bytea, n numeric, f float8, ok boolean, ts timestamp, "
               "tz timestamptz, d date, tm time, tmz timetz, iv interval, u uuid, j jsonb, arr integer[]")
    hostile = ["", "\\", "\\N", "a\tb", "line\nbreak", "cr\r", "ünïcødé", "'quoted'", "%s %(x)s"]
    utc5 = dt.timezone(dt.timedelta(hours=5, minutes=30))
    rows = [{
        "id": i, "t": text, "b": text.encode() + b"\x00\\\n", "n": [decimal.Decimal("1E+3"), decimal.Decimal("-0.000"),
        decimal.Decimal("12345678901234567890.0123456789"), decimal.Decimal("NaN")][i % 4],
        "f": [0.1 + 0.2, float("inf"), float("-inf"), float("nan"), -0.0, 5e-324, 1e16][i % 7],
        "ok": [True, False][i % 2],
        "ts": dt.datetime(1, 1, 1, 0, 0, 0, i) if i % 2 else dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "tz": dt.datetime(2026, 6, 30, 23, 59, 59, 1, tzinfo=utc5 if i % 2 else dt.timezone.utc),
        "d": dt.date(2026, 2, 28), "tm": dt.time(23, 59, 59, 999999), "tmz": dt.time(12, 0, tzinfo=utc5),
        "iv": [dt.timedelta(microseconds=-1), dt.timedelta(days=400, seconds=5), dt.timedelta(0)][i % 3],
        "u": uuid.UUID(int=i), "j": {"k": text, "n": [1, 2.5, None]}, "arr": None,
    } for i, text in enumerate(hostile)]
    rows.append({"id": 100, **{name: None for name in rows[0] if name != "id"}})
    with_array = [{**rows[0], "id": 200, "arr": [1, None, 3]}]  # a list: not a kind copy_text knows
    written = {}
    for label, kind in (("copy_text", "postgresql"), ("psycopg 3", "psycopg")):
        engine = databases.new(kind)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE kinds ({columns})")
        table = sa.Table("kinds", sa.MetaData(), autoload_with=engine)
        write = engine_module(engine).upserter(engine.dialect, table, ["id"])
        with engine.begin() as conn:
            conn.exec_driver_sql("SET TimeZone = 'America/New_York'")
            write(conn, [[row[c.name] for c in table.columns] for row in rows])
            write(conn, [[row[c.name] for c in table.columns] for row in with_array])
        with engine.connect() as conn:
            conn.exec_driver_sql("SET TimeZone = 'UTC'; SET extra_float_digits = 3")
            written[label] = [r[0] for r in conn.exec_driver_sql("SELECT k::text FROM kinds k ORDER BY id")]
    assert len(written["copy_text"]) == len(rows) + 1
    assert written["copy_text"] == written["psycopg 3"]
    # execute_values would have written -0.0 as 0: its SQL literal -0.0 is a negated numeric zero.
    assert ",-0,t," in written["copy_text"][4]
