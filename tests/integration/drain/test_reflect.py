"""Reflect: every committed change reaches the mirror, whatever the order, crashes or concurrency."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, ChannelChangedError, install_channel, pending_changes, reflect
from airflow_provider_pdr.core.reflect import WINDOW_BATCHES, Drain, Window, open_drain, seq_ranges
from airflow_provider_pdr.core.engines import engine_module
from tests.support.drain import use_row_path
from tests.support.tables import create, orders, race_writers, table_rows, write


def mirror(source, destination, channel="orders", table="mirror", **kwargs):
    kwargs.setdefault("create_table", True)
    return reflect(source, destination, channel, table, **kwargs)


def test_seq_ranges_cover_exactly_the_numbers_read():
    assert seq_ranges([5, 3, 4, 9, 11, 10, 20]) == [(3, 5), (9, 11), (20, 20)]
    assert seq_ranges([1, 1, 2]) == [(1, 2)]
    assert seq_ranges([]) == []


def test_mirrors_inserts_updates_and_deletes(source, destination, monkeypatch):
    use_row_path(monkeypatch)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i} for i in range(1, 11)])
    write(source, table.update().where(table.c.id <= 3).values(note="updated"))
    write(source, table.delete().where(table.c.id.in_([4, 5])))
    result = mirror(source, destination, batch_size=4)
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
    reflect(source, destination, "lines", name, create_table=True)
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
        patch.setattr(Drain, "acknowledge", crash)
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
        reflect(source, destination, "orders", "narrow")
    assert pending_changes(source, "orders").count == 2
    assert table_rows(destination, "narrow") == []


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["mysql"], indirect=True)
def test_the_garbage_collector_is_paused_only_while_a_drain_runs(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "fine"} for i in range(3)])
    during, apply_batch = [], Drain.apply_batch
    monkeypatch.setattr(Drain, "apply_batch", lambda *args: during.append(gc.isenabled()) or apply_batch(*args))
    mirror(source, destination)
    assert during == [False] and gc.isenabled()
    create(destination, "narrow", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100), nullable=False), sa.Column("amount", sa.Numeric(12, 2)))
    write(source, table.insert(), {"id": 9, "note": None})
    with pytest.raises(ApplyError):
        reflect(source, destination, "orders", "narrow")
    assert gc.isenabled(), "a failed drain resumes the collector too"
    gc.disable()
    try:
        reflect(source, destination, "orders", "mirror")
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
    reflect(source, destination, "fast", "fast_copy", create_table=True)
    assert pending_changes(source, "fast").count == 0
    assert pending_changes(source, "slow").count == 4
    write(source, table.delete().where(table.c.id == 0))
    reflect(source, destination, "slow", "slow_copy", create_table=True)
    reflect(source, destination, "fast", "fast_copy")
    assert table_rows(destination, "fast_copy") == table_rows(destination, "slow_copy") == table_rows(source, "orders")


def test_memory_is_bounded_by_the_batch_not_the_backlog(source, databases, monkeypatch):
    """The exact path reads a backlog at most WINDOW_BATCHES batches of change rows ahead, and
    applies it batch_size change rows at a time."""
    monkeypatch.setattr(Drain, "read_spans", False)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(250)])
    fetched, ahead = [], []
    original = Drain.read_batch
    changes_after = Drain.changes_after

    def reading_ahead(self, conn, after, limit):
        rows = changes_after(self, conn, after, limit)
        ahead.append(len(rows))
        return rows

    monkeypatch.setattr(Drain, "changes_after", reading_ahead)

    def counting(self, conn, window, batch_size):
        batch = original(self, conn, window, batch_size)
        fetched.append(len(batch.seqs))
        return batch

    destination = databases.new("sqlite")
    Drain.read_batch = counting
    try:
        result = mirror(source, destination, batch_size=100)
    finally:
        Drain.read_batch = original
    # Read ahead of the batch in flight, then once more from the oldest change before it ends.
    assert fetched == [100, 100, 50, 0, 0]
    assert max(ahead) == 250 <= WINDOW_BATCHES * 100
    assert result.batches == 3 and result.upserted == 250


def test_spans_read_at_most_the_window_and_write_batch_size_rows_per_transaction(source, destination, monkeypatch):
    use_row_path(monkeypatch)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(250)])
    write(source, table.delete().where(table.c.id < 20))
    spans, writes = [], []
    read_span, apply = Drain.read_span, Drain.apply

    def reading(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        spans.append((limit, batch.changes))
        return batch

    def applying(self, conn, upserts, deletes, *text):
        writes.append((len(upserts), len(deletes)))
        return apply(self, conn, upserts, deletes, *text)

    monkeypatch.setattr(Drain, "read_span", reading)
    monkeypatch.setattr(Drain, "apply", applying)
    result = mirror(source, destination, batch_size=60)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    # 270 change rows in spans of at most 240, then a read after them and one from the oldest
    assert spans == [(240, 240), (240, 30), (240, 0), (240, 0)]
    # At most 60 rows per destination transaction, deletes first. Keys 0-19 are gone when the first
    # span is read, but the second holds their delete changes: they are written once, with it.
    assert writes == [(60, 0), (60, 0), (60, 0), (40, 0), (10, 20)]
    assert (result.batches, result.changes, result.upserted, result.deleted) == (5, 270, 230, 0)


def test_a_key_left_to_the_next_span_stays_pending_until_that_one_lands(source, destination, monkeypatch):
    use_row_path(monkeypatch)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(8)])  # one span of 8
    write(source, table.update().where(table.c.id == 0).values(note="second"))  # the next span
    apply_batch, calls = Drain.apply_batch, []

    def dying_at_the_second_span(self, conn, batch, size):
        calls.append(batch)
        if len(calls) == 2:
            raise KeyboardInterrupt("process died before the second span was written")
        return apply_batch(self, conn, batch, size)

    with monkeypatch.context() as patch:
        patch.setattr(Drain, "apply_batch", dying_at_the_second_span)
        with pytest.raises(KeyboardInterrupt):
            mirror(source, destination, batch_size=2)
    assert [r[0] for r in table_rows(destination, "mirror")] == list(range(1, 8)), "key 0 was left to span 2"
    assert pending_changes(source, "orders").count == 1, "span 1 acknowledged, span 2 pending"
    mirror(source, destination)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert table_rows(destination, "mirror")[0][1] == "second"


def committing_after_the_first_span(source, table, monkeypatch):
    """A connection whose open transaction holds the next change number (key 2) and commits
    right after the first span is read."""
    early = source.connect()
    early.execute(table.insert(), {"id": 2, "note": "early, commits late"})
    read_span = Drain.read_span

    def commit_the_early_one_after_the_read(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        if early.in_transaction():
            early.commit()
        return batch

    monkeypatch.setattr(Drain, "read_span", commit_the_early_one_after_the_read)
    return early


def exact_batches(monkeypatch) -> list[list[int]]:
    """The sequence numbers of every batch the exact path reads, as the drain goes."""
    read_batch, seen = Drain.read_batch, []

    def reading_exactly(self, conn, window, batch_size):
        batch = read_batch(self, conn, window, batch_size)
        seen.append(sorted(batch.seqs))
        return batch

    monkeypatch.setattr(Drain, "read_batch", reading_exactly)
    return seen


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_change_that_commits_inside_a_span_after_it_was_read_is_not_lost(source, destination, monkeypatch):
    """A span with a gap: a transaction holds the missing number and commits after the read. Its
    numbers, read again before the delete, show one more: nothing is deleted, and the rest of the
    run reads change rows one at a time."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), {"id": 1, "note": "first"})
    early = committing_after_the_first_span(source, table, monkeypatch)
    write(source, table.insert(), {"id": 3, "note": "on time"})
    exact = exact_batches(monkeypatch)
    result = mirror(source, destination)
    early.close()
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert [r[0] for r in table_rows(destination, "mirror")] == [1, 2, 3]
    assert len(exact[0]) == 3, "the span was read again, with the late change, one change row at a time"
    assert result.drained and pending_changes(source, "orders").count == 0


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_late_commit_found_while_the_next_span_is_written_loses_nothing(source, destination, monkeypatch):
    """The first span's acknowledgement, made while the second span is being written, finds a
    change that committed in its gap: the second span lands unacknowledged, and everything is
    read again one change row at a time."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), {"id": 1, "note": "first"})
    early = committing_after_the_first_span(source, table, monkeypatch)
    write(source, table.insert(), [{"id": i, "note": "on time"} for i in range(3, 13)])
    exact, apply_batch, written = exact_batches(monkeypatch), Drain.apply_batch, []
    monkeypatch.setattr(Drain, "apply_batch", lambda self, conn, batch, size: written.append(batch.span)
                        or apply_batch(self, conn, batch, size))
    result = mirror(source, destination, batch_size=1)  # spans of 4 change rows
    early.close()
    spans = [span for span in written if span is not None]  # the exact path's batches have no span
    assert len(spans) == 2, "span 2 was written while span 1 was acknowledged, then the spans stopped"
    assert spans[0].first == 1 and not spans[0].gapless, "span 1 has the gap of the late change"
    assert spans[1].first > spans[0].last
    assert exact and exact[0][0] == 1, "the exact path starts again from the oldest change"
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert [r[0] for r in table_rows(destination, "mirror")] == list(range(1, 13))
    assert result.drained and pending_changes(source, "orders").count == 0


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_transactions_left_open_inside_and_just_after_a_span_neither_stall_it_nor_are_lost(
        source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    if source.dialect.name == "mysql":  # a delete that waited would fail in 2 s, not 50
        source = sa.create_engine(source.url, connect_args={"init_command": "SET innodb_lock_wait_timeout = 2"})
    write(source, table.insert(), {"id": 1, "note": "on time"})
    with source.connect() as inside, source.connect() as after:  # closed (rolled back) if this fails
        inside.execute(table.insert(), {"id": 2, "note": "open inside"})  # holds seq 2
        write(source, table.insert(), [{"id": 3, "note": "on time"}, {"id": 4, "note": "on time"}])
        after.execute(table.insert(), {"id": 5, "note": "open after"})  # holds seq 5, just past the span
        with monkeypatch.context() as patch:
            patch.setattr(Drain, "read_batch", lambda *args: pytest.fail("the span was acknowledged as read"))
            assert mirror(source, destination).changes == 3
        assert [r[0] for r in table_rows(destination, "mirror")] == [1, 3, 4]
        inside.commit()
        after.commit()
    mirror(source, destination)
    assert [r[0] for r in table_rows(destination, "mirror")] == [1, 2, 3, 4, 5]
    assert pending_changes(source, "orders").count == 0


def test_change_rows_that_vanish_under_a_span_stop_the_drain(source, destination, monkeypatch):
    use_row_path(monkeypatch)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(3)])
    read_span = Drain.read_span

    def emptied_meanwhile(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        write(source, sa.text(f"DELETE FROM {self.changes.name}"))
        return batch

    monkeypatch.setattr(Drain, "read_span", emptied_meanwhile)
    with pytest.raises(ChannelChangedError, match=r"channel 'orders': 3 of the 3 change rows read vanished"):
        mirror(source, destination)


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
    original_apply, slow = Drain.apply, 1.0

    def held_up(self, conn, upserts, deletes, *form):
        if upserts and not held:
            held.append(time.sleep(slow))
        return original_apply(self, conn, upserts, deletes, *form)

    held = []
    monkeypatch.setattr(Drain, "apply", held_up)
    result = mirror(source, destination, initial_load=True)
    assert (result.copied, result.changes, len(held)) == (5, 5, 1)
    assert result.writing_seconds >= slow and result.seconds >= slow
    assert 0 < result.reading_seconds < slow  # a few statements, far below the second waited for
    assert max(result.reading_seconds, result.writing_seconds) <= result.seconds


def test_batch_size_must_be_positive(source, destination):
    with pytest.raises(ValueError, match="batch_size"):
        mirror(source, destination, batch_size=0)


def test_a_key_changed_more_often_than_a_batch_holds_is_drained_in_bounded_batches(source, destination, monkeypatch):
    use_row_path(monkeypatch)
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": 1, "note": "hot"}, {"id": 2, "note": "cold"}])
    for i in range(50):
        write(source, table.update().where(table.c.id == 1).values(note=f"v{i}"))
    result = mirror(source, destination, batch_size=4)
    assert table_rows(destination, "mirror") == [(1, "v49", None), (2, "cold", None)]
    # A span holds 16 change rows: the hot key's 51 changes take four spans, and each span leaves
    # the key to the next, which writes it again: it is written once, with its last state.
    assert (result.changes, result.batches, result.upserted) == (52, 2, 2)
    assert pending_changes(source, "orders").count == 0


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_late_commit_below_the_read_ahead_is_applied_in_the_same_run(source, destination, monkeypatch):
    """The window reads on after the highest seq it has seen; a change that commits late below
    it is read when the window runs dry, before the run reports the channel drained."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    early = source.connect()
    early.execute(table.insert(), {"id": 1, "note": "early, commits late"})  # takes the lower seq
    write(source, table.insert(), [{"id": i, "note": "on time"} for i in range(2, 12)])
    original = Drain.apply

    def commit_the_early_one_meanwhile(self, conn, upserts, deletes, *text):
        if early.in_transaction():
            early.commit()
        return original(self, conn, upserts, deletes, *text)

    monkeypatch.setattr(Drain, "apply", commit_the_early_one_meanwhile)
    result = mirror(source, destination, batch_size=3)
    early.close()
    assert result.drained and pending_changes(source, "orders").count == 0
    assert [r[0] for r in table_rows(destination, "mirror")] == list(range(1, 12))


# SQLite's driver stalls beside a busy thread: a drain with SQLite on either side applies in place.
@pytest.mark.parametrize("source,destination", [("postgresql", "mysql"), ("mysql", "postgresql"),
                                                ("postgresql", "postgresql")], indirect=True)
def test_the_next_batch_is_read_while_one_is_applied_and_lands_after_it(source, destination, monkeypatch):
    """Batch 2 reads key 1's newer state while batch 1 (with its older state) is still being
    written: batches land in the order they were read, so the newer state wins."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(1, 5)])
    batch_read, original_read, original_apply = threading.Event(), Drain.read_batch, Drain.apply

    def read(self, conn, window, batch_size):
        batch = original_read(self, conn, window, batch_size)
        if batch.seqs and len(calls) == 1:
            batch_read.set()
        return batch

    calls = []

    def slow_first_apply(self, conn, upserts, deletes, *text):
        calls.append(len(upserts))
        if len(calls) == 1:
            write(source, table.update().where(table.c.id == 1).values(note="second"))
            assert batch_read.wait(10), "the next batch was not read while this one was applied"
        return original_apply(self, conn, upserts, deletes, *text)

    monkeypatch.setattr(Drain, "read_spans", False)  # batches of two keys, not one span of four
    monkeypatch.setattr(Drain, "read_batch", read)
    monkeypatch.setattr(Drain, "apply", slow_first_apply)
    result = mirror(source, destination, batch_size=2)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert table_rows(destination, "mirror")[0] == (1, "second", None)
    assert result.drained and calls[0] == 2


# MySQL reads the window and the rows in one REPEATABLE READ snapshot: the rows cannot vanish in between.
@pytest.mark.parametrize("source", ["sqlite", "postgresql"], indirect=True)
def test_change_rows_that_vanish_under_a_drain_stop_it_and_acknowledge_nothing(source, destination, monkeypatch):
    # Date keys are not looked up exactly (only integers everywhere, and a few types in PostgreSQL):
    # a key the lookup does not find is decided by joining its change row, which is gone.
    table = create(source, "orders", sa.Column("day", sa.Date, primary_key=True), sa.Column("note", sa.String(10)))
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"day": dt.date(2026, 1, d)} for d in range(1, 4)])
    write(source, table.delete().where(table.c.day == dt.date(2026, 1, 1)))
    original = Window.take

    def emptied_meanwhile(self, limit):
        taken = original(self, limit)
        write(source, sa.text(f"DELETE FROM {self.drain.changes.name}"))
        return taken

    monkeypatch.setattr(Window, "take", emptied_meanwhile)
    with pytest.raises(ChannelChangedError, match=r"channel 'orders': change rows \[\d+\] vanished"):
        mirror(source, destination)
    assert table_rows(destination, "mirror") == []


def test_a_key_the_exact_lookup_does_not_find_is_deleted_without_a_join(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(5)])
    mirror(source, destination)
    write(source, table.delete().where(table.c.id >= 3))
    monkeypatch.setattr(Drain, "decide", lambda *args: pytest.fail("integer keys are decided by the lookup alone"))
    assert mirror(source, destination).deleted == 2
    assert [r[0] for r in table_rows(destination, "mirror")] == [0, 1, 2]


@pytest.mark.parametrize("driver", ["postgresql", "psycopg"])
def test_postgresql_array_lookups_compare_as_the_column_does(databases, driver):
    """`= ANY(array)` stands in for IN only where it is the column's own equality: never cut to a
    varchar's length (which would find another key), never for char (blank-padded) or citext;
    every value arrives whole, whatever quotes, commas, braces or percent signs it holds (the array
    is written into the statement as a literal, with either driver)."""
    engine = databases.new(driver)
    module = engine_module(engine)
    key = uuid.uuid4()
    hostile = ['a"b', "a\\b", "a,b", "{x}", " sp ", "NULL", "é€", "", "it's", "100%", "%s", "%(v)s", "'); --"]
    table = create(engine, "keys", sa.Column("n", sa.SmallInteger, primary_key=True), sa.Column("code", sa.String(4)),
                   sa.Column("padded", sa.CHAR(4)), sa.Column("token", sa.Uuid), sa.Column("amount", sa.Numeric(6, 2)),
                   sa.Column("label", sa.Text))
    write(engine, table.insert(), {"n": 1, "code": "abcd", "padded": "ab", "token": key, "amount": 1.5})
    write(engine, table.insert(), [{"n": i, "label": text} for i, text in enumerate(hostile, 2)])
    cases = [("n", [1, 2**40], [1]), ("code", ["abcd"], [1]), ("code", ["abcdX", "ABCD"], []),
             ("padded", ["ab"], [1]), ("token", [key], [1]), ("token", [str(key)], [1]), ("amount", [1.5], [1]),
             ("amount", [1.499], []), ("label", hostile, list(range(2, 2 + len(hostile)))), ("label", ["a", "b"], [])]
    with engine.connect() as conn:
        for column, values, found in cases:
            query = sa.select(table.c.n).where(module.in_list([table.c[column]], "values")).order_by(table.c.n)
            assert conn.scalars(query, {"values": values}).all() == found, (column, values)
    forms = {c: "ANY" in str(module.in_list([table.c[c]], "v").compile(dialect=engine.dialect)) for c in table.c.keys()}
    assert forms == {"n": True, "code": True, "padded": False, "token": True, "amount": False, "label": True}
    assert {c: module.exact_lookup(table.c[c].type) for c in table.c.keys()} == forms


def span_plan(conn, drain, limit: int) -> str:
    """The plan PostgreSQL makes for the drain's span read of `limit` change rows, in this transaction."""
    compiled = drain.span_queries[False].compile(dialect=conn.dialect)
    return "\n".join(row[0] for row in conn.exec_driver_sql(
        "EXPLAIN " + compiled.string, {**compiled.params, "limit": limit}))


def test_a_span_from_a_large_postgresql_table_finds_its_rows_by_index(databases):
    """PostgreSQL's planner joins a span's keys to a few hundred thousand rows or more by hashing
    the whole table (five times slower at 2,000,000 rows): the read looks each key up instead."""
    source, destination = databases.new("postgresql"), databases.new("sqlite")
    table = orders(source)
    with source.begin() as conn:
        conn.execute(table.insert().from_select(["id", "note"], sa.select(
            sa.func.generate_series(1, 300_000).label("id"), sa.literal("old"))))
    install_channel(source, "orders", "orders")
    write(source, table.update().where(table.c.id <= 20_000).values(note="new"))
    with source.begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # the table and its change table, as autovacuum would
    with open_drain(source, destination, "orders", "mirror", None, create_table=True, deletes=True,
                    mapping=None) as (drain, sconn, _):
        assert "Seq Scan on orders" in span_plan(sconn, drain, 20_000), "the planner no longer reads it all: rethink"
        sconn.rollback()
        drain.src.prepare_join(sconn, drain.source_table, 20_000)
        plan = span_plan(sconn, drain, 20_000)
        assert "Index Scan using orders_pkey" in plan and "Seq Scan on orders" not in plan, plan
        sconn.rollback()  # the settings end with the read transaction
        assert sconn.exec_driver_sql("SHOW enable_hashjoin").scalar() == "on"
        # A table of at most ten rows per key asked for is left to the planner, and so is what a
        # user set for the session.
        sconn.exec_driver_sql("SET enable_mergejoin = off")
        drain.src.prepare_join(sconn, drain.source_table, 40_000)
        assert [sconn.exec_driver_sql(f"SHOW {name}").scalar() for name in ("enable_hashjoin", "enable_mergejoin")] \
            == ["on", "off"]
        sconn.rollback()
    result = mirror(source, destination, batch_size=5000)  # spans of 20,000 changes, looked up by index
    assert (result.changes, result.upserted, result.drained) == (20_000, 20_000, True)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")[:20_000]
