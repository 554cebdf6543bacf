"""Reflect: every committed change reaches the mirror, whatever the order, crashes or concurrency."""

from __future__ import annotations

import gc
import time

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, ReflectionSpec, install_channel, pending_changes, reflect
from airflow_provider_pdr.core.drain.ack import Acknowledger, seq_ranges
from airflow_provider_pdr.core.drain.route import ROW_PATH
from airflow_provider_pdr.core.drain.write import Writer
from tests.support.drain import mirror
from tests.support.tables import create, orders, race_writers, table_rows, write


def test_seq_ranges_cover_exactly_the_numbers_read():
    assert seq_ranges([5, 3, 4, 9, 11, 10, 20]) == [(3, 5), (9, 11), (20, 20)]
    assert seq_ranges([1, 1, 2]) == [(1, 2)]
    assert seq_ranges([]) == []


def test_mirrors_inserts_updates_and_deletes(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i} for i in range(1, 11)])
    write(source, table.update().where(table.c.id <= 3).values(note="updated"))
    write(source, table.delete().where(table.c.id.in_([4, 5])))
    result = mirror(source, destination, batch_size=4, route=ROW_PATH)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    # 15 change rows, read as one span of 10 keys: keys 1-3 (inserted, then updated) are written
    # once, in 3 destination transactions of at most 4 rows; rows 4 and 5 never reached the
    # mirror, so deleting them removes nothing.
    assert (result.batches, result.changes, result.upserted, result.deleted, result.drained) == (3, 15, 8, 0, True)
    assert pending_changes(source, "orders").count == 0


def test_deletes_reach_a_mirror_that_already_had_the_rows(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(5)])
    mirror(source, destination)
    write(source, table.delete().where(table.c.id >= 3))
    assert mirror(source, destination).deleted == 2
    assert [r[0] for r in table_rows(destination, "mirror")] == [0, 1, 2]


def test_deletes_off_keeps_rows_but_acknowledges(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(3)])
    mirror(source, destination)
    write(source, table.delete())
    assert mirror(source, destination, deletes=False).deleted == 0
    assert len(table_rows(destination, "mirror")) == 3
    assert pending_changes(source, "orders").count == 0


def test_primary_key_update_leaves_no_ghost(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": 1, "note": "one"}, {"id": 2, "note": "two"}])
    mirror(source, destination)
    write(source, table.update().where(table.c.id == 1).values(id=10))
    write(source, table.update().values(id=table.c.id + 100))  # multi-row key update
    mirror(source, destination)
    assert table_rows(destination, "mirror") == [(102, "two", None), (110, "one", None)]


def test_composite_keys_and_names_that_need_quoting(source, destination):
    name = "Order Line-ü \"select\""
    table = create(
        source, name,
        sa.Column("Order", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("line no", sa.String(20), primary_key=True),
        sa.Column("from", sa.String(50)),
        sa.Column("Grüße", sa.Text),
    )
    install_channel(source, "lines", name)
    write(source, table.insert(), [
        {"Order": 1, "line no": "a", "from": "x", "Grüße": "hé"},
        {"Order": 1, "line no": "b", "from": "y'; DROP TABLE x; --", "Grüße": None},
        {"Order": 2, "line no": "a", "from": "z", "Grüße": "ok"},
    ])
    write(source, table.update().where(table.c["line no"] == "b").values({"line no": "B"}))
    write(source, table.delete().where(table.c.Order == 2))
    reflect(source, destination, ReflectionSpec("lines", name, create_table=True))
    assert table_rows(destination, name) == table_rows(source, name)
    assert [(r[0], r[1]) for r in table_rows(destination, name)] == [(1, "B"), (1, "a")] or \
        [(r[0], r[1]) for r in table_rows(destination, name)] == [(1, "a"), (1, "B")]


def test_same_batch_sequences_end_in_the_final_state(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": 1, "note": "pre"}, {"id": 2, "note": "pre"}])
    mirror(source, destination)
    write(source, table.insert(), {"id": 3, "note": "born"})
    write(source, table.delete().where(table.c.id == 3))           # insert then delete
    write(source, table.delete().where(table.c.id == 1))
    write(source, table.insert(), {"id": 1, "note": "reborn"})     # delete then re-insert
    for i in range(20):                                              # many updates of one row
        write(source, table.update().where(table.c.id == 2).values(note=f"v{i}"))
    result = mirror(source, destination)
    assert result.batches == 1
    assert table_rows(destination, "mirror") == [(1, "reborn", None), (2, "v19", None)]


def test_rolled_back_transactions_leave_no_trace(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    with source.connect() as conn:
        conn.execute(table.insert(), [{"id": 1}, {"id": 2}])
        conn.rollback()
    assert pending_changes(source, "orders").count == 0
    write(source, table.insert(), {"id": 3})
    mirror(source, destination)
    assert table_rows(destination, "mirror") == [(3, None, None)]


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_transaction_that_commits_after_a_later_one_was_reflected_is_not_lost(source, destination):
    """The flaw that lost rows in the tool we replace: a max(id) watermark skips late commits."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    early = source.connect()
    early.execute(table.insert(), {"id": 1, "note": "early, commits late"})  # takes the lower seq
    write(source, table.insert(), {"id": 2, "note": "late, commits first"})
    assert mirror(source, destination).upserted == 1
    assert [r[0] for r in table_rows(destination, "mirror")] == [2]
    early.commit()
    early.close()
    mirror(source, destination)
    assert [r[0] for r in table_rows(destination, "mirror")] == [1, 2]
    assert pending_changes(source, "orders").count == 0


@pytest.mark.parametrize("destination", ["sqlite"], indirect=True)
def test_concurrent_writers_during_reflect_lose_nothing(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    errors = race_writers(source, table, lambda: mirror(source, destination, batch_size=7))
    mirror(source, destination)
    assert not errors
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert len(table_rows(source, "orders")) > 0


def test_crash_between_destination_commit_and_acknowledgement_converges(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(5)])

    def crash(self, conn, seqs):
        raise KeyboardInterrupt("process died after the destination commit")

    with monkeypatch.context() as patch:
        patch.setattr(Acknowledger, "acknowledge", crash)
        with pytest.raises(KeyboardInterrupt):
            mirror(source, destination)
    assert len(table_rows(destination, "mirror")) == 5, "the destination had committed"
    assert pending_changes(source, "orders").count == 5, "nothing was acknowledged"
    write(source, table.update().where(table.c.id == 0).values(note="second"))
    mirror(source, destination)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert pending_changes(source, "orders").count == 0


def test_a_rejected_batch_acknowledges_nothing(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    create(destination, "narrow",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100), nullable=False),
           sa.Column("amount", sa.Numeric(12, 2)))
    write(source, table.insert(), [{"id": 1, "note": "fine"}, {"id": 2, "note": None}])
    with pytest.raises(ApplyError, match="channel 'orders'.*nothing of it was acknowledged"):
        reflect(source, destination, ReflectionSpec("orders", "narrow"))
    assert pending_changes(source, "orders").count == 2
    assert table_rows(destination, "narrow") == []


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["mysql"], indirect=True)
def test_the_garbage_collector_is_paused_only_while_a_drain_runs(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "fine"} for i in range(3)])
    during, apply_batch = [], Writer.apply_batch
    monkeypatch.setattr(Writer, "apply_batch", lambda *args: during.append(gc.isenabled()) or apply_batch(*args))
    mirror(source, destination)
    assert during == [False] and gc.isenabled()
    create(destination, "narrow", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100), nullable=False), sa.Column("amount", sa.Numeric(12, 2)))
    write(source, table.insert(), {"id": 9, "note": None})
    with pytest.raises(ApplyError):
        reflect(source, destination, ReflectionSpec("orders", "narrow"))
    assert gc.isenabled(), "a failed drain resumes the collector too"
    gc.disable()
    try:
        reflect(source, destination, ReflectionSpec("orders", "mirror"))
        assert not gc.isenabled(), "a collector the caller had paused stays paused"
    finally:
        gc.enable()


def test_a_primary_key_declared_in_another_order_than_its_columns_keeps_its_own_order(source, destination):
    """Reflection reads the key from the primary key constraint, in its order (b, a), not in
    column order: the channel records it so, the drift check finds it unchanged, and a created
    mirror declares it so."""
    table = create(source, "pairs",
                   sa.Column("a", sa.Integer, nullable=False), sa.Column("b", sa.String(20), nullable=False),
                   sa.Column("v", sa.Integer), sa.PrimaryKeyConstraint("b", "a"))
    channel = install_channel(source, "pairs", "pairs")
    assert channel.table.key_columns == ("b", "a")
    write(source, table.insert(), [{"a": 1, "b": "x", "v": 1}, {"a": 2, "b": "x", "v": 2}, {"a": 1, "b": "y", "v": 3}])
    write(source, table.update().where(table.c.a == 2).values(v=20))
    mirror(source, destination, channel="pairs")
    write(source, table.delete().where(table.c.b == "y"))
    assert mirror(source, destination, channel="pairs").drained, "no drift is seen in the key's order"
    assert sorted(table_rows(destination, "mirror")) == sorted(table_rows(source, "pairs")) == [(1, "x", 1), (2, "x", 20)]
    with destination.connect() as conn:  # the mirror's key (and its index) keeps the source's order
        assert sa.inspect(conn).get_pk_constraint("mirror")["constrained_columns"] == ["b", "a"]


def test_several_channels_on_one_table_progress_independently(source, destination):
    table = orders(source)
    install_channel(source, "fast", "orders")
    install_channel(source, "slow", "orders")
    write(source, table.insert(), [{"id": i} for i in range(4)])
    reflect(source, destination, ReflectionSpec("fast", "fast_copy", create_table=True))
    assert pending_changes(source, "fast").count == 0
    assert pending_changes(source, "slow").count == 4
    write(source, table.delete().where(table.c.id == 0))
    reflect(source, destination, ReflectionSpec("slow", "slow_copy", create_table=True))
    reflect(source, destination, ReflectionSpec("fast", "fast_copy"))
    assert table_rows(destination, "fast_copy") == table_rows(destination, "slow_copy") == table_rows(source, "orders")


def test_limits_stop_the_drain_and_report_lag(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(30)])
    result = mirror(source, destination, batch_size=10, max_batches=2)
    assert (result.batches, result.drained) == (2, False)
    assert result.lag_seconds >= 0
    assert pending_changes(source, "orders").count == 10
    assert mirror(source, destination).drained is True


# A threaded drain (the reader waits for the writer) and one applied in place (SQLite), each with
# an initial load before its changes: both phases count.
@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("sqlite", "postgresql")], indirect=True)
def test_the_result_says_how_long_reading_and_writing_took(source, destination, monkeypatch):
    """A destination write held up for a second counts as writing, and the reader's wait for it
    does not count as reading: the slow side shows."""
    table = orders(source)
    write(source, table.insert(), [{"id": i} for i in range(5)])
    install_channel(source, "orders", "orders")
    write(source, table.update().values(note="changed"))
    original_apply, slow = Writer.apply, 1.0

    def held_up(self, conn, upserts, deletes, *form):
        if upserts and not held:
            held.append(time.sleep(slow))
        return original_apply(self, conn, upserts, deletes, *form)

    held = []
    monkeypatch.setattr(Writer, "apply", held_up)
    result = mirror(source, destination, initial_load=True)
    assert (result.copied, result.changes, len(held)) == (5, 5, 1)
    assert result.writing_seconds >= slow and result.seconds >= slow
    assert 0 < result.reading_seconds < slow  # a few statements, far below the second waited for
    assert max(result.reading_seconds, result.writing_seconds) <= result.seconds


def test_batch_size_must_be_positive(source, destination):
    with pytest.raises(ValueError, match="batch_size"):
        mirror(source, destination, batch_size=0)
