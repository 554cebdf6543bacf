"""Spans and windows: a drain reads its backlog a bounded window at a time; changes that commit late,
change rows that vanish and the read-ahead lose nothing."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ChannelChangedError, install_channel, pending_changes
from airflow_provider_pdr.core.drain.read import WINDOW_BATCHES, Reader, Window
from airflow_provider_pdr.core.drain.route import EXACT_PATH, ROW_PATH
from airflow_provider_pdr.core.drain.write import Writer
from tests.support.drain import mirror
from tests.support.tables import create, orders, table_rows, write


def test_memory_is_bounded_by_the_batch_not_the_backlog(source, databases, monkeypatch):
    """The exact path reads a backlog at most WINDOW_BATCHES batches of change rows ahead, and
    applies it batch_size change rows at a time."""
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(250)])
    fetched, ahead = [], []
    original = Reader.read_batch
    changes_after = Reader.changes_after

    def reading_ahead(self, conn, after, limit):
        rows = changes_after(self, conn, after, limit)
        ahead.append(len(rows))
        return rows

    monkeypatch.setattr(Reader, "changes_after", reading_ahead)

    def counting(self, conn, window, batch_size):
        batch = original(self, conn, window, batch_size)
        fetched.append(len(batch.seqs))
        return batch

    destination = databases.new("sqlite")
    Reader.read_batch = counting
    try:
        result = mirror(source, destination, batch_size=100, route=EXACT_PATH)
    finally:
        Reader.read_batch = original
    # Read ahead of the batch in flight, then once more from the oldest change before it ends.
    assert fetched == [100, 100, 50, 0, 0]
    assert max(ahead) == 250 <= WINDOW_BATCHES * 100
    assert result.batches == 3 and result.upserted == 250


def test_spans_read_at_most_the_window_and_write_batch_size_rows_per_transaction(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(250)])
    write(source, table.delete().where(table.c.id < 20))
    spans, writes = [], []
    read_span, apply = Reader.read_span, Writer.apply

    def reading(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        spans.append((limit, batch.changes))
        return batch

    def applying(self, conn, upserts, deletes, *text):
        writes.append((len(upserts), len(deletes)))
        return apply(self, conn, upserts, deletes, *text)

    monkeypatch.setattr(Reader, "read_span", reading)
    monkeypatch.setattr(Writer, "apply", applying)
    result = mirror(source, destination, batch_size=60, route=ROW_PATH)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    # 270 change rows in spans of at most 240, then a read after them and one from the oldest
    assert spans == [(240, 240), (240, 30), (240, 0), (240, 0)]
    # At most 60 rows per destination transaction, deletes first. Keys 0-19 are gone when the first
    # span is read, but the second holds their delete changes: they are written once, with it.
    assert writes == [(60, 0), (60, 0), (60, 0), (40, 0), (10, 20)]
    assert (result.batches, result.changes, result.upserted, result.deleted) == (5, 270, 230, 0)


def test_a_key_left_to_the_next_span_stays_pending_until_that_one_lands(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "first"} for i in range(8)])  # one span of 8
    write(source, table.update().where(table.c.id == 0).values(note="second"))  # the next span
    apply_batch, calls = Writer.apply_batch, []

    def dying_at_the_second_span(self, conn, batch, size):
        calls.append(batch)
        if len(calls) == 2:
            raise KeyboardInterrupt("process died before the second span was written")
        return apply_batch(self, conn, batch, size)

    with monkeypatch.context() as patch:
        patch.setattr(Writer, "apply_batch", dying_at_the_second_span)
        with pytest.raises(KeyboardInterrupt):
            mirror(source, destination, batch_size=2, route=ROW_PATH)
    assert [r[0] for r in table_rows(destination, "mirror")] == list(range(1, 8)), "key 0 was left to span 2"
    assert pending_changes(source, "orders").count == 1, "span 1 acknowledged, span 2 pending"
    mirror(source, destination, route=ROW_PATH)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert table_rows(destination, "mirror")[0][1] == "second"


def committing_after_the_first_span(source, table, monkeypatch):
    """A connection whose open transaction holds the next change number (key 2) and commits
    right after the first span is read."""
    early = source.connect()
    early.execute(table.insert(), {"id": 2, "note": "early, commits late"})
    read_span = Reader.read_span

    def commit_the_early_one_after_the_read(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        if early.in_transaction():
            early.commit()
        return batch

    monkeypatch.setattr(Reader, "read_span", commit_the_early_one_after_the_read)
    return early


def exact_batches(monkeypatch) -> list[list[int]]:
    """The sequence numbers of every batch the exact path reads, as the drain goes."""
    read_batch, seen = Reader.read_batch, []

    def reading_exactly(self, conn, window, batch_size):
        batch = read_batch(self, conn, window, batch_size)
        seen.append(sorted(batch.seqs))
        return batch

    monkeypatch.setattr(Reader, "read_batch", reading_exactly)
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
    exact, apply_batch, written = exact_batches(monkeypatch), Writer.apply_batch, []
    monkeypatch.setattr(Writer, "apply_batch", lambda self, conn, batch, size: written.append(batch.span)
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
            patch.setattr(Reader, "read_batch", lambda *args: pytest.fail("the span was acknowledged as read"))
            assert mirror(source, destination).changes == 3
        assert [r[0] for r in table_rows(destination, "mirror")] == [1, 3, 4]
        inside.commit()
        after.commit()
    mirror(source, destination)
    assert [r[0] for r in table_rows(destination, "mirror")] == [1, 2, 3, 4, 5]
    assert pending_changes(source, "orders").count == 0


def test_change_rows_that_vanish_under_a_span_stop_the_drain(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(3)])
    read_span = Reader.read_span

    def emptied_meanwhile(self, conn, after, limit):
        batch = read_span(self, conn, after, limit)
        write(source, sa.text(f"DELETE FROM {self.plan.changes.name}"))
        return batch

    monkeypatch.setattr(Reader, "read_span", emptied_meanwhile)
    with pytest.raises(ChannelChangedError, match=r"channel 'orders': 3 of the 3 change rows read vanished"):
        mirror(source, destination, route=ROW_PATH)


def test_a_key_changed_more_often_than_a_batch_holds_is_drained_in_bounded_batches(source, destination, monkeypatch):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": 1, "note": "hot"}, {"id": 2, "note": "cold"}])
    for i in range(50):
        write(source, table.update().where(table.c.id == 1).values(note=f"v{i}"))
    result = mirror(source, destination, batch_size=4, route=ROW_PATH)
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
    original = Writer.apply

    def commit_the_early_one_meanwhile(self, conn, upserts, deletes, *text):
        if early.in_transaction():
            early.commit()
        return original(self, conn, upserts, deletes, *text)

    monkeypatch.setattr(Writer, "apply", commit_the_early_one_meanwhile)
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
    batch_read, original_read, original_apply = threading.Event(), Reader.read_batch, Writer.apply

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

    monkeypatch.setattr(Reader, "read_batch", read)
    monkeypatch.setattr(Writer, "apply", slow_first_apply)
    result = mirror(source, destination, batch_size=2, route=EXACT_PATH)  # batches of two keys, not one span of four
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
        write(source, sa.text(f"DELETE FROM {self.reader.plan.changes.name}"))
        return taken

    monkeypatch.setattr(Window, "take", emptied_meanwhile)
    with pytest.raises(ChannelChangedError, match=r"channel 'orders': change rows \[\d+\] vanished"):
        mirror(source, destination)
    assert table_rows(destination, "mirror") == []
