#!/usr/bin/env python3
"""A real replication, end to end, on SQLite: what `make demo` runs.

Throwaway AIRFLOW_HOME with a SQLite metadata database, the DAGs of dags/ built from
dags/reflections/example.yaml, a SQLite source and destination given to Airflow as connections
(environment variables). It installs the capture triggers, writes rows into the source, runs the
reflection DAG with `airflow dags test`, changes rows again, runs it again, and prints the mirror.

    .venv/bin/python scripts/demo.py [--airflow-home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAG_ID = "pdr_demo_orders"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def airflow(env: dict, log: Path, *args: str) -> None:
    """Run the airflow CLI of this venv; its chatter goes to `log`, shown only if it fails."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env,
                              stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(log.read_text()[-6000:])
        sys.exit(f"demo: `airflow {' '.join(args)}` failed (exit {done.returncode}); full log: {log}")
    print(f"   airflow {' '.join(args)}: ok in {time.monotonic() - started:.0f}s", flush=True)


def table(db: Path, name: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f'SELECT id, customer, amount, status FROM "{name}" ORDER BY id').fetchall()


def normalized(rows: list[tuple]) -> list[tuple]:
    # SQLite gives the source's amounts as numbers and the mirror's exact decimals as text.
    return [(id_, customer, Decimal(str(amount)).normalize(), status) for id_, customer, amount, status in rows]


def show(db: Path, name: str) -> None:
    rows = table(db, name)
    print(f"   {name} in {db.name}: {len(rows)} row(s)")
    for row in rows:
        print("     ", row)


def write(db: Path, *statements: str) -> None:
    with sqlite3.connect(db) as conn:
        for statement in statements:
            print(f"   {statement}")
            conn.execute(statement)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--airflow-home", type=Path, help="reuse this AIRFLOW_HOME (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME and databases")
    args = parser.parse_args()

    home = args.airflow_home or Path(tempfile.mkdtemp(prefix="pdr-demo-"))
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="data-", dir=home))
    source, destination, log = work / "source.db", work / "destination.db", work / "airflow.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PDR_CONFIG_DIR": str(REPO / "dags" / "reflections"),
        # The example config's connection ids, defined the way Airflow reads connections from the environment.
        "AIRFLOW_CONN_PDR_DEMO_SOURCE": json.dumps({"conn_type": "sqlite", "host": str(source)}),
        "AIRFLOW_CONN_PDR_DEMO_DESTINATION": json.dumps({"conn_type": "sqlite", "host": str(destination)}),
    }
    env.pop("PDR_DEMO_SOURCE_CONN", None)
    env.pop("PDR_DEMO_DESTINATION_CONN", None)

    try:
        step(f"Airflow metadata database (SQLite) in {home}")
        airflow(env, log, "db", "migrate")

        step(f"Source table `orders` in {source}")
        write(source, "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, "
                      "amount DECIMAL(10, 2), status TEXT)")

        step("Install the capture triggers (the DAG's first task, run alone)")
        airflow(env, log, "tasks", "test", DAG_ID, "install_triggers")

        step("Write rows into the source")
        write(source,
              "INSERT INTO orders VALUES (1, 'Ada', 120.50, 'new')",
              "INSERT INTO orders VALUES (2, 'Grace', 80.00, 'new')",
              "INSERT INTO orders VALUES (3, 'Edsger', 42.00, 'new')")

        step("Run the reflection DAG: install triggers -> wait for changes -> reflect")
        airflow(env, log, "dags", "test", DAG_ID)
        show(destination, "orders_mirror")

        step("Change the source: update, delete, insert")
        write(source,
              "UPDATE orders SET status = 'shipped', amount = 125.00 WHERE id = 1",
              "DELETE FROM orders WHERE id = 2",
              "INSERT INTO orders VALUES (4, 'Barbara', 9.99, 'new')")

        step("Run the DAG again (any re-run is safe: it applies what is pending, nothing twice)")
        airflow(env, log, "dags", "test", DAG_ID)
        show(source, "orders")
        show(destination, "orders_mirror")

        same = normalized(table(source, "orders")) == normalized(table(destination, "orders_mirror"))
        step("The mirror matches the source." if same else "MISMATCH: the mirror differs from the source.")
        return 0 if same else 1
    finally:
        if args.keep or args.airflow_home:
            print(f"\n(kept: {work}; Airflow log: {log})")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
