"""The PendingChangesTrigger on real databases: events, deadlines, unreachable sources, LISTEN/NOTIFY."""

from __future__ import annotations


import asyncio
import datetime
import json
import re
import time

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from airflow_provider_pdr.core import install_channel
from airflow_provider_pdr.triggers import PendingChangesTrigger
from tests.support.databases import POSTGRES_URL, unique_name
from tests.support.tables import orders, write

SECRET = "pdr-Secret-9f3k"


def first_event(trigger: PendingChangesTrigger, timeout: float = 60.0, during=None) -> dict:
    """Run the trigger until its first event (`during`, if given, runs in a thread meanwhile)."""

    async def run():
        events = trigger.run()
        side = asyncio.create_task(asyncio.to_thread(during)) if during else None
        try:
            event = await asyncio.wait_for(anext(events), timeout)
        finally:
            await events.aclose()
            if side:
                await side
        return event.payload

    return asyncio.run(run())


def installed_source(databases, kind: str) -> tuple[sa.Engine, sa.Table]:
    source = databases.new(kind)
    table = orders(source)
    install_channel(source, "orders", "orders")
    return source, table


def rows(*ids: int) -> list[dict]:
    return [{"id": i, "note": f"n{i}", "amount": i} for i in ids]


def test_serialize_round_trip_through_the_trigger_table():
    from airflow.models.trigger import Trigger
    from airflow.sdk.module_loading import import_string

    trigger = PendingChangesTrigger(conn_id="src", channel="orders", min_changes=10, max_wait=30.5,
                                    poll_interval=2, deadline=1_900_000_000.25)
    stored = Trigger.from_object(trigger)  # what the triggerer reads back after a restart
    rebuilt = import_string(stored.classpath)(**stored.kwargs)
    assert rebuilt.serialize() == trigger.serialize()
    assert stored.classpath == "airflow_provider_pdr.triggers.pending.PendingChangesTrigger"
    assert (rebuilt.min_changes, rebuilt.max_wait, rebuilt.deadline) == (10, 30.5, 1_900_000_000.25)


@pytest.mark.parametrize("kind", ["sqlite", "mysql"])
def test_fires_once_enough_changes_are_pending(kind, databases, connect):
    source, table = installed_source(databases, kind)
    trigger = PendingChangesTrigger(connect("src", source), "orders", min_changes=3, poll_interval=0.2,
                                    deadline=time.time() + 60)
    event = first_event(trigger, during=lambda: (time.sleep(0.5), write(source, table.insert(), rows(1, 2, 3))))
    assert event["status"] == "success"
    assert event["pending"] == 3


def test_max_wait_fires_with_fewer_changes(databases, connect):
    source, table = installed_source(databases, "sqlite")
    write(source, table.insert(), rows(1))
    trigger = PendingChangesTrigger(connect("src", source), "orders", min_changes=100, max_wait=0.5,
                                    poll_interval=30, deadline=time.time() + 60)
    event = first_event(trigger)
    assert event["status"] == "success"
    assert event["pending"] == 1


def test_deadline_is_a_timeout_never_a_success(databases, connect):
    source, table = installed_source(databases, "sqlite")
    write(source, table.insert(), rows(1))
    trigger = PendingChangesTrigger(connect("src", source), "orders", min_changes=5, poll_interval=0.2,
                                    deadline=time.time() + 1)
    event = first_event(trigger)
    assert event["status"] == "timeout"
    assert "1 of 5 changes pending" in event["message"]


def test_missing_channel_is_a_clear_error(databases, connect):
    source = databases.new("sqlite")
    orders(source)
    trigger = PendingChangesTrigger(connect("src", source), "nope", poll_interval=0.2, deadline=time.time() + 60)
    event = first_event(trigger)
    assert event["status"] == "error"
    assert "'nope'" in event["message"] and "not installed" in event["message"]


def test_unknown_connection_is_a_clear_error():
    event = first_event(PendingChangesTrigger("pdr_no_such_conn", "orders", deadline=time.time() + 60))
    assert event["status"] == "error"
    assert "pdr_no_such_conn" in event["message"]


def test_unreachable_source_keeps_waiting_then_fails_clearly(monkeypatch):
    # Nothing listens on port 1: every attempt fails, the trigger must not report success.
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "password": SECRET,
        "schema": "nowhere",
    }))
    trigger = PendingChangesTrigger("down", "orders", poll_interval=0.3, deadline=time.time() + 2)
    event = first_event(trigger)
    assert event["status"] == "timeout"
    assert "unreachable" in event["message"] and "OperationalError" in event["message"]
    assert SECRET not in json.dumps(event)


def test_briefly_unreachable_source_is_waited_for(monkeypatch):
    """The database is missing when the trigger starts, then appears with its channel and rows."""
    name, staging = unique_name(), unique_name()
    server = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    url = sa.make_url(POSTGRES_URL)
    monkeypatch.setenv("AIRFLOW_CONN_LATE", json.dumps({
        "conn_type": "postgres", "host": url.host, "port": url.port, "login": url.username, "schema": name,
    }))

    def appear():
        with server.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{staging}"')
        source = sa.create_engine(url.set(database=staging))
        table = orders(source)
        install_channel(source, "orders", "orders")
        write(source, table.insert(), rows(1, 2))
        source.dispose()
        time.sleep(1.5)
        with server.connect() as conn:  # all at once: the trigger never sees a half-built source
            conn.exec_driver_sql(f'ALTER DATABASE "{staging}" RENAME TO "{name}"')

    try:
        trigger = PendingChangesTrigger("late", "orders", min_changes=2, poll_interval=0.3,
                                        deadline=time.time() + 60)
        event = first_event(trigger, during=appear)
        assert (event["status"], event.get("pending")) == ("success", 2), event
    finally:
        with server.connect() as conn:
            for database in (name, staging):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        server.dispose()


def test_postgres_notify_wakes_the_trigger_without_polling(databases, connect):
    source, table = installed_source(databases, "postgresql")
    # A poll interval far beyond the test's patience: only the capture trigger's pg_notify can wake it.
    trigger = PendingChangesTrigger(connect("src", source), "orders", poll_interval=3600,
                                    deadline=time.time() + 7200)
    event = first_event(trigger, timeout=60, during=lambda: (time.sleep(1), write(source, table.insert(), rows(7))))
    assert event["status"] == "success"
    assert event["pending"] == 1


def test_dropped_listen_connection_falls_back_to_polling(databases, connect):
    source, table = installed_source(databases, "postgresql")
    trigger = PendingChangesTrigger(connect("src", source), "orders", poll_interval=0.5,
                                    deadline=time.time() + 120)
    database = source.url.database

    def kill_listener_then_write():
        killed, deadline = 0, time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            time.sleep(0.2)
            with source.connect() as conn:
                killed = conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                ), {"db": database}).scalar()
        assert killed
        write(source, table.insert(), rows(1))

    event = first_event(trigger, during=kill_listener_then_write)
    assert (event["status"], event.get("pending")) == ("success", 1), event


def test_hanging_source_still_times_out_on_time(monkeypatch):
    """A server that accepts connections and never answers: the deadline still ends the wait."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes handshakes; nobody ever answers
    monkeypatch.setenv("AIRFLOW_CONN_SILENT", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": silent.getsockname()[1], "login": "postgres",
        "password": SECRET, "schema": "nowhere",
    }))
    try:
        trigger = PendingChangesTrigger("silent", "orders", poll_interval=0.3, deadline=time.time() + 2)
        event = first_event(trigger, timeout=60)
    finally:
        silent.close()
    assert event["status"] == "timeout"
    assert "no answer from the source" in event["message"]
    assert SECRET not in json.dumps(event)


def test_triggerer_restart_cancels_cleanly_and_resumes(databases, connect):
    """Cancelled mid-wait (the triggerer stops), it closes its LISTEN connection; rebuilt from its
    stored kwargs (the triggerer restarts), it picks up the changes written meanwhile."""
    from airflow.models.trigger import Trigger

    source, table = installed_source(databases, "postgresql")
    trigger = PendingChangesTrigger(connect("src", source), "orders", min_changes=2, poll_interval=3600,
                                    deadline=time.time() + 7200)
    stored = Trigger.from_object(trigger)

    def listeners() -> int:
        with source.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND query ILIKE 'LISTEN%'"
            ), {"db": source.url.database}).scalar()

    async def run_then_stop():
        task = asyncio.create_task(anext(trigger.run()))
        for _ in range(300):
            if await asyncio.to_thread(listeners):
                break
            await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_then_stop())
    gone_by = time.monotonic() + 10  # the server notices the closed connection a moment later
    while listeners() and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert listeners() == 0
    write(source, table.insert(), rows(1, 2))
    event = first_event(PendingChangesTrigger(**stored.kwargs))
    assert (event["status"], event["pending"]) == ("success", 2)


@pytest.mark.parametrize("kind, how", [
    ("sqlite", "counting every 0.2s (sqlite sends no notifications)"),
    ("postgresql", "woken by postgresql notifications on 'pdr_c_orders', and counting every 0.2s in case one is lost"),
    ("firebird", "woken by firebird notifications on 'pdr_c_orders', and counting every 0.2s in case one is lost"),
])
def test_the_trigger_logs_at_start_what_it_waits_for_and_what_wakes_it(kind, how, databases, connect):
    source, table = installed_source(databases, kind)
    write(source, table.insert(), rows(1, 2))
    deadline = time.time() + 60
    ends = datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc)
    trigger = PendingChangesTrigger(connect("src", source), "orders", min_changes=2, max_wait=30, poll_interval=0.2,
                                    deadline=deadline)
    with capture_logs() as events:
        assert first_event(trigger)["status"] == "success"
    started, fired = [e["event"] for e in events if e["log_level"] == "info"]
    assert started == (f"channel 'orders' in connection 'src': waiting for 2 pending changes, or any change once the "
                       f"oldest is 30s old, until {ends:%Y-%m-%d %H:%M:%S} UTC; {how}")
    assert re.fullmatch(r"channel 'orders' in connection 'src': 2 changes pending \(oldest \d+\.\ds old\)", fired)
