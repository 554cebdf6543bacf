"""How a drain finds a span's keys: exact lookups, PostgreSQL arrays, and the source table's index."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel
from airflow_provider_pdr.core.drain.assemble import open_drain
from airflow_provider_pdr.core.drain.read import Reader
from airflow_provider_pdr.core.engines import engine_module
from tests.support.drain import mirror
from tests.support.tables import create, orders, table_rows, write


def test_a_key_the_exact_lookup_does_not_find_is_deleted_without_a_join(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(5)])
    mirror(source, destination)
    write(source, table.delete().where(table.c.id >= 3))
    monkeypatch.setattr(Reader, "resolve_unsure_keys",
                        lambda *args: pytest.fail("integer keys are decided by the lookup alone"))
    assert mirror(source, destination).deleted == 2
    assert [r[0] for r in table_rows(destination, "mirror")] == [0, 1, 2]


@pytest.mark.parametrize("driver", ["postgresql", "psycopg"])
def test_postgresql_array_lookups_compare_as_the_column_does(databases, driver):
    """`= ANY(array)` stands in for IN only where it is the column's own equality: never cut to a
    varchar's length (which would find another key), never for char (blank-padded) or citext;
    every value arrives whole, whatever quotes, commas, braces or percent signs it holds (the array
    is written into the statement as a literal, with either driver)."""
    engine = databases.new(driver)
    module = engine_module(engine)
    key = uuid.uuid4()
    hostile = ['a"b', "a\\b", "a,b", "{x}", " sp ", "NULL", "é€", "", "it's", "100%", "%s", "%(v)s", "'); --"]
    table = create(engine, "keys", sa.Column("n", sa.SmallInteger, primary_key=True), sa.Column("code", sa.String(4)),
                   sa.Column("padded", sa.CHAR(4)), sa.Column("token", sa.Uuid), sa.Column("amount", sa.Numeric(6, 2)),
                   sa.Column("label", sa.Text))
    write(engine, table.insert(), {"n": 1, "code": "abcd", "padded": "ab", "token": key, "amount": 1.5})
    write(engine, table.insert(), [{"n": i, "label": text} for i, text in enumerate(hostile, 2)])
    cases = [("n", [1, 2**40], [1]), ("code", ["abcd"], [1]), ("code", ["abcdX", "ABCD"], []),
             ("padded", ["ab"], [1]), ("token", [key], [1]), ("token", [str(key)], [1]), ("amount", [1.5], [1]),
             ("amount", [1.499], []), ("label", hostile, list(range(2, 2 + len(hostile)))), ("label", ["a", "b"], [])]
    with engine.connect() as conn:
        for column, values, found in cases:
            query = sa.select(table.c.n).where(module.in_list([table.c[column]], "values")).order_by(table.c.n)
            assert conn.scalars(query, {"values": values}).all() == found, (column, values)
    forms = {c: "ANY" in str(module.in_list([table.c[c]], "v").compile(dialect=engine.dialect)) for c in table.c.keys()}
    assert forms == {"n": True, "code": True, "padded": False, "token": True, "amount": False, "label": True}
    assert {c: module.exact_lookup(table.c[c].type) for c in table.c.keys()} == forms


def span_plan(conn, drain, limit: int) -> str:
    """The plan PostgreSQL makes for the drain's span read of `limit` change rows, in this transaction."""
    compiled = drain.route.span_queries[False].compile(dialect=conn.dialect)
    return "\n".join(row[0] for row in conn.exec_driver_sql(
        "EXPLAIN " + compiled.string, {**compiled.params, "limit": limit}))


def test_a_span_from_a_large_postgresql_table_finds_its_rows_by_index(databases):
    """PostgreSQL's planner joins a span's keys to a few hundred thousand rows or more by hashing
    the whole table (five times slower at 2,000,000 rows): the read looks each key up instead."""
    source, destination = databases.new("postgresql"), databases.new("sqlite")
    table = orders(source)
    with source.begin() as conn:
        conn.execute(table.insert().from_select(["id", "note"], sa.select(
            sa.func.generate_series(1, 300_000).label("id"), sa.literal("old"))))
    install_channel(source, "orders", "orders")
    write(source, table.update().where(table.c.id <= 20_000).values(note="new"))
    with source.begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # the table and its change table, as autovacuum would
    with open_drain(source, destination, ReflectionSpec("orders", "mirror", create_table=True)) as (drain, sconn, _):
        assert "Seq Scan on orders" in span_plan(sconn, drain, 20_000), "the planner no longer reads it all: rethink"
        sconn.rollback()
        drain.plan.src.prepare_join(sconn, drain.plan.source_table, 20_000)
        plan = span_plan(sconn, drain, 20_000)
        assert "Index Scan using orders_pkey" in plan and "Seq Scan on orders" not in plan, plan
        sconn.rollback()  # the settings end with the read transaction
        assert sconn.exec_driver_sql("SHOW enable_hashjoin").scalar() == "on"
        # A table of at most ten rows per key asked for is left to the planner, and so is what a
        # user set for the session.
        sconn.exec_driver_sql("SET enable_mergejoin = off")
        drain.plan.src.prepare_join(sconn, drain.plan.source_table, 40_000)
        assert [sconn.exec_driver_sql(f"SHOW {name}").scalar() for name in ("enable_hashjoin", "enable_mergejoin")] \
            == ["on", "off"]
        sconn.rollback()
    result = mirror(source, destination, batch_size=5000)  # spans of 20,000 changes, looked up by index
    assert (result.changes, result.upserted, result.drained) == (20_000, 20_000, True)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")[:20_000]
