"""Config files -> Airflow DAGs, in this process: every key passed on, broken files raised."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_pdr.factory import ConfigError, load_configs, raise_config_errors, register_dags
from airflow_provider_pdr.factory.dags import build_dags
from tests.support.configs import BAD, GOOD, write


def test_one_dag_per_reflection_with_every_key_passed_on(tmp_path):
    dags, errors = build_dags(load_configs([write(tmp_path, "good.yaml", GOOD)], env={}))
    assert errors == [] and sorted(dags) == ["pdr_customers", "pdr_manual", "pdr_orders"]

    orders = dags["pdr_orders"]
    assert [(t.task_id, sorted(t.upstream_task_ids)) for t in orders.tasks] == [
        ("install_triggers", []), ("wait_for_changes", ["install_triggers"]), ("reflect", ["wait_for_changes"])]
    install, wait, reflect = (orders.get_task(t) for t in ("install_triggers", "wait_for_changes", "reflect"))
    assert (install.source_conn_id, install.source_table, install.source_schema, install.channel) == (
        "src", "orders", "sales", "orders")
    assert (wait.source_conn_id, wait.channel, wait.min_changes, wait.max_wait, wait.deferrable) == (
        "src", "orders", 50, timedelta(seconds=20), True)
    assert (wait.poke_interval, wait.timeout, wait.soft_fail, reflect.time_budget) == (5, 600, True, 120)
    assert (reflect.source_conn_id, reflect.source_table, reflect.channel, reflect.destination_conn_id,
            reflect.destination_table, reflect.destination_schema, reflect.batch_size, reflect.deletes,
            reflect.create_table) == ("src", "orders", "orders", "dst", "orders_copy", "mirror", 100, False, True)
    assert (reflect.owner, reflect.retries, reflect.on_failure_callback) == ("data-team", 5, [print])
    assert orders.max_active_runs == 1 and type(orders.timetable).__name__ == "ContinuousTimetable"
    assert set(orders.tags) == {"pdr", "sales"} and "orders_copy" in orders.doc_md

    customers = dags["pdr_customers"]
    assert type(customers.timetable).__name__ == "CronTriggerTimetable"
    assert customers.get_task("wait_for_changes").deferrable is False
    assert customers.get_task("reflect").deletes is True  # the default
    manual = dags["pdr_manual"]
    assert type(manual.timetable).__name__ == "NullTimetable"
    assert manual.get_task("reflect").channel == "manual_v2"


def test_dag_files_keep_good_dags_and_raise_for_broken_files(tmp_path, monkeypatch):
    write(tmp_path, "a_good.yaml", GOOD)
    bad = write(tmp_path, "b_bad.yaml", BAD)
    monkeypatch.setenv("PDR_CONFIG_DIR", str(tmp_path))
    namespace: dict = {}
    assert sorted(register_dags(namespace, default_dir="/nowhere")) == ["pdr_customers", "pdr_manual", "pdr_orders"]
    assert sorted(namespace) == ["pdr_customers", "pdr_manual", "pdr_orders"]
    with pytest.raises(ConfigError) as raised:
        raise_config_errors(default_dir="/nowhere")
    assert raised.value.errors == [
        f"{bad}:3: reflection 'broken': key 'batch_sise': unknown key; did you mean 'batch_size'?"]

    monkeypatch.setenv("PDR_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="folder does not exist"):
        raise_config_errors(default_dir="/nowhere")
