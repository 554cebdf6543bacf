"""The benchmark's CPU figure counts each side's work where it was done (bench/cpu.py): busy
queries on real servers, a busy loop in this process."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from bench import cpu

BUSY = {"postgresql": "SELECT count(*) FROM generate_series(1, 4000000)",
        "mysql": "SELECT BENCHMARK(3000000, MD5('pdr'))"}


def test_a_postgresql_database_counts_only_its_own_backends(databases):
    busy, idle = databases.new("postgresql"), databases.new("postgresql")  # one server, two databases
    for engine in (busy, idle):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    with cpu.measured(source=busy, destination=idle) as work, busy.connect() as conn:
        conn.exec_driver_sql(BUSY["postgresql"])
    assert work["source"] >= 0.05, work
    assert work["destination"] < work["source"] / 4, work


def test_a_query_on_mariadb_counts_for_its_side_once(databases):
    mariadb, sqlite = databases.new("mysql"), databases.new("sqlite")
    with cpu.measured(source=mariadb, destination=mariadb, other=sqlite) as work, mariadb.connect() as conn:
        conn.exec_driver_sql(BUSY["mysql"])
    assert work["source"] >= 0.05, work
    assert work["destination"] == 0 and work["other"] == 0, work  # one server counted once; SQLite has none
    assert work.total == pytest.approx(work["source"] + work["process"])


def test_this_process_counts_its_own_work(databases):
    with cpu.measured(source=databases.new("sqlite")) as work:
        stop = time.process_time() + 0.1
        while time.process_time() < stop:
            pass
    assert work["process"] >= 0.1 and work["source"] == 0, work


def test_a_server_on_another_machine_cannot_be_read():
    far = sa.create_engine("postgresql+psycopg2://reader@db.example.com/orders")  # never connected
    with cpu.measured(source=far) as work:
        pass
    assert work["source"] is None and work.total is None
