"""Schema drift: a changed source table fails the reflect with a clear message, or evolves when asked."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, SchemaError, install_channel, pending_changes, reflect
from airflow_provider_pdr.core.transform import ColumnMapping
from tests.support.tables import orders, table_rows, write
from tests.support.databases import q


def mirrored(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i} for i in range(5)])
    reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True))
    return table


def alter(engine, sql):
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)


def test_a_new_column_fails_the_reflect_naming_it(source, destination):
    table = mirrored(source, destination)
    alter(source, f"ALTER TABLE {q(source, 'orders')} ADD {q(source, 'Region')} VARCHAR(20)")
    write(source, table.update().where(table.c.id == 1).values(note="after"))
    before = table_rows(destination, "mirror")
    with pytest.raises(SchemaError, match=r"channel 'orders'.*new columns \['Region'\].*evolve"):
        reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert table_rows(destination, "mirror") == before, "nothing was written"
    assert pending_changes(source, "orders").count == 1


def test_a_dropped_or_retyped_column_is_named(source, destination):
    mirrored(source, destination)
    alter(source, f"ALTER TABLE {q(source, 'orders')} DROP COLUMN {q(source, 'amount')}")
    with pytest.raises(SchemaError, match=r"dropped columns \['amount'\]"):
        reflect(source, destination, ReflectionSpec("orders", "mirror"))


def test_a_changed_key_is_refused_even_when_evolving(databases):
    source, destination = databases.new("postgresql"), databases.new("sqlite")
    mirrored(source, destination)
    alter(source, 'ALTER TABLE orders DROP CONSTRAINT orders_pkey, ADD PRIMARY KEY (id, note)')
    with pytest.raises(SchemaError, match=r"primary key changed from \['id'\] to \['id', 'note'\].*cannot be evolved"):
        reflect(source, destination, ReflectionSpec("orders", "mirror", mapping=ColumnMapping(evolve=True)))


def test_evolve_adds_the_column_fills_it_and_refreshes_the_channel(source, destination):
    table = mirrored(source, destination)
    alter(source, f"ALTER TABLE {q(source, 'orders')} ADD {q(source, 'Region')} VARCHAR(20)")
    alter(source, f"UPDATE {q(source, 'orders')} SET {q(source, 'Region')} = 'north' WHERE {q(source, 'id')} < 3")
    write(source, table.delete().where(table.c.id == 4))
    result = reflect(source, destination, ReflectionSpec("orders", "mirror", mapping=ColumnMapping(evolve=True)))
    assert result.copied == 4, "rows written before the column existed are copied again"
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert [r[-1] for r in table_rows(destination, "mirror")] == ["north", "north", "north", None]
    # The channel now knows the new column: the next reflect without evolve passes.
    write(source, table.insert(), [{"id": 9, "note": "later"}])
    assert reflect(source, destination, ReflectionSpec("orders", "mirror")).copied == 0
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


def recreate(engine, *columns, rows=()):
    metadata = sa.MetaData()
    table = sa.Table("orders", metadata, *columns)
    with engine.begin() as conn:
        sa.Table("orders", sa.MetaData(), autoload_with=conn).drop(conn)
        table.create(conn)
        if rows:
            conn.execute(table.insert(), list(rows))
    return table


def test_a_retyped_column_or_a_new_key_is_named_and_refused_even_when_evolving(source, destination):
    mirrored(source, destination)
    recreate(source, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
             sa.Column("note", sa.String(100), primary_key=True), sa.Column("amount", sa.String(30)))
    with pytest.raises(SchemaError) as error:
        reflect(source, destination, ReflectionSpec("orders", "mirror", mapping=ColumnMapping(evolve=True)))
    message = str(error.value)
    assert "column 'amount' changed type from" in message, message
    assert "primary key changed from ['id'] to ['id', 'note']" in message, message
    assert "cannot be evolved" in message


def test_a_recreated_table_without_triggers_is_detected_and_evolving_resyncs(source, destination):
    mirrored(source, destination)
    table = recreate(source, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("note", sa.String(100)), sa.Column("amount", sa.Numeric(12, 2)),
                     rows=[{"id": 1, "note": "new life"}, {"id": 7, "note": "seven"}])
    with pytest.raises(SchemaError, match="capture triggers are gone"):
        reflect(source, destination, ReflectionSpec("orders", "mirror"))
    result = reflect(source, destination, ReflectionSpec("orders", "mirror", mapping=ColumnMapping(evolve=True)))
    assert result.copied == 2
    assert table_rows(destination, "mirror") == table_rows(source, "orders")  # rows 0, 2, 3, 4 swept away
    write(source, table.update().where(table.c.id == 7).values(note="captured again"))
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
