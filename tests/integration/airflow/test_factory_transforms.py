"""Transforms, initial load, full refresh and reconcile from a YAML reflection file."""

from __future__ import annotations


import textwrap

from airflow_provider_pdr.core.transform import ColumnSpec, ColumnMapping
from airflow_provider_pdr.factory import load_configs
from airflow_provider_pdr.factory.dags import build_dags
from airflow_provider_pdr.sensors import PendingChangesSensor

CONFIG = """
reflections:
  - name: orders
    source: {conn_id: src, table: orders}
    destination: {conn_id: dst, table: orders_copy}
    mapping:
      fields:
        - id
        - {label: note}
        - {name: twice, expression: "amount * 2", type: "numeric(14, 2)"}
      filter: "amount > 0"
      on_delete: nullify
    reconcile: {schedule: "@daily", repair: true, chunk_size: 100}
    on_failure_callback: builtins.print
  - name: plain
    initial_load: false
    source: {conn_id: src, table: plain}
    destination: {conn_id: dst, table: plain}
"""


def load(tmp_path, text):
    path = tmp_path / "reflections.yaml"
    path.write_text(textwrap.dedent(text))
    return load_configs([path], env={})


def test_mapping_initial_load_and_reconcile_reach_the_tasks(tmp_path):
    dags, errors = build_dags(load(tmp_path, CONFIG))
    assert errors == [] and sorted(dags) == ["pdr_orders", "pdr_orders_reconcile", "pdr_plain"]
    reflect = dags["pdr_orders"].get_task("reflect")
    assert reflect.mapping == ColumnMapping(
        fields=(ColumnSpec("id"), ColumnSpec("label", source="note"),
                ColumnSpec("twice", expression="amount * 2", type="numeric(14, 2)")),
        filter="amount > 0", on_delete="nullify")
    assert reflect.initial_load is True and dags["pdr_plain"].get_task("reflect").initial_load is False
    assert dags["pdr_orders"].params["full_refresh"] is False
    check = dags["pdr_orders_reconcile"].get_task("reconcile")
    assert (check.channel, check.destination_table, check.repair, check.chunk_size) == ("orders", "orders_copy", True, 100)
    assert check.mapping == reflect.mapping
    assert check.on_failure_callback == reflect.on_failure_callback == [print], "reconcile alerts too"
    assert type(dags["pdr_orders_reconcile"].timetable).__name__ == "CronTriggerTimetable"


def test_bad_mapping_keys_are_reported_with_file_and_line(tmp_path):
    bad = CONFIG.replace("on_delete: nullify", "on_delete: wipe").replace('"@daily"', '"often"')
    (config,) = load(tmp_path, bad)
    assert not config.ok
    assert any(":12: reflection 'orders': key 'mapping.on_delete': " in e and "'wipe'" in e  # at its own line
               for e in config.errors), config.errors
    assert any("key 'reconcile.schedule': 'often' is not a cron expression" in e for e in config.errors), config.errors


def test_a_full_refresh_run_does_not_wait_for_changes():
    sensor = PendingChangesSensor(task_id="wait", source_conn_id="nowhere", channel="orders")
    assert sensor.execute({"params": {"full_refresh": True}}) == 0  # never reaches the (missing) connection
