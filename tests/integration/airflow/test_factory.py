"""Config files -> Airflow DAGs; broken files as import errors; the demo, end to end."""

from __future__ import annotations


import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_pdr.factory import ConfigError, load_configs, raise_config_errors, register_dags
from airflow_provider_pdr.factory.dags import build_dags

from tests.support import REPO
BIN = Path(sys.executable).parent

GOOD = """
defaults:
  source: {conn_id: src}
  destination: {conn_id: dst}
  on_failure_callback: builtins.print  # any importable callable taking the context
  tags: [sales]
reflections:
  - name: orders
    source: {table: orders, schema: sales}
    destination: {table: orders_copy, schema: mirror}
    batch_size: 100
    min_changes: 50
    max_wait: 20
    poke_interval: 5
    wait_timeout: 600
    time_budget: 120
    deletes: false
    create_table: true
    retries: 5
    owner: data-team
  - name: customers
    source: {table: customers}
    destination: {table: customers}
    schedule: "*/5 * * * *"
    deferrable: false
  - name: manual
    source: {table: t}
    destination: {table: t}
    channel: manual_v2
    schedule: null
"""
BAD = """
reflections:
  - {name: broken, source: {conn_id: src, table: b}, destination: {conn_id: dst, table: b}, batch_sise: 10}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name


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
    assert raised.value.errors == [f"{bad}:3: reflection 'broken': key 'batch_sise': unknown key"]

    monkeypatch.setenv("PDR_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="folder does not exist"):
        raise_config_errors(default_dir="/nowhere")


def airflow_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    return env | {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    } | extra


@pytest.fixture
def private_home(airflow_db, tmp_path):  # noqa: F811
    """A copy of the session's migrated metadata database: no migration cost, no shared state."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    # SQLite's backup API, not a file copy: it includes what still sits in the write-ahead log.
    with sqlite3.connect(Path(airflow_db) / "airflow.db") as shared, sqlite3.connect(home / "airflow.db") as copy:
        shared.backup(copy)
    return home


def airflow_json(env: dict, *commands: list[str]) -> list:
    """The JSON output of each `airflow` command, run side by side (each spends seconds importing Airflow)."""
    running = [subprocess.Popen([str(BIN / "airflow"), *args, "-o", "json"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    outputs = []
    for process in running:
        stdout, stderr = process.communicate()
        # list-import-errors exits 1 when it lists any, which makes it usable as a CI check.
        assert process.returncode in (0, 1) and "[" in stdout, stdout[-3000:] + stderr[-3000:]
        outputs.append(json.loads([line for line in stdout.splitlines() if line.startswith("[")][-1]))
    return outputs


@pytest.mark.airflow
def test_broken_file_is_an_import_error_until_fixed_and_hides_no_other_dag(private_home, tmp_path):
    configs = tmp_path / "configs"
    write(configs, "a_good.yaml", GOOD)
    bad = write(configs, "b_bad.yaml", BAD)
    env = airflow_env(private_home, PDR_CONFIG_DIR=str(configs))

    def parse():  # what the dag processor does, in one go, recorded in the metadata database
        done = subprocess.run([str(BIN / "airflow"), "dags", "reserialize"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        errors, listed = airflow_json(env, ["dags", "list-import-errors"], ["dags", "list"])
        return errors, {d["dag_id"] for d in listed}

    errors, dags = parse()
    assert [e["filepath"] for e in errors] == ["pdr_config_errors.py"]
    assert f"{bad}:3: reflection 'broken': key 'batch_sise': unknown key" in errors[0]["error"]
    assert dags == {"pdr_orders", "pdr_customers", "pdr_manual"}

    bad.write_text(BAD.replace("batch_sise", "batch_size"))
    errors, dags = parse()
    assert errors == []
    assert dags == {"pdr_orders", "pdr_customers", "pdr_manual", "pdr_broken"}


@pytest.mark.airflow
def test_demo_mirrors_the_source(private_home):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--airflow-home", str(private_home)],
                          env=airflow_env(private_home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "orders_mirror in destination.db: 3 row(s)" in done.stdout
    assert "(4, 'Barbara', '9.99', 'new')" in done.stdout
    assert "The mirror matches the source." in done.stdout
