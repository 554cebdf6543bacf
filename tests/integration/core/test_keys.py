"""Key lists on every engine: "key among these keys" finds exactly those rows, in as many
statements as the engine's parameter limit needs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.keys import key_page, keys_among, next_page
from tests.support.tables import create


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "psycopg", "mysql", "firebird"])
@pytest.mark.parametrize("width", [1, 2])
def test_keys_among_finds_exactly_the_keys_asked_for(databases, kind, width, monkeypatch):
    """Single and composite keys, in parts of at most 7 keys, on a table with a column named
    like a bind parameter: only the rows asked for are found, updated and deleted."""
    engine = databases.new(kind)
    module = engine_module(engine)
    monkeypatch.setattr(module, "max_parameters", 7 * width)
    table = create(engine, "items", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   *([sa.Column("shard", sa.Integer, primary_key=True)] if width == 2 else []),
                   sa.Column("keys", sa.String(10)), sa.Column("pdr_keys", sa.String(10)))
    every = [(i, i % 3)[:width] for i in range(40)]
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**dict(zip(("id", "shard"), key)), "keys": "k", "pdr_keys": "p"}
                                      for key in every])
    asked = [key for key in every if key[0] % 3 == 1] + [(99, 0)[:width]]  # and one that does not exist
    columns = list(table.primary_key.columns)
    parts = list(keys_among(module, columns, asked))
    assert len(parts) == 2  # 14 keys asked, at most 7 a statement
    with engine.begin() as conn:
        found = {tuple(row) for condition in parts for row in conn.execute(sa.select(*columns).where(condition))}
        cleared = sum(conn.execute(table.update().where(condition).values(keys=None)).rowcount for condition in parts)
        removed = module.delete_keys(conn, table, [c.name for c in columns], asked)
    assert found == set(asked[:-1]) and cleared == removed == 13
    with engine.connect() as conn:
        left = conn.execute(sa.select(*columns, table.c["keys"], table.c.pdr_keys)).all()
    assert sorted(tuple(row[:width]) for row in left) == sorted(set(every) - set(asked))
    assert {tuple(row[width:]) for row in left} == {("k", "p")}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql", "firebird"])
def test_a_keyset_walk_visits_every_key_once_in_order(databases, kind):
    """Keyset pages (after()) walk a three-column key, 7 rows a page, on the engine itself."""
    engine = databases.new(kind)
    table = create(engine, "cells", *[sa.Column(name, sa.Integer, primary_key=True, autoincrement=False)
                                      for name in ("a", "b", "c")])
    every = [(a, b, c) for a in range(4) for b in range(3) for c in range(3)]
    with engine.begin() as conn:
        conn.execute(table.insert(), [dict(zip("abc", key)) for key in every])
    columns, seen, last = list(table.primary_key.columns), [], None
    with engine.connect() as conn:
        while keys := key_page(conn, columns, last, 7):
            seen += keys
            last = keys[-1]
    assert seen == every


def test_a_keyset_page_of_a_composite_key_starts_in_the_index_at_its_last_key(databases):
    """PostgreSQL scanned the key index from its start for every page while the condition began
    with an OR: a page's cost grew with how far the walk had gone."""
    engine = databases.new("postgresql")
    table = create(engine, "cells", *[sa.Column(name, sa.Integer, primary_key=True, autoincrement=False)
                                      for name in ("a", "b")])
    with engine.begin() as conn:
        conn.execute(table.insert().from_select(["a", "b"], sa.select(
            sa.func.generate_series(1, 50_000).label("a"), sa.literal(1))))
        conn.exec_driver_sql("ANALYZE cells")
    columns = list(table.primary_key.columns)
    query = next_page(sa.select(*columns), columns, (40_000, 1), 5000)
    with engine.connect() as conn:
        plan = "\n".join(conn.execute(sa.text("EXPLAIN " + str(query.compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True})))).scalars())
    assert "Index Cond: (a >= 40000)" in plan, plan
