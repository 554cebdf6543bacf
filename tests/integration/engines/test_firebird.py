"""Firebird as source and destination: the same correctness checks as the other engines, on
Firebird <-> PostgreSQL, Firebird <-> MariaDB, Firebird <-> SQLite and Firebird -> Firebird.

Firebird is kept out of LIVE_ENGINES in tests/support/databases.py (each test database is a new
file on the server); the core checks are run here by calling them with Firebird engines.
"""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import subprocess
import sys

import pytest
import sqlalchemy as sa

import tests.integration.core.test_channel as core_channel
import tests.integration.drain.test_reflect as core
from airflow_provider_pdr.core import (
    ChannelBusyError, ConfigurationError, ReflectionSpec, UnsupportedTypeError, install_channel, pending_changes, reflect,
    uninstall_channel,
)
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.registry import load_channel
from airflow_provider_pdr.core.reconcile import reconcile
from airflow_provider_pdr.core.snapshot import snapshot
from tests.support.drain import mirror
from tests.support.tables import all_types_table, create, orders, table_rows, typed_rows, write

PAIRS = [
    ("firebird", "postgresql"), ("postgresql", "firebird"),
    ("firebird", "mysql"), ("mysql", "firebird"),
    ("firebird", "sqlite"), ("sqlite", "firebird"),
    ("firebird", "firebird"),
]
PAIR_IDS = [f"{s}-{d}" for s, d in PAIRS]
FROM_FIREBIRD = [p for p in PAIRS if p[0] == "firebird"]
UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

CORE_CHECKS = [
    core.test_mirrors_inserts_updates_and_deletes,
    core.test_deletes_reach_a_mirror_that_already_had_the_rows,
    core.test_deletes_off_keeps_rows_but_acknowledges,
    core.test_primary_key_update_leaves_no_ghost,
    core.test_composite_keys_and_names_that_need_quoting,
    core.test_same_batch_sequences_end_in_the_final_state,
    core.test_rolled_back_transactions_leave_no_trace,
    core.test_crash_between_destination_commit_and_acknowledgement_converges,
    core.test_a_rejected_batch_acknowledges_nothing,
    core.test_several_channels_on_one_table_progress_independently,
    core.test_limits_stop_the_drain_and_report_lag,
]


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("check", CORE_CHECKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_core_correctness(databases, monkeypatch, pair, check):
    source, destination = databases.new(pair[0]), databases.new(pair[1])
    extra = {"monkeypatch": monkeypatch} if "monkeypatch" in inspect.signature(check).parameters else {}
    check(source, destination, **extra)


CHANNEL_CHECKS = [
    core_channel.test_pending_counts_changes_and_the_age_of_the_oldest,
    core_channel.test_missing_table_is_a_clear_error,
    core_channel.test_unknown_channel_is_a_clear_error,
    core_channel.test_a_channel_name_cannot_be_moved_to_another_table,
    core_channel.test_channels_whose_names_differ_only_by_dash_get_distinct_change_tables,
    core_channel.test_upgrade_replaces_triggers_made_by_an_older_version,
    core_channel.test_refuses_a_channel_installed_by_a_newer_format,
    core_channel.test_uninstalling_one_of_two_channels_keeps_the_other_capturing,
]


@pytest.mark.parametrize("check", CHANNEL_CHECKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_core_channel_checks(databases, check):
    check(databases.new("firebird"))


def test_table_without_primary_key_is_refused_and_nothing_is_installed(databases):
    engine = databases.new("firebird")
    create(engine, "loose", sa.Column("a", sa.Integer), sa.Column("b", sa.String(10)))
    before = firebird_objects(engine)
    with pytest.raises(core_channel.SchemaError, match="'loose' has no primary key"):
        install_channel(engine, "loose", "loose")
    assert firebird_objects(engine) == before


@pytest.mark.parametrize("destination_kind", ["postgresql", "mysql", "sqlite"])
def test_a_transaction_that_commits_after_a_later_one_was_reflected_is_not_lost(databases, destination_kind):
    core.test_a_transaction_that_commits_after_a_later_one_was_reflected_is_not_lost(
        databases.new("firebird"), databases.new(destination_kind))


def test_concurrent_writers_during_reflect_lose_nothing(databases):
    core.test_concurrent_writers_during_reflect_lose_nothing(databases.new("firebird"), databases.new("postgresql"))


# Firebird keeps timestamps and times to 1/10000 s: these values are exact on every engine.
def full_values(zone):
    return {
        "id": 1, "big": 2**62 + 7, "dec": decimal.Decimal("123456789.123456"),
        "small_dec": decimal.Decimal("-0.05"), "flt": 0.1 + 1 / 3,
        "txt": "quote ' double \" back \\ semi ; -- ünïcödé 中文 🎉",
        "big_text": "x" * 200_000 + "é", "blob": bytes(range(256)) * 400,
        "ts_tz": dt.datetime(2024, 3, 31, 1, 30, 15, 123400, tzinfo=zone),
        "ts": dt.datetime(1999, 12, 31, 23, 59, 59, 999900), "d": dt.date(2024, 2, 29),
        "t": dt.time(23, 59, 58), "flag": True,
    }


@pytest.mark.parametrize("pair", PAIRS, ids=PAIR_IDS)
def test_values_round_trip_exactly(databases, pair):
    source, destination = databases.new(pair[0]), databases.new(pair[1])
    table = all_types_table(source)
    install_channel(source, "types", "all_types")
    zone = IST if pair[0] == "postgresql" else UTC  # only PostgreSQL keeps an offset
    full = full_values(zone)
    empty = {name: None for name in full} | {"id": 2}
    negative = full | {"id": 3, "big": -(2**63) + 1, "flag": False, "txt": "", "blob": b"",
                       "dec": decimal.Decimal("-0.000001")}
    write(source, table.insert(), [full, empty, negative])
    reflect(source, destination, ReflectionSpec("types", "all_types", create_table=True))

    expected, got = typed_rows(source, "all_types"), typed_rows(destination, "all_types")
    flag = list(table.columns.keys()).index("flag")
    as_bool = lambda rows: [r[:flag] + (None if r[flag] is None else bool(r[flag]),) + r[flag + 1:] for r in rows]
    assert as_bool(got) == as_bool(expected)
    row = dict(zip(table.columns.keys(), got[0]))
    assert (row["big"], row["dec"], row["small_dec"], row["flt"]) == (2**62 + 7, full["dec"], full["small_dec"], full["flt"])
    assert (row["txt"], row["big_text"], bytes(row["blob"])) == (full["txt"], full["big_text"], full["blob"])
    assert row["ts_tz"] == full["ts_tz"].astimezone(UTC).replace(tzinfo=None), "the instant is kept"
    assert (row["ts"], row["d"], row["t"]) == (full["ts"], full["d"], full["t"])
    assert got[1][1:] == (None,) * 12
    assert dict(zip(table.columns.keys(), got[2]))["big"] == -(2**63) + 1


@pytest.mark.parametrize("destination_kind", ["postgresql", "sqlite", "firebird"])
def test_blobs_of_every_length_travel_exactly(databases, destination_kind):
    """Short BLOB values are read inline as VARCHARs, longer ones as BLOBs: around the inline limit
    (4,000 characters each for two BLOBs, 2,332 for three beside a VARCHAR(8000)) nothing is cut
    or mixed up."""
    source, destination = databases.new("firebird"), databases.new(destination_kind)
    table = create(source, "notes", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("memo", sa.Text), sa.Column("data", sa.LargeBinary))
    crowded = create(source, "crowded", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("title", sa.String(8000)), *[sa.Column(f"memo_{i}", sa.Text) for i in range(3)])
    lengths = [0, 1, 2332, 2333, 3999, 4000, 4001, 8000, 8001, 40_000]
    texts = [None] + ["é€" * (n // 2) + "x" * (n % 2) for n in lengths]
    binaries = [None] + [bytes(range(256)) * (n // 256) + b"\x00" * (n % 256) for n in lengths]
    write(source, table.insert(), [{"id": i, "memo": t, "data": b} for i, (t, b) in enumerate(zip(texts, binaries))])
    write(source, crowded.insert(), [{"id": i, "title": "t" * 8000, "memo_0": t, "memo_1": texts[-1 - i], "memo_2": t}
                                     for i, t in enumerate(texts)])
    for name in ("notes", "crowded"):
        install_channel(source, name, name)
        write(source, sa.table(name, sa.column("id")).update().values(id=sa.column("id")))  # every row changes
        reflect(source, destination, ReflectionSpec(name, create_table=True))
        expected = [tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in row)
                    for row in table_rows(source, name)]
        got = [tuple(bytes(v) if isinstance(v, (bytes, memoryview)) else v for v in row)
               for row in table_rows(destination, name)]
        assert got == expected, name
    # The initial load and reconcile read the same way.
    snapshot(source, destination, ReflectionSpec("notes", "notes_copy", create_table=True))
    assert table_rows(destination, "notes_copy") == table_rows(destination, "notes")
    assert reconcile(source, destination, ReflectionSpec("notes", "notes_copy")).differing == 0
    forms, extras = engine_module(source).read_forms([table.c.id, table.c.memo, table.c.data])
    compiled = [str(form.compile(dialect=source.dialect)) for form in forms]
    assert "VARCHAR(4000) CHARACTER SET UTF8" in compiled[1] and "VARCHAR(4000) CHARACTER SET OCTETS" in compiled[2]
    assert [i for i, _ in extras] == [1, 2]


def test_firebird_keeps_a_ten_thousandth_of_a_second(databases):
    """Documented rule (docs/engines/firebird.md): microseconds below 100 are cut by a Firebird destination."""
    source, destination = databases.new("postgresql"), databases.new("firebird")
    table = create(source, "events", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("at", sa.DateTime))
    install_channel(source, "events", "events")
    write(source, table.insert(), {"id": 1, "at": dt.datetime(2024, 1, 2, 3, 4, 5, 123456)})
    reflect(source, destination, ReflectionSpec("events", "events", create_table=True))
    assert typed_rows(destination, "events") == [(1, dt.datetime(2024, 1, 2, 3, 4, 5, 123400))]


def test_decimals_beyond_firebird_precision_are_refused_naming_the_column(databases):
    source, destination = databases.new("postgresql"), databases.new("firebird")
    create(source, "money", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("amount", sa.Numeric(38, 10)))
    install_channel(source, "money", "money")
    with pytest.raises(UnsupportedTypeError, match=r"money\.amount: NUMERIC \(38,10\).*Firebird"):
        reflect(source, destination, ReflectionSpec("money", "money", create_table=True))


def test_reserved_words_mixed_case_and_lowercase_quoted_names(databases):
    """Names Firebird would upper-case, reserved words and quoted lower case all travel intact."""
    source, destination = databases.new("firebird"), databases.new("postgresql")
    with source.begin() as conn:  # created by hand, the way Firebird users write DDL
        conn.exec_driver_sql('CREATE TABLE "value" ("position" INTEGER NOT NULL PRIMARY KEY, '
                             '"Mixed Case" VARCHAR(10), plain_col VARCHAR(10), "lower" VARCHAR(10))')
        conn.exec_driver_sql('CREATE TABLE ITEMS (ID INTEGER NOT NULL PRIMARY KEY, LABEL VARCHAR(10))')
    install_channel(source, "reserved", "value")
    install_channel(source, "items", "items")  # unquoted in Firebird: found by its normalized name
    with source.begin() as conn:
        conn.exec_driver_sql("INSERT INTO \"value\" VALUES (1, 'm', 'p', 'l')")
        conn.exec_driver_sql("INSERT INTO ITEMS VALUES (7, 'seven')")
    reflect(source, destination, ReflectionSpec("reserved", "value", create_table=True))
    reflect(source, destination, ReflectionSpec("items", "items", create_table=True))
    assert table_rows(destination, "value") == [(1, "m", "p", "l")]
    assert [c["name"] for c in sa.inspect(destination).get_columns("value")] == \
        ["position", "Mixed Case", "plain_col", "lower"]
    assert table_rows(destination, "items") == [(7, "seven")]


def test_long_names_fit_the_31_character_limit_without_collisions(databases):
    engine = databases.new("firebird")
    long_table = "a_table_name_of_exactly_31_char"
    assert len(long_table) == 31
    orders(engine, long_table)
    first = install_channel(engine, "a-very-long-channel-name-number-one", long_table)
    second = install_channel(engine, "a-very-long-channel-name-number-two", long_table)
    assert len(first.change_table) <= 31 and len(second.change_table) <= 31
    assert first.change_table != second.change_table
    write(engine, sa.table(long_table, sa.column("id")).insert(), {"id": 1})
    assert pending_changes(engine, "a-very-long-channel-name-number-one").count == 1
    assert pending_changes(engine, "a-very-long-channel-name-number-two").count == 1


def firebird_objects(engine) -> dict:
    with engine.connect() as conn:
        tables = conn.exec_driver_sql(
            "SELECT TRIM(rdb$relation_name) FROM rdb$relations WHERE COALESCE(rdb$system_flag, 0) = 0"
        ).scalars().all()
        triggers = conn.exec_driver_sql(
            "SELECT TRIM(rdb$trigger_name) FROM rdb$triggers WHERE COALESCE(rdb$system_flag, 0) = 0"
        ).scalars().all()
    return {"tables": sorted(tables), "triggers": sorted(triggers)}


def test_install_is_idempotent_and_uninstall_leaves_the_database_as_before(databases):
    engine = databases.new("firebird")
    orders(engine)
    before = firebird_objects(engine)
    first = install_channel(engine, "orders", "orders")
    installed = firebird_objects(engine)
    assert len(installed["triggers"]) == 1 and len(installed["tables"]) == 3
    assert install_channel(engine, "orders", "orders") == first
    assert firebird_objects(engine) == installed, "a second install must change nothing"
    assert uninstall_channel(engine, "orders") is True
    assert firebird_objects(engine) == before
    assert uninstall_channel(engine, "orders") is False


def test_uninstalling_one_of_two_channels_keeps_the_other_capturing(databases):
    engine = databases.new("firebird")
    table = orders(engine)
    install_channel(engine, "one", "orders")
    install_channel(engine, "two", "orders")
    uninstall_channel(engine, "one")
    write(engine, table.insert(), {"id": 1})
    assert pending_changes(engine, "two").count == 1
    assert len(firebird_objects(engine)["triggers"]) == 1


def test_the_channel_lock_excludes_a_second_drain_and_dies_with_its_connection(databases):
    source, destination = databases.new("firebird"), databases.new("sqlite")
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), {"id": 1})
    module = engine_module(source)
    with module.channel_lock(source, None, "orders", timeout=1):
        with pytest.raises(ChannelBusyError, match="channel 'orders' is being drained"):
            mirror(source, destination, lock_timeout=0.5)  # asked again under a second
        with pytest.raises(ChannelBusyError, match="not free after 1s"):
            mirror(source, destination, lock_timeout=1)  # waited for in the server's queue
        assert pending_changes(source, "orders").count == 1
    assert mirror(source, destination).upserted == 1

    # A holder that dies: the server ends its transaction, and the lock with it.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, source.url.render_as_string(hide_password=False)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ChannelBusyError):
            mirror(source, destination, lock_timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert mirror(source, destination, lock_timeout=10).drained is True


HOLDER = """
import sys, time
import sqlalchemy as sa
from airflow_provider_pdr.core.engines import engine_module
engine = sa.create_engine(sys.argv[1])
with engine_module(engine).channel_lock(engine, None, "orders", timeout=5):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_key_change_firebird_calls_equal_still_reaches_the_mirror(databases):
    """'a' and 'a ' compare equal in Firebird; PostgreSQL keeps both, so the old key must go."""
    source, destination = databases.new("firebird"), databases.new("postgresql")
    table = create(source, "codes", sa.Column("code", sa.String(10), primary_key=True), sa.Column("n", sa.Integer))
    install_channel(source, "codes", "codes")
    write(source, table.insert(), {"code": "a", "n": 1})
    mirror(source, destination, "codes")
    write(source, table.update().values(code="a "))
    mirror(source, destination, "codes")
    assert table_rows(destination, "mirror") == [("a ", 1)]


def test_the_firebird_connection_type_gives_a_working_engine(databases):
    """The Airflow connection (host, port, database path, login, password, charset in extras)."""
    from airflow.sdk import Connection  # what BaseHook.get_connection gives

    from airflow_provider_pdr.hooks.database import PdrHook

    engine = databases.new("firebird")
    url = engine.url
    connection = Connection(
        conn_id="fb", conn_type="firebird", host=url.host, port=url.port, schema=url.database,
        login=url.username, password=url.password, extra='{"charset": "UTF8"}',
    )
    with PdrHook("fb", connection=connection) as hook:
        assert hook.module.name == "firebird"
        with hook.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 'ü' FROM rdb$database").scalar() == "ü"


def test_channel_registry_round_trips(databases):
    engine = databases.new("firebird")
    orders(engine, "Orders Ü")
    install_channel(engine, "ch", "Orders Ü")
    with engine.connect() as conn:
        info = load_channel(conn, engine_module(engine), "ch")
    assert (info.table.name, info.table.key_columns, info.schema) == ("Orders Ü", ("id",), None)


def test_a_waiting_sensor_is_woken_by_the_capture_trigger(databases):
    import asyncio

    engine = databases.new("firebird")
    table = orders(engine)
    info = install_channel(engine, "orders", "orders")
    module = engine_module(engine)

    async def scenario():
        async with module.listener(engine, info.target()) as events:
            quiet = await events.wait(0.5)
            writer = asyncio.create_task(asyncio.to_thread(write, engine, table.insert(), {"id": 1}))
            woke = await events.wait(30)
            await writer
            return quiet, woke

    assert asyncio.run(scenario()) == (False, True)


def test_uuids_and_json_become_text_in_firebird_and_travel_on(databases):
    import uuid

    from sqlalchemy.dialects import postgresql

    source, firebird, back = databases.new("postgresql"), databases.new("firebird"), databases.new("postgresql")
    table = create(source, "docs", sa.Column("id", sa.Uuid, primary_key=True), sa.Column("doc", postgresql.JSONB),
                   sa.Column("note", sa.String))
    install_channel(source, "docs", "docs")
    key = uuid.uuid4()
    write(source, table.insert(), {"id": key, "doc": {"a": [1, "ü"]}, "note": "free text"})
    reflect(source, firebird, ReflectionSpec("docs", "docs", create_table=True))
    assert table_rows(firebird, "docs") == [(str(key), '{"a": [1, "ü"]}', "free text")]
    install_channel(firebird, "onward", "docs")
    write(firebird, sa.text("UPDATE docs SET note = 'edited'"))
    reflect(firebird, back, ReflectionSpec("onward", "docs", create_table=True))
    assert table_rows(back, "docs") == [(str(key), '{"a": [1, "ü"]}', "edited")]


def test_the_last_channel_can_be_uninstalled_right_after_a_drain(databases):
    """Nothing a drain prepared (lock, batch reads) keeps Firebird from dropping our tables."""
    source, destination = databases.new("firebird"), databases.new("firebird")
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i} for i in range(3)])
    assert mirror(source, destination).upserted == 3
    assert pending_changes(source, "orders").count == 0
    assert uninstall_channel(source, "orders") is True
    assert firebird_objects(source) == {"tables": ["ORDERS"], "triggers": []}


def test_a_case_only_key_change_under_a_case_insensitive_collation_leaves_no_ghost(databases):
    source, destination = databases.new("firebird"), databases.new("postgresql")
    with source.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ci (code VARCHAR(10) CHARACTER SET UTF8 NOT NULL PRIMARY KEY "
                             "COLLATE UNICODE_CI, n INTEGER)")
        conn.exec_driver_sql("INSERT INTO ci VALUES ('abc', 1)")
    install_channel(source, "ci", "ci")
    mirror(source, destination, "ci")
    write(source, sa.text("UPDATE ci SET code = 'ABC'"))
    mirror(source, destination, "ci")
    assert table_rows(destination, "mirror") == [("ABC", 1)]


def test_names_longer_than_firebird_allows_are_refused_naming_them(databases):
    source, destination = databases.new("postgresql"), databases.new("firebird")
    long_column = "a_column_name_that_is_much_too_long_for_firebird"
    create(source, "wide", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column(long_column, sa.Integer))
    install_channel(source, "wide", "wide")
    with pytest.raises(ConfigurationError, match=rf"{long_column}' is 48 bytes long.*at most 31"):
        reflect(source, destination, ReflectionSpec("wide", "wide", create_table=True))
    assert not sa.inspect(destination).has_table("wide")


def test_channels_come_and_go_while_another_is_being_drained(databases):
    """Trigger DDL on a table that a drain is reading, with its lock held, is not blocked."""
    engine = databases.new("firebird")
    table = orders(engine)
    install_channel(engine, "draining", "orders")
    write(engine, table.insert(), {"id": 1})
    with engine_module(engine).channel_lock(engine, None, "draining", timeout=1), engine.connect() as reader:
        reader.execute(sa.select(table)).all()  # a read transaction left open, as between batches
        install_channel(engine, "other", "orders")
        write(engine, table.insert(), {"id": 2})
        assert pending_changes(engine, "other").count == 1
        assert uninstall_channel(engine, "other") is True
    assert pending_changes(engine, "draining").count == 2
