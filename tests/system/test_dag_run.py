"""End to end: a DAG run installs a channel, the sensor defers until rows arrive, reflect mirrors them."""

from __future__ import annotations


import importlib.util
import os
import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.support.tables import orders, table_rows, write

pytestmark = pytest.mark.airflow


def write_when_installed(source: sa.Engine, table: sa.Table, change_table: str, delay: float = 1.0):
    """Writes rows from a thread once the channel exists, so the sensor has found nothing and deferred."""
    errors = []

    def run():
        try:
            deadline = time.monotonic() + 60
            while not sa.inspect(source).has_table(change_table) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(delay)
            write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i * 1.5} for i in range(1, 6)])
            write(source, table.update().where(table.c.id == 2).values(note="changed"))
            write(source, table.delete().where(table.c.id == 3))
        except Exception as error:  # surfaced by the test
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


DAG_FILE = """
from airflow.sdk import DAG

from airflow_provider_pdr.operators import InstallTriggersOperator, ReflectOperator
from airflow_provider_pdr.sensors import PendingChangesSensor

with DAG({dag_id!r}, schedule=None, catchup=False) as dag:
    install = InstallTriggersOperator(task_id="install", source_conn_id="pdr_src", source_table="orders",
                                      channel="orders_mirror")
    wait = PendingChangesSensor(task_id="wait", source_conn_id="pdr_src", channel="orders_mirror",
                                min_changes=5, deferrable=True, poke_interval=0.5, timeout=120)
    copy = ReflectOperator(task_id="reflect", source_conn_id="pdr_src", channel="orders_mirror",
                           source_table="orders", destination_conn_id="pdr_dst",
                           destination_table="orders_copy", create_table=True, time_budget=5)
    install >> wait >> copy
"""


@pytest.fixture
def dag_file(airflow_db):
    """dag_file(dag_id): write the DAG file into the dags folder (dag.test() needs it parsed from a
    bundle) and load it; afterwards the file and the DAG's records leave the shared metadata db."""
    written = []

    def load(dag_id: str):
        path = os.path.join(airflow_db, "dags", f"{dag_id}.py")
        with open(path, "w") as handle:
            handle.write(DAG_FILE.format(dag_id=dag_id))
        written.append((dag_id, path))
        spec = importlib.util.spec_from_file_location(dag_id, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag

    yield load
    from airflow.api.common.delete_dag import delete_dag

    for dag_id, path in written:
        os.remove(path)
        delete_dag(dag_id, keep_records_in_log=False)


@pytest.mark.parametrize("pair", [("sqlite", "sqlite"), ("postgresql", "mysql")], ids=lambda p: "-".join(p))
def test_dag_mirrors_changes(pair, databases, connect, dag_file, caplog):
    source, destination = databases.new(pair[0]), databases.new(pair[1])
    table = orders(source)
    connect("pdr_src", source)
    connect("pdr_dst", destination)
    dag = dag_file(f"pdr_e2e_{pair[0]}_{pair[1]}")
    thread, errors = write_when_installed(source, table, "pdr_c_orders_mirror")
    run = dag.test()
    thread.join(30)
    assert not errors
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"install": "success", "wait": "success", "reflect": "success"}
    assert asset_event_extras("pdr://pdr_dst/orders_copy")[-1]["upserted"] == 4  # downstream DAGs can see it
    assert "running trigger in line" in caplog.text  # the sensor found too few changes and deferred
    assert exact(table_rows(destination, "orders_copy")) == exact(table_rows(source, "orders"))
    assert exact(table_rows(destination, "orders_copy")) == [
        (1, "n1", Decimal("1.50")), (2, "changed", Decimal("3.00")), (4, "n4", Decimal("6.00")),
        (5, "n5", Decimal("7.50")),
    ]


def asset_event_extras(uri: str) -> list[dict]:
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel

    with settings.Session() as session:
        events = session.scalars(
            sa.select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri).order_by(AssetEvent.id)
        )
        return [event.extra for event in events]


def exact(rows: list[tuple]) -> list[tuple]:
    """Amounts as Decimal: SQLite mirrors keep decimals as exact text."""
    return [(id_, note, Decimal(str(amount))) for id_, note, amount in rows]
