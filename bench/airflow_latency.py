"""Child process of the latency benchmark: commit -> visible through Airflow itself.

Each DAG run (``dag.test()``: tasks and the deferred trigger run in this process) installs the
channel, defers the sensor, and reflects once the sensor wakes. One row is committed after the
sensor has deferred; a poller timestamps the moment it appears in the destination. Prints a
JSON list of the seconds from each commit to its row being visible.

    python -m bench.airflow_latency SOURCE_URL DESTINATION_URL RUNS

Airflow reads its home at import time, so this runs in its own process with a temporary
AIRFLOW_HOME and a SQLite metadata database.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time

HOME = tempfile.mkdtemp(prefix="pdr_bench_airflow_")
os.environ.update({
    "AIRFLOW_HOME": HOME,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(HOME, "dags"),
})

import sqlalchemy as sa  # noqa: E402

from bench.workload import narrow  # noqa: E402

DAG_FILE = """
from airflow.sdk import DAG

from airflow_provider_pdr.operators import InstallTriggersOperator, ReflectOperator
from airflow_provider_pdr.sensors import PendingChangesSensor

with DAG("pdr_bench_latency", schedule=None, catchup=False) as dag:
    install = InstallTriggersOperator(task_id="install", source_conn_id="pdr_bench_src", source_table="narrow",
                                      channel="bench")
    wait = PendingChangesSensor(task_id="wait", source_conn_id="pdr_bench_src", channel="bench",
                                deferrable=True, poke_interval=60, timeout=120)
    copy = ReflectOperator(task_id="reflect", source_conn_id="pdr_bench_src", channel="bench",
                           source_table="narrow", destination_conn_id="pdr_bench_dst", destination_table="narrow",
                           create_table=True, time_budget=5)
    install >> wait >> copy
"""


def connection(url: sa.URL) -> str:
    conn_type = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}[url.get_backend_name()]
    if conn_type == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": url.database})
    return json.dumps({"conn_type": conn_type, "host": url.host, "port": url.port, "login": url.username,
                       "password": url.password, "schema": url.database, "extra": dict(url.query)})


def one_run(dag, source: sa.Engine, destination: sa.Engine, table: sa.Table, key: int) -> float:
    """Run the DAG once; the row `key` is committed 1 s after the sensor deferred."""
    times: dict[str, float] = {}

    def write_then_watch():
        deadline = time.perf_counter() + 60
        while not sa.inspect(source).has_table("pdr_c_bench") and time.perf_counter() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the sensor has checked once and deferred
        with source.begin() as conn:
            conn.execute(table.insert(), {"id": key, "qty": 1, "note": "latency"})
        times["committed"] = time.perf_counter()
        query = sa.select(sa.func.count()).select_from(sa.table("narrow", sa.column("id"))).where(sa.column("id") == key)
        while time.perf_counter() < deadline:
            with destination.connect() as conn:
                if sa.inspect(conn).has_table("narrow") and conn.execute(query).scalar():
                    times["visible"] = time.perf_counter()
                    return
            time.sleep(0.005)

    watcher = threading.Thread(target=write_then_watch, daemon=True)
    watcher.start()
    run = dag.test()
    watcher.join(60)
    if run.state != "success" or "visible" not in times:
        raise SystemExit(f"DAG run ended {run.state}; row {key} visible: {'visible' in times}")
    return times["visible"] - times["committed"]


def main(source_url: str, destination_url: str, runs: str) -> None:
    os.environ["AIRFLOW_CONN_PDR_BENCH_SRC"] = connection(sa.make_url(source_url))
    os.environ["AIRFLOW_CONN_PDR_BENCH_DST"] = connection(sa.make_url(destination_url))
    os.makedirs(os.path.join(HOME, "dags"))
    path = os.path.join(HOME, "dags", "pdr_bench_latency.py")
    with open(path, "w") as handle:
        handle.write(DAG_FILE)
    from airflow.utils import db

    db.initdb()
    import importlib.util

    spec = importlib.util.spec_from_file_location("pdr_bench_latency", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source, destination = sa.create_engine(source_url), sa.create_engine(destination_url)
    table = narrow()
    table.create(source)
    lags = [one_run(module.dag, source, destination, table, key) for key in range(int(runs))]
    print(json.dumps(lags))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
