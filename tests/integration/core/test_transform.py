"""Transforms: renamed, dropped and computed fields, key binding, row filters, many sources into
one table, custom statements; and the validation errors a YAML user sees."""

from __future__ import annotations

import decimal

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ConfigurationError, ReflectionSpec, install_channel, reflect
from airflow_provider_pdr.core.reconcile import reconcile
from airflow_provider_pdr.core.snapshot import snapshot
from airflow_provider_pdr.core.transform import ColumnSpec, ColumnMapping
from tests.support.tables import create, orders, table_rows, write


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({"colour": 1}, r"reflections.orders: unknown keys \['colour'\]"),
    ({"fields": [{"name": "a", "source": "x", "expression": "1"}]}, r"fields\[0\] \('a'\): give 'source' or 'expression'"),
    ({"fields": ["a", "a"]}, r"fields\[1\]: destination column 'a' is listed twice"),
    ({"fields": [{"name": "a", "expression": "1", "type": "blob(3)"}]}, r"fields\[0\] \('a'\): type 'blob\(3\)'"),
    ({"fields": [{"a": "x", "b": "y"}]}, r"fields\[0\]: expected a column name"),
    ({"fields": ["a"], "exclude": ["b"]}, r"'exclude' applies only when no 'fields'"),
    ({"on_delete": "wipe"}, r"on_delete: 'wipe' is not one of delete, nullify, keep"),
    ({"filter": ""}, r"filter: must be a non-empty SQL string"),
    ({"key": [1]}, r"key: expected a list of column names"),
    ({"evolve": "yes"}, r"evolve: must be true or false"),
])
def test_invalid_mappings_name_the_key(data, message):
    with pytest.raises(ConfigurationError, match=message):
        ColumnMapping.from_dict(data, "reflections.orders")


def test_a_plain_mapping_from_yaml_data():
    mapping = ColumnMapping.from_dict({
        "fields": ["id", {"label": "note"}, {"name": "twice", "expression": "amount * 2", "type": "numeric(14, 2)"}],
        "filter": "amount > 0", "on_delete": "nullify", "key": "id",
    })
    assert mapping.fields == (ColumnSpec("id"), ColumnSpec("label", source="note"),
                              ColumnSpec("twice", expression="amount * 2", type="numeric(14, 2)"))
    assert (mapping.key, mapping.on_delete) == (("id",), "nullify")


def test_mapping_errors_against_the_table_name_the_column(databases):
    source, destination = databases.new("sqlite"), databases.new("sqlite")
    orders(source)
    install_channel(source, "orders", "orders")
    for mapping, message in [
        (ColumnMapping(fields=(ColumnSpec("x", source="nope"),)), r"field 'x': source table 'orders' has no column 'nope'"),
        (ColumnMapping(fields=(ColumnSpec("id", expression="id + 1"),)), r"key: destination column 'id' must copy"),
        (ColumnMapping(fields=(ColumnSpec("t", expression="1"),)), r"field 't' is computed: give it a 'type'"),
        (ColumnMapping(upsert_statement="UPDATE m SET a = :bogus"), r"upsert_statement: parameters \['bogus'\]"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            reflect(source, destination, ReflectionSpec("orders", "m", create_table=True, mapping=mapping))


# -- fields and key binding -------------------------------------------------------------------
RESHAPE = ColumnMapping(fields=(
    ColumnSpec("order_id", source="id"),
    ColumnSpec("label", source="note"),
    ColumnSpec("doubled", expression="amount * 2", type="numeric(14, 2)"),
))


def test_rename_drop_compute_and_bind_the_key(source, destination):
    table = orders(source)
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": decimal.Decimal("1.25") * i} for i in range(6)])
    install_channel(source, "orders", "orders")
    spec = ReflectionSpec("orders", "shaped", mapping=RESHAPE, create_table=True)
    assert snapshot(source, destination, spec).copied == 6
    write(source, table.update().where(table.c.id == 1).values(note="one", amount=10))
    write(source, table.update().where(table.c.id == 2).values(id=20))
    write(source, table.delete().where(table.c.id == 3))
    reflect(source, destination, ReflectionSpec("orders", "shaped", mapping=RESHAPE))
    columns = [c["name"] for c in sa.inspect(destination).get_columns("shaped")]
    assert columns == ["order_id", "label", "doubled"], "amount is dropped"
    expected = [(r[0], r[1], r[2] * 2) for r in table_rows(source, "orders")]
    assert table_rows(destination, "shaped") == expected
    assert reconcile(source, destination, ReflectionSpec("orders", "shaped", mapping=RESHAPE)).differing == 0


def test_exclude_drops_columns(engine, databases):
    destination = databases.new("sqlite")
    table = orders(engine)
    install_channel(engine, "orders", "orders")
    write(engine, table.insert(), [{"id": 1, "note": "secret", "amount": 3}])
    reflect(engine, destination, ReflectionSpec("orders", "m", create_table=True, mapping=ColumnMapping(exclude=("note",))))
    assert table_rows(destination, "m") == [(1, decimal.Decimal("3.00"))]


# -- row filters ------------------------------------------------------------------------------
def test_a_row_that_stops_matching_the_filter_leaves_the_mirror(source, destination):
    table = orders(source)
    write(source, table.insert(), [{"id": i, "amount": i} for i in range(10)])
    install_channel(source, "orders", "orders")
    big = ColumnMapping(filter="amount >= 5")
    snapshot(source, destination, ReflectionSpec("orders", "big", mapping=big, create_table=True))
    assert [r[0] for r in table_rows(destination, "big")] == [5, 6, 7, 8, 9]
    write(source, table.update().where(table.c.id == 7).values(amount=1))  # stops matching
    write(source, table.update().where(table.c.id == 2).values(amount=50))  # starts matching
    write(source, table.update().where(table.c.id == 8).values(amount=None))  # NULL matches nothing
    reflect(source, destination, ReflectionSpec("orders", "big", mapping=big))
    assert [r[0] for r in table_rows(destination, "big")] == [2, 5, 6, 9]
    assert reconcile(source, destination, ReflectionSpec("orders", "big", mapping=big)).differing == 0
    mirror = sa.Table("big", sa.MetaData(), autoload_with=destination)
    write(destination, mirror.insert(), [{"id": 1, "amount": 1}])  # a row outside the filter
    assert snapshot(source, destination, ReflectionSpec("orders", "big", mapping=big), resync=True).removed == 1
    assert [r[0] for r in table_rows(destination, "big")] == [2, 5, 6, 9]


# -- many sources into one table ----------------------------------------------------------------
def test_several_sources_fill_disjoint_columns_of_one_table(source, databases):
    second = databases.new("mysql" if source.dialect.name == "sqlite" else "sqlite")
    destination = databases.new("postgresql")
    names = create(source, "customers", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("name", sa.String(40)))
    scores = create(second, "scores", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("score", sa.Integer))
    install_channel(source, "names", "customers")
    install_channel(second, "scores", "scores")
    keep_row = ColumnMapping(on_delete="nullify")
    write(source, names.insert(), [{"id": i, "name": f"c{i}"} for i in range(1, 5)])
    write(second, scores.insert(), [{"id": i, "score": i * 10} for i in range(3, 7)])
    reflect(source, destination, ReflectionSpec("names", "people", create_table=True, mapping=keep_row))
    reflect(second, destination, ReflectionSpec("scores", "people", create_table=True, mapping=keep_row))
    assert table_rows(destination, "people") == [
        (1, "c1", None), (2, "c2", None), (3, "c3", 30), (4, "c4", 40), (5, None, 50), (6, None, 60)]

    write(second, scores.delete().where(scores.c.id == 3))  # clears the score only
    write(second, scores.update().where(scores.c.id == 4).values(score=41))  # leaves the name alone
    write(source, names.update().where(names.c.id == 4).values(name="four"))
    reflect(second, destination, ReflectionSpec("scores", "people", mapping=keep_row))
    reflect(source, destination, ReflectionSpec("names", "people", mapping=keep_row))
    assert table_rows(destination, "people")[2:4] == [(3, "c3", None), (4, "four", 41)]

    write(source, names.delete().where(names.c.id.in_([1, 2])))
    # configured: delete rows
    reflect(source, destination, ReflectionSpec("names", "people", mapping=ColumnMapping(on_delete="delete")))
    assert [r[0] for r in table_rows(destination, "people")] == [3, 4, 5, 6]
    assert reconcile(second, destination, ReflectionSpec("scores", "people", mapping=keep_row)).differing == 0
    assert reconcile(source, destination, ReflectionSpec("names", "people", mapping=keep_row)).differing == 0


# -- custom statements ------------------------------------------------------------------------
@pytest.mark.parametrize("destination", ["sqlite", "postgresql"], indirect=True)
def test_custom_statements_with_bound_parameters(engine, destination):
    table = orders(engine)
    install_channel(engine, "orders", "orders")
    create(destination, "audit", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100)), sa.Column("amount", sa.Numeric(12, 2)),
           sa.Column("deleted", sa.Integer, nullable=False))
    soft = ColumnMapping(
        upsert_statement="INSERT INTO audit (id, note, amount, deleted) VALUES (:id, :note, :amount, 0) "
                         "ON CONFLICT (id) DO UPDATE SET note = excluded.note, amount = excluded.amount, deleted = 0",
        delete_statement="UPDATE audit SET deleted = 1 WHERE id = :id",
    )
    write(engine, table.insert(), [{"id": 1, "note": "it's; DROP TABLE audit; --", "amount": 2},
                                   {"id": 2, "note": ":note", "amount": 3}])
    reflect(engine, destination, ReflectionSpec("orders", "audit", mapping=soft))
    write(engine, table.delete().where(table.c.id == 1))
    reflect(engine, destination, ReflectionSpec("orders", "audit", mapping=soft))
    assert table_rows(destination, "audit") == [
        (1, "it's; DROP TABLE audit; --", decimal.Decimal("2.00"), 1), (2, ":note", decimal.Decimal("3.00"), 0)]
