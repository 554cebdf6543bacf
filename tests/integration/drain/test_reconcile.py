"""Reconcile: counts what differs between mirror and source, repairs it when asked."""

from __future__ import annotations

import datetime as dt
import decimal

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, reflect
from airflow_provider_pdr.core.reconcile import reconcile
from tests.support.tables import create, orders, table_rows, write


def mirrored(source, destination, count=20):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": decimal.Decimal(i) / 4} for i in range(count)])
    reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True))
    return table, sa.Table("mirror", sa.MetaData(), autoload_with=destination)


def test_an_exact_mirror_has_no_difference(source, destination):
    mirrored(source, destination)
    result = reconcile(source, destination, ReflectionSpec("orders", "mirror"), chunk_size=6)
    assert (result.checked, result.differing, result.pending, result.repaired) == (20, 0, 0, 0)


def test_differences_are_counted_and_repaired(source, destination):
    _, mirror = mirrored(source, destination)
    write(destination, mirror.delete().where(mirror.c.id.in_([3, 17])))
    write(destination, mirror.update().where(mirror.c.id == 5).values(amount=99))
    write(destination, mirror.update().where(mirror.c.id == 6).values(note=None))
    write(destination, mirror.insert(), [{"id": 100, "note": "ghost"}])
    found = reconcile(source, destination, ReflectionSpec("orders", "mirror"), chunk_size=6)
    assert (found.missing, found.different, found.extra, found.differing) == (2, 2, 1, 5)
    assert "missing: id=3" in found.samples
    assert table_rows(destination, "mirror") != table_rows(source, "orders"), "reporting changes nothing"
    fixed = reconcile(source, destination, ReflectionSpec("orders", "mirror"), chunk_size=6, repair=True)
    assert fixed.repaired == 5
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert reconcile(source, destination, ReflectionSpec("orders", "mirror")).differing == 0


def test_pending_changes_are_not_differences(engine, databases):
    destination = databases.new("sqlite")
    table, _ = mirrored(engine, destination)
    write(engine, table.update().where(table.c.id == 1).values(note="new"))
    write(engine, table.delete().where(table.c.id == 2))
    write(engine, table.insert(), [{"id": 50}])
    result = reconcile(engine, destination, ReflectionSpec("orders", "mirror"), repair=True)
    assert (result.differing, result.pending) == (0, 3)
    reflect(engine, destination, ReflectionSpec("orders", "mirror"))
    assert table_rows(destination, "mirror") == table_rows(engine, "orders")


def test_time_zones_and_text_keys_compare_as_equal_values(source, destination):
    table = create(
        source, "events",
        sa.Column("code", sa.String(10), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("flag", sa.Boolean),
        sa.Column("ratio", sa.Double),
    )
    install_channel(source, "events", "events")
    tz = dt.timezone(dt.timedelta(hours=5))
    write(source, table.insert(), [
        {"code": "a", "at": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=tz), "flag": True, "ratio": 0.1},
        {"code": "B", "at": None, "flag": False, "ratio": 1e300},
        {"code": "b", "at": dt.datetime(2000, 2, 29, tzinfo=dt.timezone.utc), "flag": None, "ratio": -2.5},
    ])
    reflect(source, destination, ReflectionSpec("events", create_table=True))
    assert reconcile(source, destination, ReflectionSpec("events")).differing == 0
