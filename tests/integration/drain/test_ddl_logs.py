"""The destination DDL a reflect runs is logged: the table, its columns and their engine types."""

from __future__ import annotations

import logging

from airflow_provider_pdr.core import ReflectionSpec, install_channel, reflect
from airflow_provider_pdr.core.transform import ColumnMapping
from tests.support.databases import q
from tests.support.tables import orders, write


def ddl_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "airflow_provider_pdr.core.drain.destination"]


def test_creating_the_table_and_adding_columns_are_logged_with_their_types(databases, caplog):
    source, destination = databases.new("postgresql"), databases.new("mysql")
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": 1, "note": "a", "amount": 1}])
    caplog.set_level(logging.INFO, logger="airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True))
    assert ddl_lines(caplog) == [
        "destination table 'mirror': created with columns id INTEGER(11), note VARCHAR(100), amount DECIMAL(12, 2)"]
    caplog.clear()
    with source.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {q(source, 'orders')} ADD region VARCHAR(20), ADD seen TIMESTAMP")
    reflect(source, destination, ReflectionSpec("orders", "mirror", mapping=ColumnMapping(evolve=True)))
    assert ddl_lines(caplog) == [
        "destination table 'mirror': added columns region VARCHAR(20) COLLATE utf8mb4_bin, seen DATETIME(6)"]
