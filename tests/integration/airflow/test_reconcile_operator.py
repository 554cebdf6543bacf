"""ReflectOperator's initial load and full refresh, and ReconcileOperator, as a user calls them."""

from __future__ import annotations


import json

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ConfigurationError, install_channel
from airflow_provider_pdr.operators import ReconcileOperator, ReflectOperator
from airflow_provider_pdr.operators.reconcile import DifferenceFound
from tests.support.tables import orders, table_rows, write


@pytest.mark.parametrize("pair", [("postgresql", "mysql"), ("sqlite", "postgresql")], ids=lambda p: "-".join(p))
def test_initial_load_reconcile_and_full_refresh(pair, databases, connect):
    source, destination = databases.new(pair[0]), databases.new(pair[1])
    table = orders(source)
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i} for i in range(1, 8)])
    install_channel(source, "orders", "orders")
    src, dst = connect("src", source), connect("dst", destination)
    reflect = ReflectOperator(task_id="reflect", source_conn_id=src, channel="orders", destination_conn_id=dst,
                              destination_table="mirror", create_table=True, initial_load=True, batch_size=3)
    assert reflect.execute({})["copied"] == 7
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert reflect.execute({})["copied"] == 0, "the initial load runs once"

    mirror = sa.Table("mirror", sa.MetaData(), autoload_with=destination)
    write(destination, mirror.insert(), [{"id": 99, "note": "ghost"}])
    write(destination, mirror.update().where(mirror.c.id == 2).values(note="tampered"))
    check = dict(task_id="check", source_conn_id=src, channel="orders", destination_conn_id=dst,
                 destination_table="mirror", chunk_size=4)
    found = ReconcileOperator(**check).execute({})
    assert (found["differing"], found["different"], found["extra"], found["repaired"]) == (2, 1, 1, 0)
    json.dumps(found)  # XCom-serializable as is
    with pytest.raises(DifferenceFound, match="2 rows of 'mirror' differ"):
        ReconcileOperator(fail_on_difference=True, **check).execute({})

    refreshed = reflect.execute({"params": {"full_refresh": True}})
    assert (refreshed["copied"], refreshed["removed"]) == (7, 1)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    write(destination, mirror.delete().where(mirror.c.id == 3))
    assert ReconcileOperator(repair=True, **check).execute({})["repaired"] == 1
    assert ReconcileOperator(**check).execute({})["differing"] == 0


def test_a_bad_mapping_fails_when_the_dag_is_parsed():
    with pytest.raises(ConfigurationError, match=r"task 'r': mapping.on_delete: 'drop' is not one of"):
        ReflectOperator(task_id="r", source_conn_id="s", channel="c", destination_conn_id="d",
                        destination_table="t", mapping={"on_delete": "drop"})
