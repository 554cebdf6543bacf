"""Draining inside the source database: SQLite -> SQLite applies each span of changes by statements
SQLite runs itself, the destination file attached to the source's connection, and values the row
path converts pass through the same Python functions there. It must end exactly where the row path
ends, value for value and under the same faults."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import random
import sqlite3

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, ReflectionSpec, install_channel, pending_changes, reflect, snapshot
from airflow_provider_pdr.core.drain.ack import Acknowledger
from airflow_provider_pdr.core.drain.route import ROW_PATH
from airflow_provider_pdr.core.snapshot import Progress
from airflow_provider_pdr.core.transform import ColumnSpec, ColumnMapping
from tests.support.tables import create, race_writers, table_rows, write

INSIDE = "applying changes inside the source database"


@pytest.fixture
def pair(databases):
    return databases.new("sqlite"), databases.new("sqlite")


def plain(engine: sa.Engine, name: str = "items") -> sa.Table:
    """Only types whose values neither side converts (integers and text), and integer keys: the
    ones that compare exactly, so that change rows may be grouped by key in the database."""
    return create(
        engine, name,
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(100)),
        sa.Column("qty", sa.Integer),
    )


def inside_used(caplog) -> bool:
    used = any(INSIDE in record.getMessage() for record in caplog.records)
    caplog.clear()
    return used


def test_it_ends_exactly_where_the_row_path_ends(pair, caplog, monkeypatch):
    """Two channels on one table: one drained inside SQLite, one through Python rows, both again
    and again while inserts, updates, key updates and deletes go on; every mirror equals the source."""
    source, destination = pair
    table = plain(source)
    install_channel(source, "inside", "items")
    install_channel(source, "rows", "items")
    rng = random.Random(7)
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    for round_ in range(6):
        with source.begin() as conn:
            for _ in range(40):
                key = {"shard": rng.choice((1, 2)), "id": rng.randrange(30)}
                where = sa.and_(table.c.shard == key["shard"], table.c.id == key["id"])
                if conn.execute(sa.select(table.c.id).where(where)).first() is None:
                    conn.execute(table.insert(), {**key, "note": f"r{round_}", "qty": rng.randrange(9)})
                elif rng.random() < 0.2:
                    conn.execute(table.delete().where(where))
                elif rng.random() < 0.2:  # a key update: the old key must leave the mirror
                    new_id = rng.randrange(30, 60)
                    if conn.execute(sa.select(table.c.id).where(table.c.shard == key["shard"],
                                                                table.c.id == new_id)).first() is None:
                        conn.execute(table.update().where(where).values(id=new_id))
                else:
                    conn.execute(table.update().where(where).values(note=f"u{round_}", qty=table.c.qty + 1))
        result = reflect(source, destination, ReflectionSpec("inside", "by_sql", create_table=True), batch_size=7)
        assert inside_used(caplog) and result.drained and result.writing_seconds > 0  # applied inside: writing
        reflect(source, destination, ReflectionSpec("rows", "by_rows", create_table=True, route=ROW_PATH), batch_size=7)
        assert not inside_used(caplog)
        assert table_rows(destination, "by_sql") == table_rows(destination, "by_rows") == table_rows(source, "items")
    assert pending_changes(source, "inside").count == 0


def test_each_span_is_one_transaction_of_at_most_batch_size_rows_and_limits_stop_after_one(pair):
    source, destination = pair
    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(10)])
    result = reflect(source, destination, ReflectionSpec("items", create_table=True), batch_size=3, max_batches=2)
    assert (result.batches, result.changes, result.upserted, result.drained) == (2, 6, 6, False)
    assert pending_changes(source, "items").count == 4
    result = reflect(source, destination, ReflectionSpec("items"), batch_size=3, time_budget=0)
    assert (result.batches, result.changes) == (1, 3)
    result = reflect(source, destination, ReflectionSpec("items"), batch_size=3)
    assert (result.batches, result.changes, result.drained) == (1, 1, True)
    assert table_rows(destination, "items") == table_rows(source, "items")
    with source.connect() as conn:  # the pooled connection went back without the destination attached
        assert "pdr_destination" not in [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]


def test_a_crash_between_the_destination_commit_and_the_acknowledgement_converges(pair, monkeypatch):
    source, destination = pair
    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "first"} for i in range(5)])

    def crash(self, conn, batch):
        raise KeyboardInterrupt("process died after the destination commit")

    with monkeypatch.context() as patch:
        patch.setattr(Acknowledger, "acknowledge", crash)
        with pytest.raises(KeyboardInterrupt):
            reflect(source, destination, ReflectionSpec("items", create_table=True))
    assert len(table_rows(destination, "items")) == 5, "the destination had committed"
    assert pending_changes(source, "items").count == 5, "nothing was acknowledged"
    write(source, table.update().where(table.c.id == 0).values(note="second"))
    reflect(source, destination, ReflectionSpec("items"))
    assert table_rows(destination, "items") == table_rows(source, "items")
    assert pending_changes(source, "items").count == 0


def test_a_row_the_destination_refuses_is_named_and_nothing_is_acknowledged(pair, caplog):
    source, destination = pair
    table = plain(source)
    install_channel(source, "items", "items")
    create(destination, "items",
           sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100), nullable=False),
           sa.Column("qty", sa.Integer))
    write(source, table.insert(), [{"shard": 1, "id": 1, "note": "fine"}, {"shard": 1, "id": 2, "note": None}])
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    with pytest.raises(ApplyError, match=r"the row shard=1, id=2 was rejected: NOT NULL"):
        reflect(source, destination, ReflectionSpec("items"))
    assert inside_used(caplog), "tried inside first, then row by row to name the row"
    assert pending_changes(source, "items").count == 2
    assert table_rows(destination, "items") == []


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_concurrent_writers_lose_nothing(pair, journal):
    source, destination = pair
    for engine in pair:  # a WAL reader keeps its snapshot while writers commit beside it
        with engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA journal_mode = {journal}")
    table = create(source, "orders", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("note", sa.String(100)))
    install_channel(source, "orders", "orders")
    errors = race_writers(source, table, lambda: reflect(source, destination,
                                                         ReflectionSpec("orders", create_table=True), batch_size=7))
    reflect(source, destination, ReflectionSpec("orders"))
    assert not errors
    assert table_rows(destination, "orders") == table_rows(source, "orders")
    assert table_rows(source, "orders")


@pytest.mark.parametrize("on_delete, left", [
    ("delete", [(1, 3, "changed", 3, 6)]),
    ("keep", [(1, 1, "n1", 1, 2), (1, 2, "n2", 2, 4), (1, 3, "changed", 3, 6)]),
])
def test_filters_renames_and_computed_fields(pair, caplog, on_delete, left):
    """The mirror has the source's name and a column the filter names: the filter must still
    mean the source's row, in every statement."""
    source, destination = pair
    table = plain(source)
    install_channel(source, "items", "items")
    mapping = ColumnMapping(fields=(ColumnSpec("shard"), ColumnSpec("id"), ColumnSpec("label", source="note"), ColumnSpec("qty"),
                              ColumnSpec("double", expression="qty * 2", type="integer")),
                      filter="items.qty > 0", on_delete=on_delete)
    write(source, table.insert(), [{"shard": 1, "id": i, "note": f"n{i}", "qty": i} for i in range(4)])
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("items", create_table=True, mapping=mapping))
    assert inside_used(caplog)
    assert table_rows(destination, "items") == [(1, i, f"n{i}", i, 2 * i) for i in (1, 2, 3)]
    write(source, table.update().where(table.c.id == 1).values(qty=0))  # no longer matches the filter
    write(source, table.delete().where(table.c.id == 2))
    write(source, table.update().where(table.c.id == 3).values(note="changed"))
    reflect(source, destination, ReflectionSpec("items", mapping=mapping))
    assert inside_used(caplog) and "refused" not in caplog.text
    assert table_rows(destination, "items") == left
    assert pending_changes(source, "items").count == 0


def test_a_destination_table_in_the_source_file_itself(databases, caplog):
    source = databases.new("sqlite")
    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(3)])
    write(source, table.delete().where(table.c.id == 1))
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, source, ReflectionSpec("items", "items_copy", create_table=True))
    assert inside_used(caplog)
    assert table_rows(source, "items_copy") == table_rows(source, "items")


def stored(engine: sa.Engine, name: str) -> list[tuple]:
    """Each stored value with its storage class: 80 and 80.0, or '1' and 1, are not the same."""
    with engine.connect() as conn:
        columns = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({name})")]
        fields = ", ".join(f'"{c}", typeof("{c}")' for c in columns)
        return [tuple(row) for row in conn.exec_driver_sql(f"SELECT {fields} FROM {name} ORDER BY 1")]


def test_values_the_row_path_converts_pass_through_its_functions(pair, caplog, monkeypatch):
    """Decimals become text of their scale in the mirror, timestamps and booleans are checked,
    whatever the source holds: inside SQLite each such value goes through the row path's own
    function, so both mirrors hold the same values of the same storage classes."""
    source, destination = pair
    table = create(source, "kinds", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("price", sa.Numeric(12, 2)), sa.Column("rate", sa.Numeric(20, 8)),
                   sa.Column("stamp", sa.DateTime), sa.Column("day", sa.Date), sa.Column("flag", sa.Boolean),
                   sa.Column("ratio", sa.Float), sa.Column("data", sa.LargeBinary), sa.Column("note", sa.Text))
    install_channel(source, "inside", "kinds")
    install_channel(source, "rows", "kinds")
    full = dict.fromkeys(table.columns.keys())
    write(source, table.insert(), [{**full, **row} for row in [
        {"id": 1, "price": decimal.Decimal("80.00"), "rate": decimal.Decimal("0.00000001"),
         "stamp": dt.datetime(2026, 1, 2, 3, 4, 5, 6), "day": dt.date(2026, 1, 2), "flag": True, "ratio": 0.1 + 0.2,
         "data": b"\x00\xff", "note": "ünï"},
        {"id": 2, "price": decimal.Decimal("-1234567890.5"), "rate": decimal.Decimal("123456789012.12345678"),
         "stamp": dt.datetime(1999, 12, 31, 23, 59, 59), "day": dt.date(1, 1, 1), "flag": False, "ratio": -0.0},
        {"id": 3},
    ]])
    # What another program may have stored: REAL and TEXT decimals, an integer where a float goes.
    with source.begin() as conn:
        conn.exec_driver_sql("INSERT INTO kinds (id, price, rate, ratio) VALUES (4, 12.345, '7.5', 3), "
                             "(5, 1e20, 5e-324, 1e308), (6, '0.1', 0.30000000000000004, 2.5)")
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("inside", "by_sql", create_table=True))
    assert inside_used(caplog)
    reflect(source, destination, ReflectionSpec("rows", "by_rows", create_table=True, route=ROW_PATH))
    assert not inside_used(caplog)
    assert stored(destination, "by_sql") == stored(destination, "by_rows")
    assert stored(destination, "by_sql")[0][2:4] == ("80.00", "text")  # carried as text of its scale
    assert table_rows(destination, "by_sql") == table_rows(destination, "by_rows")
    assert len(table_rows(destination, "by_sql")) == 6


def test_initial_loads_and_resyncs_copy_inside_as_the_row_path_does(pair, caplog, monkeypatch):
    """An initial load and a resync, chunk by chunk in key order (a composite key, a filter),
    copy inside SQLite the values the row path writes, converted values too."""
    source, destination = pair
    table = create(source, "kinds", sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("price", sa.Numeric(12, 2)), sa.Column("stamp", sa.DateTime), sa.Column("flag", sa.Boolean))
    write(source, table.insert(), [
        {"shard": shard, "id": i, "price": decimal.Decimal(i) / 4, "stamp": dt.datetime(2026, 1, 1, i % 24),
         "flag": i % 3 == 0} for shard in (1, 2) for i in range(23)])
    with source.begin() as conn:  # stored as another program might have: REAL, INTEGER and TEXT decimals
        conn.exec_driver_sql("UPDATE kinds SET price = 0.1 + 0.2 WHERE id = 1")
        conn.exec_driver_sql("UPDATE kinds SET price = '7.125' WHERE id = 2")
    install_channel(source, "inside", "kinds")
    install_channel(source, "rows", "kinds")
    mapping = ColumnMapping(filter="kinds.id % 5 != 4")
    caplog.set_level(logging.INFO, "airflow_provider_pdr")

    def both(create_table=False, **options):
        inside = snapshot(source, destination,
                          ReflectionSpec("inside", "by_sql", mapping=mapping, create_table=create_table),
                          chunk_size=7, **options)
        assert "copying inside the source database" in caplog.text
        caplog.clear()
        rows = snapshot(source, destination,
                        ReflectionSpec("rows", "by_rows", mapping=mapping, create_table=create_table, route=ROW_PATH),
                        chunk_size=7, **options)
        assert "copying inside" not in caplog.text
        assert (inside.copied, inside.removed, inside.chunks, inside.done) == (rows.copied, rows.removed,
                                                                                rows.chunks, True)
        assert stored(destination, "by_sql") == stored(destination, "by_rows")
        return inside

    loaded = both(create_table=True)
    assert (loaded.copied, loaded.chunks) == (38, 6)  # 23 rows a shard, those with id % 5 == 4 left out
    write(source, table.update().where(table.c.id == 3).values(price=decimal.Decimal("9.99"), flag=None))
    write(source, table.delete().where(table.c.id == 5))
    write(source, table.update().where(table.c.id == 6).values(id=29))  # leaves the filter
    resynced = both(resync=True, restart=True)
    assert (resynced.copied, resynced.removed) == (34, 4)
    assert [row[:2] for row in table_rows(destination, "by_sql")] == [
        (shard, i) for shard in (1, 2) for i in range(23) if i % 5 != 4 and i not in (5, 6)]


def test_writes_between_chunks_copied_inside_are_not_lost(pair, caplog, monkeypatch):
    """Other connections write between two chunks copied inside SQLite: rows already copied and
    rows still ahead change, go and come; the drain that follows the copy leaves the mirror equal."""
    source, destination = pair
    table = create(source, "orders", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("note", sa.String(20)), sa.Column("amount", sa.Numeric(12, 2)))
    write(source, table.insert(), [{"id": i, "note": f"n{i}", "amount": decimal.Decimal(i) / 3} for i in range(30)])
    install_channel(source, "orders", "orders")
    chunk_copied, chunks = Progress.chunk_copied, []

    def copied_then_others_write(self, conn, count, last, result):
        chunk_copied(self, conn, count, last, result)
        chunks.append(count)
        if len(chunks) == 1:
            write(source, table.update().where(table.c.id.in_([0, 25])).values(amount=decimal.Decimal("9.99")))
            write(source, table.delete().where(table.c.id.in_([1, 26])))
            write(source, table.insert(), [{"id": -1, "note": "behind"}, {"id": 100, "note": "ahead"}])

    monkeypatch.setattr(Progress, "chunk_copied", copied_then_others_write)
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    snapshot(source, destination, ReflectionSpec("orders", create_table=True), chunk_size=10)
    monkeypatch.undo()
    assert "copying inside the source database" in caplog.text
    assert table_rows(destination, "orders") != table_rows(source, "orders"), "the copy alone is stale"
    reflect(source, destination, ReflectionSpec("orders"))
    assert table_rows(destination, "orders") == table_rows(source, "orders")
    assert pending_changes(source, "orders").count == 0


def test_a_chunk_the_destination_refuses_is_named_after_the_chunks_before_it(pair, caplog):
    """Copied inside SQLite, the chunks before the refused one are committed with their progress;
    the row path then names the row, and the copy resumes at that chunk."""
    source, destination = pair
    table = plain(source)
    create(destination, "items",
           sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100), nullable=False), sa.Column("qty", sa.Integer))
    write(source, table.insert(), [{"shard": 1, "id": i, "note": None if i == 12 else "n"} for i in range(20)])
    install_channel(source, "items", "items")
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    with pytest.raises(ApplyError, match=r"initial load.*the row shard=1, id=12 was rejected: NOT NULL"):
        snapshot(source, destination, ReflectionSpec("items"), chunk_size=5)
    assert "a chunk applied inside the source database was refused" in caplog.text
    assert [row[1] for row in table_rows(destination, "items")] == list(range(10))
    write(source, table.update().where(table.c.id == 12).values(note="fixed"))
    assert snapshot(source, destination, ReflectionSpec("items"), chunk_size=5).copied == 10
    assert table_rows(destination, "items") == table_rows(source, "items")


def test_a_value_the_row_path_cannot_read_fails_the_same_way(pair, caplog, monkeypatch):
    """A timestamp SQLAlchemy cannot parse: the function raises inside SQLite, the span is applied
    row by row instead, and that path stops on it as it always did; nothing is acknowledged."""
    source, destination = pair
    table = create(source, "stamps", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("stamp", sa.DateTime))
    install_channel(source, "stamps", "stamps")
    write(source, table.insert(), {"id": 1, "stamp": dt.datetime(2026, 1, 2)})
    with source.begin() as conn:
        conn.exec_driver_sql("INSERT INTO stamps VALUES (2, 'not a time')")
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    with pytest.raises(ValueError, match="not a time") as inside:
        reflect(source, destination, ReflectionSpec("stamps", create_table=True))
    assert "user-defined function raised exception" in caplog.text and inside_used(caplog)
    with pytest.raises(ValueError) as rows_only:
        reflect(source, destination, ReflectionSpec("stamps", route=ROW_PATH))
    assert str(rows_only.value) == str(inside.value)
    assert pending_changes(source, "stamps").count == 2
    assert table_rows(destination, "stamps") == []


def test_a_key_the_row_path_converts_keeps_the_drain_on_the_row_path(pair, caplog):
    """A span's deletes compare its keys as the change table stores them, so a key column whose
    values the row path converts (an integer key into a decimal one) keeps the drain row by row."""
    source, destination = pair
    table = plain(source)
    create(destination, "items",
           sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("id", sa.Numeric(10, 0), primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100)), sa.Column("qty", sa.Integer))
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(3)])
    write(source, table.delete().where(table.c.id == 1))
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("items"))
    assert not inside_used(caplog)
    assert [(shard, int(id_)) for shard, id_, *_ in table_rows(destination, "items")] == [(1, 0), (1, 2)]


def test_an_engine_that_begins_its_own_transactions_drains_inside_and_detaches(pair, caplog):
    """SQLAlchemy's recipe for SQLite transactions: the driver in autocommit, BEGIN before the first
    statement of each transaction."""
    source, destination = pair

    @sa.event.listens_for(source, "connect")
    def driver_autocommit(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(source, "begin")
    def begin(conn):
        conn.exec_driver_sql("BEGIN")

    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(5)])
    write(source, table.delete().where(table.c.id == 3))
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("items", create_table=True), batch_size=2)
    assert inside_used(caplog)
    assert table_rows(destination, "items") == table_rows(source, "items")
    with source.connect() as conn:
        assert "pdr_destination" not in [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]


def test_a_connection_that_may_not_attach_drains_row_by_row(pair, caplog):
    source, destination = pair

    @sa.event.listens_for(source, "connect")
    def no_attachments(dbapi_connection, record):
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)

    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(3)])
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    reflect(source, destination, ReflectionSpec("items", create_table=True))
    assert "could not attach the destination database" in caplog.text and not inside_used(caplog)
    assert table_rows(destination, "items") == table_rows(source, "items")


def test_a_span_that_cannot_be_acknowledged_hands_the_rest_to_the_row_path(pair, caplog, monkeypatch):
    """SQLite commits one writer at a time, so no late commit can land in a span's gap; the hand-over
    is exercised by refusing the first acknowledgement as Acknowledger.acknowledge does on a late commit."""
    source, destination = pair
    table = plain(source)
    install_channel(source, "items", "items")
    write(source, table.insert(), [{"shard": 1, "id": i, "note": "n"} for i in range(10)])
    refused, acknowledge = [], Acknowledger.acknowledge

    def late_commit_once(self, conn, batch):
        if not refused:
            refused.append(batch.span)
            return False  # nothing deleted, as when a late commit is found
        return acknowledge(self, conn, batch)

    monkeypatch.setattr(Acknowledger, "acknowledge", late_commit_once)
    caplog.set_level(logging.INFO, "airflow_provider_pdr")
    result = reflect(source, destination, ReflectionSpec("items", create_table=True), batch_size=4)
    assert refused[0].count == 4 and "the rest of this run goes row by row" in caplog.text
    assert result.drained and result.changes == 10
    assert table_rows(destination, "items") == table_rows(source, "items")
    assert pending_changes(source, "items").count == 0
