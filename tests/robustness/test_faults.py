"""Faults: reflect killed mid-drain, databases unreachable, rows the destination rejects,
two runs of one channel at once. After each, a final drain makes the mirror equal the source."""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import (
    ApplyError, ChannelBusyError, ReflectionSpec, UnreachableError, install_channel, pending_changes, reflect,
)
from airflow_provider_pdr.core.drain.ack import Acknowledger
from airflow_provider_pdr.core.drain.read import Reader
from airflow_provider_pdr.core.drain.route import ANY_ROUTE, EXACT_PATH
from airflow_provider_pdr.core.drain.write import Writer
from airflow_provider_pdr.core.engines import engine_module
from tests.support.databases import execute
from tests.support.tables import create, orders, table_rows, write
from tests.support.faults import ReflectWorkers, TcpProxy, Writers, same_rows

KILLS = 10


@pytest.fixture(scope="module")
def workers():
    pool = ReflectWorkers()
    yield pool
    pool.close()


def proxied(engine: sa.Engine, proxy: TcpProxy) -> sa.Engine:
    return sa.create_engine(proxy.url(engine))


def assert_mirror(source, destination, table="orders", mirror="mirror"):
    expected, actual = same_rows(source, table, destination, mirror)
    assert actual == expected
    assert pending_changes(source, "orders").count == 0
    return len(expected)


@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("mysql", "postgresql")], indirect=True)
def test_reflect_killed_at_random_points_mid_drain_loses_nothing(source, destination, workers):
    table = orders(source)
    install_channel(source, "orders", "orders")
    rng = random.Random(8)
    between_commit_and_ack, killed = 0, workers.killed
    with Writers(source, table, threads=3, keys=150, seed=1) as writers:
        for _ in range(KILLS):
            pid = workers.start(source, destination, "orders", "mirror", batch_size=rng.choice([1, 3, 10, 40]))
            workers.wait_for(pid, "ready")
            last = "ready"
            for _ in range(rng.randint(0, 2)):
                last = workers.wait_for(pid, rng.choice(["applied", "acked"]))
            time.sleep(rng.choice([0, 0, rng.uniform(0, 0.02)]))
            workers.kill(pid)
            between_commit_and_ack += last == "applied"
    assert not writers.errors
    assert writers.committed > 0
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    verified = assert_mirror(source, destination)
    print(f"\nRELIABILITY kill: {source.dialect.name}->{destination.dialect.name} kills={workers.killed - killed} "
          f"after_commit_before_ack>={between_commit_and_ack} writes={writers.committed} rows={verified}")


# -- unreachable databases -------------------------------------------------------------------


def cut_at_batch(monkeypatch, method: str, batch: int, proxy: TcpProxy):
    """Take `proxy` down when the drain reaches `method` for the `batch`-th time."""
    role = {"apply": Writer, "acknowledge": Acknowledger, "read_span": Reader, "read_batch": Reader}[method]
    original, calls = getattr(role, method), []

    def cutting(self, *args):
        calls.append(1)
        if len(calls) == batch:
            proxy.down()
        return original(self, *args)

    monkeypatch.setattr(role, method, cutting)


def server(engine):
    return engine.url.host, engine.url.port or {"postgresql": 5432, "mysql": 3306}[engine.dialect.name]


@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("mysql", "postgresql")], indirect=True)
def test_destination_unreachable_then_back(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    proxy = TcpProxy(*server(destination))
    via_proxy = proxied(destination, proxy)
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(100)])
    reflect(source, via_proxy, ReflectionSpec("orders", "mirror", create_table=True), batch_size=10, max_batches=1)

    proxy.down()  # unreachable before the run starts
    with pytest.raises(UnreachableError, match=r"channel 'orders'.*destination") as error:
        reflect(source, via_proxy, ReflectionSpec("orders", "mirror"), batch_size=10)
    assert "retry" in str(error.value)
    assert pending_changes(source, "orders").count == 90

    proxy.up()
    with monkeypatch.context() as patch:  # lost in the middle of a drain
        cut_at_batch(patch, "apply", 6, proxy)  # the second batch of the second span of 40 change rows
        with pytest.raises(UnreachableError, match=r"channel 'orders'.*destination"):
            reflect(source, via_proxy, ReflectionSpec("orders", "mirror"), batch_size=10)
    assert pending_changes(source, "orders").count == 50, "only the first span, applied whole, is acknowledged"
    write(source, table.update().where(table.c.id < 50).values(note="meanwhile"))
    write(source, table.delete().where(table.c.id >= 95))

    proxy.up()
    reflect(source, via_proxy, ReflectionSpec("orders", "mirror"), batch_size=10)
    assert assert_mirror(source, destination) == 95
    via_proxy.dispose()
    proxy.down()


@pytest.mark.parametrize("source,destination", [("postgresql", "sqlite"), ("mysql", "sqlite")], indirect=True)
@pytest.mark.parametrize("method,spans,left", [("read_span", True, 60), ("acknowledge", True, 20),
                                               ("read_batch", False, 60), ("acknowledge", False, 50)])
def test_source_unreachable_during_a_drain(source, destination, monkeypatch, method, spans, left):
    route = ANY_ROUTE if spans else EXACT_PATH
    table = orders(source)
    install_channel(source, "orders", "orders")
    proxy = TcpProxy(*server(source))
    via_proxy = proxied(source, proxy)
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(60)])
    with monkeypatch.context() as patch:
        cut_at_batch(patch, method, 2, proxy)
        with pytest.raises(UnreachableError, match=r"channel 'orders'.*source"):
            reflect(via_proxy, destination, ReflectionSpec("orders", "mirror", create_table=True, route=route),
                    batch_size=10)
    # The second batch (a span of 20 change rows after one of 40, or the second batch of 10) is
    # read while the first is applied, and the first is acknowledged after that read: cut at the
    # read, nothing was acknowledged; cut at the second acknowledgement, only the first batch was.
    assert pending_changes(source, "orders").count == left

    with pytest.raises(UnreachableError, match=r"channel 'orders'.*source"):
        # still down: fails at once, clearly
        reflect(via_proxy, destination, ReflectionSpec("orders", "mirror", route=route))
    write(source, table.update().where(table.c.id % 2 == 0).values(note="meanwhile"))
    proxy.up()
    reflect(via_proxy, destination, ReflectionSpec("orders", "mirror", route=route), batch_size=10)
    assert assert_mirror(source, destination) == 60
    via_proxy.dispose()
    proxy.down()


# -- rows the destination rejects ------------------------------------------------------------


@pytest.mark.parametrize(
    "source,destination", [("postgresql", "mysql"), ("mysql", "postgresql"), ("postgresql", "sqlite")],
    indirect=True,
)
def test_a_rejected_row_is_named_by_key_and_blocks_only_its_channel(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    install_channel(source, "audit", "orders")
    create(destination, "strict",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100)),
           sa.Column("amount", sa.Numeric(12, 2)),
           sa.CheckConstraint("amount >= 0", name="amount_not_negative"))
    write(source, table.insert(), [{"id": i, "note": "ok", "amount": 1} for i in range(50)])
    write(source, table.update().where(table.c.id == 37).values(amount=-5))

    with pytest.raises(ApplyError) as error:
        reflect(source, destination, ReflectionSpec("orders", "strict"), batch_size=10)
    message = str(error.value)
    assert "channel 'orders'" in message
    assert "id=37" in message, message
    assert "amount_not_negative" in message.lower() or "check" in message.lower(), message
    # The first span (40 inserts) leaves row 37 to the second, which holds its update: the first is
    # applied and acknowledged. The second writes its keys in the order they first changed: rows
    # 40-49 in one batch, then row 37, refused; nothing of the second span is acknowledged.
    assert [r[0] for r in table_rows(destination, "strict")] == [*range(37), *range(38, 50)]
    assert pending_changes(source, "orders").count == 11

    # Another channel of the same table keeps working meanwhile.
    reflect(source, destination, ReflectionSpec("audit", "audit_copy", create_table=True))
    assert table_rows(destination, "audit_copy") == table_rows(source, "orders")

    write(source, table.update().where(table.c.id == 37).values(amount=5))  # the user fixes the row
    reflect(source, destination, ReflectionSpec("orders", "strict"), batch_size=10)
    assert table_rows(destination, "strict") == table_rows(source, "orders")


@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("mysql", "postgresql"), ("mysql", "psycopg")],
                         indirect=True)
def test_a_value_too_long_names_the_composite_key(source, destination):
    table = create(source, "lines",
                   sa.Column("order", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("line", sa.String(20), primary_key=True),
                   sa.Column("note", sa.String(200)))
    create(destination, "lines",
           sa.Column("order", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("line", sa.String(20), primary_key=True),
           sa.Column("note", sa.String(10)))
    write(source, table.insert(), [{"order": 1, "line": f"l{i}", "note": "short"} for i in range(30)])
    write(source, table.update().where(table.c.line == "l17").values(note="far too long for ten"))
    install_channel(source, "lines", "lines")
    write(source, table.update().values(note=table.c.note))  # capture every row
    with pytest.raises(ApplyError) as error:
        reflect(source, destination, ReflectionSpec("lines", "lines"))
    assert "order=1" in str(error.value) and "line='l17'" in str(error.value), str(error.value)
    assert "too long" in str(error.value).lower(), str(error.value)
    # Row values stay out of the message and its chain (psycopg 3's COPY quotes them in a context line).
    assert "far too long" not in str(error.value) and "far too long" not in str(error.value.__cause__)
    assert table_rows(destination, "lines") == []
    assert pending_changes(source, "lines").count == 30


@pytest.mark.parametrize("source,destination", [("postgresql", "postgresql"), ("mysql", "mysql")], indirect=True)
def test_a_rejected_delete_is_named_by_key(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(1, 6)])
    reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True))
    execute(destination, "CREATE TABLE child (id INTEGER PRIMARY KEY, order_id INTEGER, "
                         "FOREIGN KEY (order_id) REFERENCES mirror (id))")
    execute(destination, "INSERT INTO child VALUES (1, 3)")
    write(source, table.delete().where(table.c.id == 3))
    write(source, table.update().where(table.c.id == 1).values(note="changed"))
    with pytest.raises(ApplyError, match=r"the delete of the row id=3 was rejected: .*foreign key"):
        reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert pending_changes(source, "orders").count == 2
    assert table_rows(destination, "mirror")[0] == (1, None, None), "nothing of the batch was applied"


# -- two runs of one channel at once ---------------------------------------------------------


@pytest.mark.parametrize("source", ["postgresql", "mysql", "sqlite"], indirect=True)
@pytest.mark.parametrize("destination", ["sqlite"], indirect=True)
def test_a_second_run_fails_clearly_or_waits_and_the_lock_dies_with_its_process(source, destination, workers,
                                                                              caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_pdr")
    table = orders(source)
    info = install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(10)])
    holder = workers.start(source, destination, "orders", "mirror", mode="hold", schema=info.schema)
    workers.wait_for(holder, "locked")

    with pytest.raises(ChannelBusyError, match="channel 'orders' is being drained by another run"):
        reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True, lock_timeout=0.3))
    assert pending_changes(source, "orders").count == 10

    results = []
    waiting = threading.Thread(target=lambda: results.append(
        reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True, lock_timeout=30))))
    waiting.start()
    waiting.join(1.5)
    assert waiting.is_alive(), "the second run waits for the lock instead of draining beside the first"
    assert pending_changes(source, "orders").count == 10
    workers.kill(holder)  # the lock dies with the process that held it
    waiting.join(30)
    assert results and results[0].changes == 10
    assert "for another run to finish draining this channel" in caplog.text
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "firebird"], indirect=True)
def test_a_waiting_run_gets_the_lock_before_its_holder_takes_it_again(engine):
    """A copy or a reconcile takes the lock again right after each hold: a drain waiting for it
    still gets it at the next release (it waits in the server's queue, not polling)."""
    orders(engine)
    install_channel(engine, "orders", "orders")  # Firebird locks the channel's registry row
    module, stop, holds = engine_module(engine), threading.Event(), []

    def copy_holding_again_and_again():
        while not stop.is_set():
            with module.channel_lock(engine, None, "orders", 30):
                holds.append(None)
                time.sleep(0.2)

    copier = threading.Thread(target=copy_holding_again_and_again)
    copier.start()
    try:
        while not holds:
            time.sleep(0.01)
        with module.channel_lock(engine, None, "orders", 3):  # ChannelBusyError if it never got in
            taken = len(holds)
    finally:
        stop.set()
        copier.join()
    assert taken <= 3, "the waiting run was served at one of the first releases"


@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("mysql", "postgresql")], indirect=True)
def test_concurrent_runs_of_one_channel_neither_double_apply_nor_lose(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    errors, results = [], []

    def run(n):
        try:
            for _ in range(5):  # bounded runs: under constant writes a drain may never see an empty channel
                results.append(reflect(source, destination,
                                       ReflectionSpec("orders", "mirror", create_table=True, lock_timeout=30),
                                       batch_size=7, max_batches=3))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    with Writers(source, table, threads=3, keys=80, seed=2) as writers:
        runs = [threading.Thread(target=run, args=(n,)) for n in range(3)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(60)
    assert not errors and not writers.errors
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert assert_mirror(source, destination) > 0
    assert len(results) == 15
