"""Operators, sensor, hooks and provider registration, called as a user would outside a DAG run:
connections from AIRFLOW_CONN_* variables and execute() on an empty context."""

from __future__ import annotations


import json
import logging
import os
import re
import subprocess
import sys
import time
from decimal import Decimal

import jinja2
import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_pdr.core import ChannelNotFoundError, ConfigurationError, pending_changes
from airflow_provider_pdr.hooks import FirebirdHook, PdrHook
from airflow_provider_pdr.operators import InstallTriggersOperator, ReflectOperator, UninstallTriggersOperator
from airflow_provider_pdr.sensors import PendingChangesSensor
from airflow_provider_pdr.triggers import PendingChangesTrigger
from tests.support.tables import orders, table_rows, write

SECRET = "pdr-Secret-9f3k"


def install(conn_id: str, table: str = "orders", channel: str = "orders") -> dict:
    return InstallTriggersOperator(task_id="install", source_conn_id=conn_id, source_table=table,
                                   channel=channel).execute({})


def rows(*ids: int) -> list[dict]:
    return [{"id": i, "note": f"n{i}", "amount": Decimal(i) / 4} for i in ids]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql"])
def test_install_is_idempotent_and_uninstall_removes(kind, databases, connect):
    source = databases.new(kind)
    orders(source)
    src = connect("src", source)
    first = install(src)
    assert first == install(src)
    assert first["channel"] == "orders" and first["key_columns"] == ["id"]
    assert first["change_table"] in sa.inspect(source).get_table_names()
    assert UninstallTriggersOperator(task_id="u", source_conn_id=src, channel="orders").execute({}) == {
        "channel": "orders", "removed": True}
    assert UninstallTriggersOperator(task_id="u", source_conn_id=src, channel="orders").execute({}) == {
        "channel": "orders", "removed": False}
    with pytest.raises(ChannelNotFoundError):
        pending_changes(source, "orders")


@pytest.mark.parametrize("pair", [("sqlite", "postgresql"), ("mysql", "sqlite")], ids=lambda p: "-".join(p))
def test_reflect_operator_mirrors_and_reports(pair, databases, connect):
    source, destination = databases.new(pair[0]), databases.new(pair[1])
    table = orders(source)
    src, dst = connect("src", source), connect("dst", destination)
    install(src)
    write(source, table.insert(), rows(*range(1, 12)))
    write(source, table.delete().where(table.c.id == 5))
    op = ReflectOperator(task_id="reflect", source_conn_id=src, channel="orders", source_table="orders",
                         destination_conn_id=dst, destination_table="mirror", create_table=True, batch_size=4)
    summary = op.execute({})
    times = {field: summary.pop(field) for field in ("seconds", "reading_seconds", "writing_seconds")}
    assert summary == {"upserted": 10, "deleted": 0, "batches": 3, "changes": 12, "copied": 0, "drained": True,
                       "lag_seconds": 0.0}
    assert 0 < times["reading_seconds"] <= times["seconds"] and 0 < times["writing_seconds"] <= times["seconds"]
    assert [(i, note, Decimal(str(amount))) for i, note, amount in table_rows(destination, "mirror")] == [
        (r["id"], r["note"], r["amount"]) for r in rows(*range(1, 12)) if r["id"] != 5]
    write(source, table.delete().where(table.c.id.in_([1, 2])))
    assert op.execute({})["deleted"] == 2
    assert [r[0] for r in table_rows(destination, "mirror")] == [3, 4, 6, 7, 8, 9, 10, 11]
    json.dumps(summary)  # XCom-serializable as is


TIMING = r"in \d+\.\d\ds \(reading the source \d+\.\d\ds, writing the destination \d+\.\d\ds\)"


def logged(run) -> tuple[object, list[str]]:
    """What `run()` returns, and the operator's log lines at INFO and above."""
    with capture_logs() as events:
        value = run()
    return value, [e["event"] for e in events if e["log_level"] not in ("debug", "trace")]


def test_reflect_logs_one_summary_per_run_with_the_xcom_counts(databases, connect, caplog):
    source, destination = databases.new("postgresql"), databases.new("mysql")
    table = orders(source)
    write(source, table.insert(), rows(1, 2, 3, 4))
    src, dst = connect("src", source), connect("dst", destination)
    install(src)
    write(source, table.update().where(table.c.id == 2).values(note="changed"))
    caplog.set_level(logging.INFO)
    op = ReflectOperator(task_id="reflect", source_conn_id=src, channel="orders", destination_conn_id=dst,
                         destination_table="mirror", create_table=True, initial_load=True)
    summary, lines = logged(lambda: op.execute({}))
    assert {k: summary[k] for k in ("copied", "upserted", "deleted", "changes", "batches", "lag_seconds")} == {
        "copied": 4, "upserted": 1, "deleted": 0, "changes": 1, "batches": 1, "lag_seconds": 0.0}
    with PdrHook(dst) as hook:
        where = hook.describe()
    [line] = [line for line in lines if "upserted" in line]  # one summary, from the operator alone
    assert re.fullmatch(re.escape(f"channel 'orders' -> 'mirror' in {where}: copied 4, upserted 1, deleted 0, "
                                  "changes 1, batches 1, lag 0.000s, ") + TIMING, line)
    assert "upserted" not in caplog.text  # the core's own per-call line is DEBUG
    assert [r.getMessage() for r in caplog.records] == [
        "destination table 'mirror': created with columns id INTEGER(11), note VARCHAR(100), amount DECIMAL(12, 2)"]
    assert not any("://" in text for text in [*lines, caplog.text])


def test_a_full_refresh_states_what_it_removed_in_the_one_summary(databases, connect, caplog):
    source, destination = databases.new("sqlite"), databases.new("sqlite")
    table = orders(source)
    src, dst = connect("src", source), connect("dst", destination)
    install(src)
    write(source, table.insert(), rows(1, 2, 3))
    op = ReflectOperator(task_id="reflect", source_conn_id=src, channel="orders", destination_conn_id=dst,
                         destination_table="mirror", create_table=True)
    op.execute({})
    write(destination, sa.text("INSERT INTO mirror (id, note, amount) VALUES (9, 'stray', 0)"))
    caplog.set_level(logging.INFO)
    caplog.clear()
    summary, lines = logged(lambda: op.execute({"params": {"full_refresh": True}}))
    assert (summary["copied"], summary["removed"], summary["upserted"], summary["changes"]) == (3, 1, 0, 0)
    [line] = [line for line in lines if "upserted" in line]
    assert re.fullmatch(re.escape(f"channel 'orders' -> 'mirror' in connection {dst!r} (sqlite "
                                  f"{destination.url.database}): copied 3, upserted 0, deleted 0, changes 0, "
                                  "batches 0, lag 0.000s, removed 1, ") + TIMING, line)
    assert "removed" not in caplog.text and "copied" not in caplog.text  # the core's own lines are DEBUG


def test_reflect_stops_at_its_time_budget_and_reports_the_rest(databases, connect):
    source, destination = databases.new("sqlite"), databases.new("sqlite")
    table = orders(source)
    src, dst = connect("src", source), connect("dst", destination)
    install(src)
    write(source, table.insert(), rows(1, 2, 3, 4, 5))
    op = ReflectOperator(task_id="reflect", source_conn_id=src, channel="orders", destination_conn_id=dst,
                         destination_table="mirror", create_table=True, batch_size=2, time_budget=0)
    summary = op.execute({})
    assert (summary["batches"], summary["changes"], summary["drained"]) == (1, 2, False)
    assert summary["lag_seconds"] >= 0
    assert pending_changes(source, "orders").count == 3
    op.time_budget = 60
    assert op.execute({})["changes"] == 3
    assert [r[0] for r in table_rows(destination, "mirror")] == [1, 2, 3, 4, 5]


def test_reflect_declares_the_destination_asset(databases):
    op = ReflectOperator(task_id="r", source_conn_id="src", channel="c", destination_conn_id="warehouse",
                         destination_table="Orders Mirror", destination_schema="sales")
    assert op.outlets == [Asset(uri="pdr://warehouse/sales/Orders%20Mirror", group="pdr")]
    plain = ReflectOperator(task_id="r", source_conn_id="src", channel="c", destination_conn_id="wh",
                            destination_table="orders")
    assert [a.uri for a in plain.outlets] == ["pdr://wh/orders"]
    templated = ReflectOperator(task_id="r", source_conn_id="src", channel="c", destination_conn_id="wh",
                                destination_table="{{ params.table }}")
    assert templated.outlets == []
    with pytest.raises(ValueError, match="pdr://<connection id>"):
        Asset(uri="pdr://wh/a/b/c")


def test_names_and_connection_ids_are_templated():
    op = ReflectOperator(task_id="r", source_conn_id="{{ params.src }}", channel="{{ params.channel }}",
                         destination_conn_id="{{ params.dst }}", destination_table="{{ params.table }}",
                         source_table="{{ params.source }}", destination_schema="{{ params.schema }}")
    params = {"src": "a", "channel": "b", "dst": "c", "table": "d", "source": "e", "schema": "f"}
    op.render_template_fields({"params": params}, jinja_env=jinja2.Environment())
    assert [op.source_conn_id, op.channel, op.destination_conn_id, op.destination_table, op.source_table,
            op.destination_schema] == list(params.values())
    install_op = InstallTriggersOperator(task_id="i", source_conn_id="{{ params.src }}",
                                         source_table="{{ params.source }}", channel="{{ params.channel }}")
    install_op.render_template_fields({"params": params}, jinja_env=jinja2.Environment())
    assert (install_op.source_conn_id, install_op.source_table, install_op.channel) == ("a", "e", "b")


def test_reflect_refuses_a_channel_of_another_table(databases, connect):
    source = databases.new("sqlite")
    orders(source)
    orders(source, "other")
    src = connect("src", source)
    install(src)
    op = ReflectOperator(task_id="r", source_conn_id=src, channel="orders", source_table="other",
                         destination_conn_id=src, destination_table="mirror", create_table=True)
    with pytest.raises(ConfigurationError, match="watches table 'orders', not 'other'"):
        op.execute({})


def test_sensor_pokes_and_pushes_the_count(databases, connect):
    source = databases.new("mysql")
    table = orders(source)
    src = connect("src", source)
    install(src)
    sensor = PendingChangesSensor(task_id="s", source_conn_id=src, channel="orders", min_changes=2)
    assert sensor.poke({}).is_done is False
    write(source, table.insert(), rows(1, 2, 3))
    assert (sensor.poke({}).is_done, sensor.poke({}).xcom_value) == (True, 3)
    assert sensor.execute({}) == 3  # not deferrable: plain poke loop, ready at once


def test_sensor_max_wait_accepts_a_few_old_changes(databases, connect):
    source = databases.new("sqlite")
    table = orders(source)
    src = connect("src", source)
    install(src)
    write(source, table.insert(), rows(1))
    from datetime import timedelta

    patient = PendingChangesSensor(task_id="s", source_conn_id=src, channel="orders", min_changes=50,
                                   max_wait=timedelta(hours=1))
    eager = PendingChangesSensor(task_id="s", source_conn_id=src, channel="orders", min_changes=50, max_wait=0)
    assert patient.poke({}).is_done is False
    assert eager.poke({}).is_done is True


def test_the_sensor_names_its_connection_and_says_when_it_defers(databases, connect):
    source = databases.new("sqlite")
    orders(source)
    src = connect("src", source)
    install(src)
    sensor = PendingChangesSensor(task_id="s", source_conn_id=src, channel="orders", min_changes=3,
                                  deferrable=True, poke_interval=5, timeout=600)
    with capture_logs() as events, pytest.raises(TaskDeferred):
        sensor.execute({})
    assert [e["event"] for e in events if e["log_level"] == "info"] == [
        "channel 'orders' in connection 'src': 0 changes pending (oldest 0.0s old), waiting for 3",
        "channel 'orders' in connection 'src': deferring to the triggerer, whose log says what it waits for "
        "and what wakes it",
    ]


def test_deferrable_sensor_defers_with_its_deadline_and_resumes(databases, connect):
    source = databases.new("sqlite")
    table = orders(source)
    src = connect("src", source)
    install(src)
    sensor = PendingChangesSensor(task_id="s", source_conn_id=src, channel="orders", min_changes=3,
                                  deferrable=True, poke_interval=5, timeout=600, max_wait=60)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, PendingChangesTrigger)
    assert (trigger.conn_id, trigger.channel, trigger.min_changes, trigger.max_wait, trigger.poll_interval) == (
        src, "orders", 3, 60.0, 5.0)
    assert before + 600 <= trigger.deadline <= time.time() + 600
    assert deferred.value.method_name == "execute_complete"
    assert sensor.execute_complete({}, {"status": "success", "pending": 4, "oldest_age_seconds": 1.0}) == 4
    with pytest.raises(AirflowSensorTimeout, match="timed out"):
        sensor.execute_complete({}, {"status": "timeout", "message": "channel 'orders': timed out"})
    with pytest.raises(AirflowException, match="boom"):
        sensor.execute_complete({}, {"status": "error", "message": "boom"})
    write(source, table.insert(), rows(1, 2, 3))
    assert sensor.execute({}) == 3  # enough already: no deferral


def test_sensor_timeout_after_deferral_honours_soft_fail():
    from airflow.sdk.exceptions import AirflowSkipException

    timeout = {"event": {"status": "timeout", "message": "channel 'orders': timed out waiting for changes"}}
    strict = PendingChangesSensor(task_id="s", source_conn_id="src", channel="orders")
    with pytest.raises(AirflowSensorTimeout, match="timed out waiting"):
        strict.resume_execution("execute_complete", timeout, {})
    lenient = PendingChangesSensor(task_id="s", source_conn_id="src", channel="orders", soft_fail=True)
    with pytest.raises(AirflowSkipException):
        lenient.resume_execution("execute_complete", timeout, {})


@pytest.mark.airflow
def test_default_deferrable_follows_airflow_config():
    code = ("from airflow_provider_pdr.sensors import PendingChangesSensor; "
            "print(PendingChangesSensor(task_id='s', source_conn_id='a', channel='b').deferrable)")
    env = dict(os.environ, AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE="True")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr
    assert PendingChangesSensor(task_id="s", source_conn_id="a", channel="b").deferrable is False


def test_passwords_stay_out_of_errors_and_descriptions(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "password": SECRET,
        "schema": "nowhere",
    }))
    with PdrHook("down") as hook:
        assert SECRET not in hook.describe() and SECRET not in repr(hook.engine.url)
    with pytest.raises(Exception) as failure:
        install("down")
    assert SECRET not in str(failure.value) and SECRET not in repr(failure.value)
    with pytest.raises(Exception) as failure:
        ReflectOperator(task_id="r", source_conn_id="down", channel="c", destination_conn_id="down",
                        destination_table="t").execute({})
    assert SECRET not in str(failure.value)
    assert "127.0.0.1" in caplog.text or "127.0.0.1" in str(failure.value)  # the logs/errors were captured
    assert SECRET not in caplog.text


def test_pdr_hook_refuses_non_sql_connections(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WEB", json.dumps({"conn_type": "http", "host": "example.com"}))
    with pytest.raises(ConfigurationError, match="'web'"):
        PdrHook("web").engine


def test_firebird_connection_type_builds_the_fdb_url(monkeypatch):
    from airflow.sdk import BaseHook

    monkeypatch.setenv("AIRFLOW_CONN_FB", json.dumps({
        "conn_type": "firebird", "host": "db.example", "port": 3051, "login": "SYSDBA", "password": SECRET,
        "schema": "/data/app.fdb", "extra": {"role": "READER"},
    }))
    hook = BaseHook.get_connection("fb").get_hook()
    assert isinstance(hook, FirebirdHook)
    assert hook.sqlalchemy_url.render_as_string(hide_password=True) == (
        "firebird+fdb://SYSDBA:***@db.example:3051//data/app.fdb?charset=UTF8&role=READER")
    assert PdrHook("fb").get_sqlalchemy_url() == hook.sqlalchemy_url


@pytest.mark.airflow
def test_airflow_lists_the_provider():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "airflow"), "providers", "list"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "airflow-provider-pdr" in result.stdout
    hooks = ProvidersManagerTaskRuntime().hooks  # what a task resolves a connection type with
    assert hooks["firebird"].hook_class_name == "airflow_provider_pdr.hooks.firebird.FirebirdHook"
    triggers = {info.trigger_class_name for info in ProvidersManager().trigger}
    assert "airflow_provider_pdr.triggers.pending" in triggers


def test_firebird_connection_reaches_a_real_server(databases, connect):
    firebird = databases.new("firebird")
    fb = connect("fb", firebird)
    hook = FirebirdHook(firebird_conn_id=fb)
    assert hook.test_connection() == (True, "Connection successfully tested")
    assert hook.get_first("SELECT 1 FROM RDB$DATABASE") == (1,)
    with PdrHook(fb) as pdr:
        assert pdr.module.name == "firebird"
        assert pdr.engine.url.database == firebird.url.database


def test_firebird_source_through_the_operators(databases, connect):
    source, destination = databases.new("firebird"), databases.new("sqlite")
    table = orders(source)
    src, dst = connect("src", source), connect("dst", destination)
    install(src)
    write(source, table.insert(), rows(1, 2, 3))
    write(source, table.delete().where(table.c.id == 2))
    summary = ReflectOperator(task_id="r", source_conn_id=src, channel="orders", destination_conn_id=dst,
                              destination_table="mirror", create_table=True).execute({})
    assert (summary["upserted"], summary["drained"]) == (2, True)
    assert [(i, note, Decimal(str(amount))) for i, note, amount in table_rows(destination, "mirror")] == [
        (1, "n1", Decimal("0.25")), (3, "n3", Decimal("0.75"))]


def test_firebird_wrong_password_is_reported_without_it(databases, monkeypatch):
    firebird = databases.new("firebird")
    url = firebird.url
    monkeypatch.setenv("AIRFLOW_CONN_FBBAD", json.dumps({
        "conn_type": "firebird", "host": url.host, "port": url.port, "login": url.username, "password": SECRET,
        "schema": url.database,
    }))
    ok, message = FirebirdHook(firebird_conn_id="fbbad").test_connection()
    assert ok is False and message
    assert SECRET not in message


def test_firebird_embedded_database_without_host(tmp_path, monkeypatch):
    import fdb

    path = str(tmp_path / "embedded.fdb")
    fdb.create_database(f"CREATE DATABASE '{path}' USER 'SYSDBA'").close()
    monkeypatch.setenv("AIRFLOW_CONN_EMBEDDED", json.dumps({"conn_type": "firebird", "login": "SYSDBA",
                                                            "schema": path}))
    assert FirebirdHook(firebird_conn_id="embedded").test_connection()[0] is True
    with PdrHook("embedded") as hook:
        assert hook.engine.url.host is None
        with hook.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1 FROM RDB$DATABASE")).scalar() == 1


def test_source_and_destination_schemas_on_postgres(databases, connect):
    source, destination = databases.new("postgresql"), databases.new("postgresql")
    for engine in (source, destination):
        with engine.begin() as conn:
            conn.exec_driver_sql('CREATE SCHEMA "Sales"')
    table = orders(source, "orders")
    with source.begin() as conn:
        conn.exec_driver_sql('ALTER TABLE orders SET SCHEMA "Sales"')
    table = table.to_metadata(sa.MetaData(), schema="Sales")
    src, dst = connect("src", source), connect("dst", destination)
    installed = InstallTriggersOperator(task_id="i", source_conn_id=src, source_table="orders",
                                        source_schema="Sales", channel="orders").execute({})
    assert installed["source_table"] == "Sales.orders"
    write(source, table.insert(), rows(1, 2))
    op = ReflectOperator(task_id="r", source_conn_id=src, channel="orders", destination_conn_id=dst,
                         destination_table="orders", destination_schema="Sales", create_table=True)
    assert [a.uri for a in op.outlets] == ["pdr://dst/Sales/orders"]
    assert op.execute({})["upserted"] == 2
    with destination.connect() as conn:
        assert conn.exec_driver_sql('SELECT id FROM "Sales".orders ORDER BY id').scalars().all() == [1, 2]
