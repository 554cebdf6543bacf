"""The compiled bulk upsert: names SQLAlchemy must escape, and updates of rows already mirrored."""

from __future__ import annotations

import decimal
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from airflow_provider_pdr.core import install_channel, reflect

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
    assert reflect(source, destination, "c", create_table=True).upserted == 3
    with source.begin() as conn:  # a second batch updates rows the first one wrote
        conn.execute(table.update().values({"d%%": decimal.Decimal("-1.5"), 'q"uote': "%%"}))
    assert reflect(source, destination, "c").upserted == 3

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
        assert reflect(source, restricted, "c", create_table=True).upserted == 5
        with source.begin() as conn:
            conn.execute(table.update().values(note="again"))
        assert reflect(source, restricted, "c").upserted == 5
        with restricted.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM t WHERE note = 'again'")).scalar() == 5
    finally:  # roles belong to the whole server: leave none behind
        restricted.dispose()
        with destination.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
