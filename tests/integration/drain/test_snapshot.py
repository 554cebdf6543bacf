"""Initial load and resync: complete, resumable, bounded, and nothing written during the copy is lost."""

from __future__ import annotations

import contextlib
import importlib
import time

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import (
    ApplyError, ReflectionSpec, install_channel, pending_changes, reflect, uninstall_channel,
)
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.drain.write import Writer
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.snapshot import PROGRESS_TABLE, Progress, is_loaded, snapshot
from tests.support.databases import execute, rows
from tests.support.tables import create, orders, table_rows, write

# The module, not the function core exports under its name.
snapshot_module = importlib.import_module("airflow_provider_pdr.core.snapshot")


def seeded(source, count=23):
    table = orders(source)
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": i} for i in range(count)])
    install_channel(source, "orders", "orders")
    return table


def test_initial_load_copies_existing_rows_once(source, destination):
    seeded(source)
    result = snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=5)
    assert (result.copied, result.chunks, result.done, result.resumed) == (23, 5, True, False)
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    assert is_loaded(source, "orders")
    again = snapshot(source, destination, ReflectionSpec("orders", "mirror"), chunk_size=5)
    assert (again.copied, again.done) == (0, True), "a completed initial load is not repeated"


@pytest.mark.parametrize("source", ["sqlite", "postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
def test_writes_during_the_copy_are_not_lost(source, destination, monkeypatch):
    table = seeded(source, 30)
    original = Writer.apply
    calls = []

    def apply_and_meanwhile_write(self, conn, upserts, deletes, *text):
        removed = original(self, conn, upserts, deletes, *text)
        calls.append(len(upserts))
        if len(calls) == 1:  # after the first chunk: change rows already copied and rows still ahead
            write(source, table.update().where(table.c.id.in_([0, 25])).values(note="changed"))
            write(source, table.delete().where(table.c.id.in_([1, 26])))
            write(source, table.insert(), [{"id": -1, "note": "behind"}, {"id": 100, "note": "ahead"}])
        return removed

    monkeypatch.setattr(Writer, "apply", apply_and_meanwhile_write)
    snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=10)
    monkeypatch.undo()
    assert table_rows(destination, "mirror") != table_rows(source, "orders"), "the copy alone is stale"
    assert pending_changes(source, "orders").count > 0
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
def test_each_chunk_is_read_and_written_under_one_hold(source, destination, monkeypatch):
    """A chunk read while the one before is written is written under the same hold of the lock:
    no drain can apply and acknowledge a newer state between its read and its write."""
    seeded(source, 40)
    monkeypatch.setattr(snapshot_module, "CHUNKS_PER_HOLD", 3)
    lock, rows, apply = type(engine_module(source)).channel_lock, DrainPlan.source_rows, Writer.apply
    holds, reads, writes = [], [], []  # the hold each read and each write ran in (None: outside)
    current = [None]

    @contextlib.contextmanager
    def counted_hold(self, *args):
        with lock(self, *args):
            holds.append(len(holds))
            current[0] = holds[-1]
            yield
            current[0] = None

    def read(self, *args):
        reads.append(current[0])
        return rows(self, *args)

    def write(self, *args):
        writes.append(current[0])
        return apply(self, *args)

    monkeypatch.setattr(type(engine_module(source)), "channel_lock", counted_hold)
    monkeypatch.setattr(DrainPlan, "source_rows", read)
    monkeypatch.setattr(Writer, "apply", write)
    result = snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=4)
    monkeypatch.undo()
    assert result.chunks == 10 and table_rows(destination, "mirror") == table_rows(source, "orders")
    assert holds == [0, 1, 2, 3], "three chunks per hold, the last hold finds the end"
    assert writes == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert reads == [*writes, 3], "every chunk read in the hold it is written in, then the empty read"


def test_a_read_that_fails_mid_copy_lets_the_write_in_flight_finish_inside_the_hold(databases, monkeypatch):
    source, destination = databases.new("postgresql"), databases.new("postgresql")
    seeded(source, 40)
    lock, rows, apply = type(engine_module(source)).channel_lock, DrainPlan.source_rows, Writer.apply
    events = []

    @contextlib.contextmanager
    def recorded_hold(self, *args):
        try:
            with lock(self, *args):
                yield
        finally:
            events.append("released")

    def second_read_fails(self, *args):
        if len([e for e in events if e == "read"]) == 1:
            raise RuntimeError("source lost")
        events.append("read")
        return rows(self, *args)

    def slow_write(self, *args):
        time.sleep(0.3)  # still writing the first chunk when the second read fails
        apply(self, *args)
        events.append("written")

    monkeypatch.setattr(type(engine_module(source)), "channel_lock", recorded_hold)
    monkeypatch.setattr(DrainPlan, "source_rows", second_read_fails)
    monkeypatch.setattr(Writer, "apply", slow_write)
    with pytest.raises(RuntimeError, match="source lost"):
        snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=10)
    assert events == ["read", "written", "released"], "no drain may take the lock before the write lands"


def test_a_crashed_load_resumes_after_the_last_saved_chunk(source, databases, monkeypatch):
    seeded(source, 40)
    destination = databases.new("sqlite")
    original = Progress.save
    saves = []

    def dies_on_the_fourth_save(self, conn):
        saves.append(self.phase)
        if len(saves) == 4:  # start + 2 chunks saved; the third chunk is written but not recorded
            raise KeyboardInterrupt("worker killed")
        original(self, conn)

    monkeypatch.setattr(Progress, "save", dies_on_the_fourth_save)
    with pytest.raises(KeyboardInterrupt):
        snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=10)
    monkeypatch.undo()
    # Through Python the third chunk was committed before its progress; copied inside SQLite,
    # a chunk commits with its progress, and the third is gone with it.
    assert len(table_rows(destination, "mirror")) == (20 if source.dialect.name == "sqlite" else 30)
    assert not is_loaded(source, "orders")
    result = snapshot(source, destination, ReflectionSpec("orders", "mirror"), chunk_size=10)
    assert result.resumed and result.done
    assert result.copied == 20, "resumes after the last saved chunk, copying the unsaved one again"
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


@pytest.mark.parametrize("source,destination", [("postgresql", "postgresql"), ("mysql", "postgresql"),
                                                ("postgresql", "mysql")], indirect=True)
def test_a_refused_chunk_is_named_and_the_load_resumes_there(source, destination):
    seeded(source, 40)  # amount = id
    create(destination, "strict",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100)),
           sa.Column("amount", sa.Numeric(12, 2)),
           sa.CheckConstraint("amount < 25", name="amount_below_25"))
    with pytest.raises(ApplyError) as error:
        snapshot(source, destination, ReflectionSpec("orders", "strict"), chunk_size=10)
    message = str(error.value)
    assert "channel 'orders'" in message and "initial load" in message, message
    assert "id=25" in message, message
    assert "amount_below_25" in message.lower(), message
    # The fourth chunk was read while the third was written: none of it reaches the destination.
    assert [row[0] for row in table_rows(destination, "strict")] == list(range(20))
    assert not is_loaded(source, "orders")

    execute(destination, "ALTER TABLE strict DROP CONSTRAINT amount_below_25")  # the user fixes the mirror
    result = snapshot(source, destination, ReflectionSpec("orders", "strict"), chunk_size=10)
    assert (result.resumed, result.done, result.copied) == (True, True, 20), "resumes at the refused chunk"
    assert table_rows(destination, "strict") == table_rows(source, "orders")


def test_a_time_budget_pauses_and_the_next_run_continues(engine, databases):
    seeded(engine, 25)
    destination = databases.new("sqlite")
    first = snapshot(engine, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=10,
                     time_budget=0)
    assert (first.copied, first.done) == (0, False)
    copied = []
    original = Progress.chunk_copied

    def counting(self, conn, count, last, result):
        copied.append(count)
        return original(self, conn, count, last, result)

    Progress.chunk_copied = counting
    try:
        second = snapshot(engine, destination, ReflectionSpec("orders", "mirror"), chunk_size=10)
    finally:
        Progress.chunk_copied = original
    assert second.resumed and second.done
    assert copied == [10, 10, 5, 0], "one chunk at a time, then the end of the table"


def test_resync_removes_rows_the_source_no_longer_has_and_repairs_the_rest(source, destination):
    table = seeded(source, 12)
    snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True))
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    mirror = sa.Table("mirror", sa.MetaData(), autoload_with=destination)
    write(destination, mirror.insert(), [{"id": 500, "note": "ghost"}, {"id": -3, "note": "ghost"}])
    write(destination, mirror.update().where(mirror.c.id == 4).values(note="tampered"))
    write(destination, mirror.delete().where(mirror.c.id == 5))
    write(source, table.delete().where(table.c.id == 7))  # captured, not yet reflected
    result = snapshot(source, destination, ReflectionSpec("orders", "mirror"), resync=True, chunk_size=4)
    assert result.done and result.copied == 11
    assert result.removed == 3, "two ghosts and the row deleted in the source"
    assert table_rows(destination, "mirror") == table_rows(source, "orders")
    reflect(source, destination, ReflectionSpec("orders", "mirror"))
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
def test_a_mirror_key_the_source_holds_only_in_another_case_is_swept(source, destination):
    """Under a collation that ignores case, the source finds 'A' when asked for 'a': the sweep
    compares the keys it gets back, one chunk of one key at a time, rather than their count."""
    table = create(source, "words", sa.Column("word", sa.String(10, collation="utf8mb4_general_ci"), primary_key=True),
                   sa.Column("note", sa.String(10)))
    write(source, table.insert(), [{"word": "A", "note": "upper"}, {"word": "b", "note": "lower"}])
    install_channel(source, "words", "words")
    mirror = create(destination, "words", sa.Column("word", sa.String(10), primary_key=True),
                    sa.Column("note", sa.String(10)))
    write(destination, mirror.insert(), [{"word": "a", "note": "stale"}])
    result = snapshot(source, destination, ReflectionSpec("words"), resync=True, chunk_size=1)
    assert (result.copied, result.removed) == (2, 1)
    assert table_rows(destination, "words") == [("A", "upper"), ("b", "lower")]


def test_composite_and_text_keys_page_correctly(source, destination):
    table = create(
        source, "lines",
        sa.Column("order", sa.String(20), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(20)),
    )
    write(source, table.insert(), [{"order": o, "line": i, "note": f"{o}{i}"}
                                   for o in ("a", "B", "b", "ä", "A b") for i in range(4)])
    install_channel(source, "lines", "lines")
    result = snapshot(source, destination, ReflectionSpec("lines", create_table=True), chunk_size=3)
    assert result.copied == 20
    assert table_rows(destination, "lines") == table_rows(source, "lines")
    write(source, table.delete().where(table.c.order == "B"))
    result = snapshot(source, destination, ReflectionSpec("lines"), resync=True, chunk_size=3)
    assert result.removed == 4
    assert table_rows(destination, "lines") == table_rows(source, "lines")


def test_uninstall_forgets_the_progress(engine, databases):
    seeded(engine, 3)
    destination = databases.new("sqlite")
    snapshot(engine, destination, ReflectionSpec("orders", "mirror", create_table=True))
    assert sa.inspect(engine).has_table(PROGRESS_TABLE)
    uninstall_channel(engine, "orders")
    assert not sa.inspect(engine).has_table(PROGRESS_TABLE)


@pytest.mark.parametrize("pair", [("firebird", "postgresql"), ("mysql", "firebird")], ids="-".join)
def test_firebird_composite_keys_load_resync_and_reconcile(databases, pair):
    from airflow_provider_pdr.core import ColumnMapping, reconcile

    source, destination = databases.new(pair[0]), databases.new(pair[1])
    table = create(
        source, "lines",
        sa.Column("order", sa.String(20), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(20)),
    )
    write(source, table.insert(), [{"order": o, "line": i, "note": f"{o}{i}"} for o in ("a", "b", "c") for i in range(400)])
    install_channel(source, "lines", "lines")
    assert snapshot(source, destination, ReflectionSpec("lines", create_table=True), chunk_size=250).copied == 1200
    write(source, table.delete().where(table.c.order == "b"))
    keep = ColumnMapping(on_delete="nullify")
    assert reconcile(source, destination, ReflectionSpec("lines", mapping=keep)).extra == 0, \
        "pending deletes are not differences"
    assert snapshot(source, destination, ReflectionSpec("lines"), resync=True, chunk_size=250).removed == 400
    assert table_rows(destination, "lines") == table_rows(source, "lines")
    reflect(source, destination, ReflectionSpec("lines"))
    assert reconcile(source, destination, ReflectionSpec("lines")).differing == 0


def test_without_deletes_a_resync_keeps_rows_the_source_lost(engine, databases):
    from airflow_provider_pdr.core import reconcile

    destination = databases.new("sqlite")
    table = seeded(engine, 5)
    snapshot(engine, destination, ReflectionSpec("orders", "mirror", create_table=True))
    write(engine, table.delete().where(table.c.id == 2))
    reflect(engine, destination, ReflectionSpec("orders", "mirror", deletes=False))
    assert reconcile(engine, destination, ReflectionSpec("orders", "mirror", deletes=False)).differing == 0
    assert reconcile(engine, destination, ReflectionSpec("orders", "mirror")).extra == 1
    assert snapshot(engine, destination, ReflectionSpec("orders", "mirror", deletes=False), resync=True).removed == 0
    assert len(table_rows(destination, "mirror")) == 5


def test_drains_run_between_holds_of_a_copy(databases, monkeypatch):
    """The lock is held for a few chunks at a time: a reflect started during a long copy is not blocked by it."""
    source, destination = databases.new("postgresql"), databases.new("mysql")
    table = seeded(source, 30)
    monkeypatch.setattr(snapshot_module, "CHUNKS_PER_HOLD", 2)
    lock = type(engine_module(source)).channel_lock
    reflected = []

    @contextlib.contextmanager
    def hold_then_let_a_drain_in(self, *args):
        with lock(self, *args):
            yield
        if not reflected:  # after the first hold: two chunks copied, one to go
            reflected.append(None)
            write(source, table.update().where(table.c.id == 0).values(note="during"))
            # The drain sees the unfinished copy and finishes it itself, then applies the change.
            reflected[0] = reflect(source, destination, ReflectionSpec("orders", "mirror", lock_timeout=0.5))

    monkeypatch.setattr(type(engine_module(source)), "channel_lock", hold_then_let_a_drain_in)
    snapshot(source, destination, ReflectionSpec("orders", "mirror", create_table=True), chunk_size=10)
    monkeypatch.undo()
    assert (reflected[0].copied, reflected[0].changes) == (10, 1), "the drain ran between two holds"
    assert table_rows(destination, "mirror") == table_rows(source, "orders")


@pytest.mark.parametrize("driver", ["postgresql", "psycopg"])
def test_a_postgresql_mirror_keeps_its_rows_that_are_already_the_same(databases, driver):
    """A resync over an unchanged mirror writes no new version of a row (its xmin stays), while
    every difference is written, to the byte: a case-only change of a citext value too."""
    source, destination = databases.new("postgresql"), databases.new(driver)
    for engine in (source, destination):  # the mirror made by its owner, citext too
        execute(engine, "CREATE EXTENSION citext")
        execute(engine, "CREATE TABLE tags (id int PRIMARY KEY, label citext, amount numeric(10, 2))")
    execute(source, "INSERT INTO tags SELECT g, 'tag ' || g, g FROM generate_series(1, 50) g")
    install_channel(source, "tags", "tags")
    reflect(source, destination, ReflectionSpec("tags"), initial_load=True)

    def versions() -> dict:
        with destination.connect() as conn:
            return dict(conn.execute(sa.text("SELECT id, xmin::text FROM tags")).all())

    before = versions()
    assert snapshot(source, destination, ReflectionSpec("tags"), resync=True, restart=True).copied == 50
    assert versions() == before  # nothing rewritten
    execute(source, "UPDATE tags SET label = upper(label) WHERE id = 7")  # equal as citext, not as bytes
    execute(source, "UPDATE tags SET amount = amount + 1 WHERE id = 8")
    reflect(source, destination, ReflectionSpec("tags"))
    after = versions()
    assert {key for key in before if after[key] != before[key]} == {7, 8}
    assert rows(destination, "tags", "id") == rows(source, "tags", "id")
    assert rows(destination, "tags", "id")[6][1] == "TAG 7"
