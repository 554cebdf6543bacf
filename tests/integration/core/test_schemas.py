"""Source and destination tables outside the connection's default schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, pending_changes, reflect, uninstall_channel
from tests.support.databases import unique_name


def make_schema(engine: sa.Engine) -> str:
    """A PostgreSQL schema, or a MySQL database, dropped with the test database (or by hand)."""
    name = unique_name("Sales Schema")
    quoted = engine.dialect.identifier_preparer.quote_identifier(name)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE {'SCHEMA' if engine.dialect.name == 'postgresql' else 'DATABASE'} {quoted}")
    return name


@pytest.fixture
def drop_mysql_schemas(databases):
    made = []
    yield made
    for engine, name in made:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {engine.dialect.identifier_preparer.quote_identifier(name)}")


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_tables_in_another_schema(databases, kind, drop_mysql_schemas):
    source, destination = databases.new(kind), databases.new(kind)
    schema_in, schema_out = make_schema(source), make_schema(destination)
    if kind == "mysql":
        drop_mysql_schemas.extend([(source, schema_in), (destination, schema_out)])
    table = sa.Table("Orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("note", sa.String(20)), schema=schema_in)
    with source.begin() as conn:
        table.create(conn)
    info = install_channel(source, "orders", "Orders", schema=schema_in)
    assert info.table.schema == schema_in
    with source.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "note": "a"}, {"id": 2, "note": "b"}])
        conn.execute(table.update().where(table.c.id == 1).values(id=3))
    assert pending_changes(source, "orders").count == 4
    reflect(source, destination, ReflectionSpec("orders", "Mirror", schema_out, create_table=True))
    with destination.connect() as conn:
        mirror = sa.Table("Mirror", sa.MetaData(), autoload_with=conn, schema=schema_out)
        assert conn.execute(sa.select(mirror).order_by(mirror.c.id)).all() == [(2, "b"), (3, "a")]
    assert uninstall_channel(source, "orders")
    with source.connect() as conn:
        assert sa.inspect(conn).get_table_names(schema=schema_in) == ["Orders"]
