"""Values round-trip exactly between every pair of engines, or follow a documented rule."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from airflow_provider_pdr.core import (
    ConfigurationError, ReflectionSpec, RoutePolicy, UnsupportedTypeError, install_channel, pending_changes, reflect,
)
from airflow_provider_pdr.core.engines import engine_module
from tests.support.tables import all_types_table, create, typed_rows, write

UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def test_values_round_trip_exactly(source, destination):
    table = all_types_table(source)
    install_channel(source, "types", "all_types")
    # Only PostgreSQL keeps the instant of an offset value; the others' sources hold UTC.
    zone = IST if engine_module(source).name == "postgresql" else UTC
    full = {
        "id": 1, "big": 2**62 + 7, "dec": decimal.Decimal("123456789.123456"),
        "small_dec": decimal.Decimal("-0.05"), "flt": 0.1 + 1 / 3,
        "txt": "quote ' double \" back \\ semi ; -- ünïcödé 中文 🎉",
        "big_text": "x" * 200_000 + "é", "blob": bytes(range(256)) * 4,
        "ts_tz": dt.datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=zone),
        "ts": dt.datetime(1999, 12, 31, 23, 59, 59, 999999), "d": dt.date(2024, 2, 29),
        "t": dt.time(23, 59, 58), "flag": True,
    }
    empty = {name: None for name in full} | {"id": 2}
    negative = full | {"id": 3, "big": -(2**63) + 1, "flag": False, "txt": "", "blob": b"", "dec": decimal.Decimal("-0.000001")}
    write(source, table.insert(), [full, empty, negative])
    reflect(source, destination, ReflectionSpec("types", "all_types", create_table=True))

    expected = typed_rows(source, "all_types")
    got = typed_rows(destination, "all_types")
    flag = list(table.columns.keys()).index("flag")
    # MySQL's BOOL is TINYINT(1): it reads back as 0/1.
    as_bool = lambda rows: [r[:flag] + (None if r[flag] is None else bool(r[flag]),) + r[flag + 1:] for r in rows]
    assert as_bool(got) == as_bool(expected)
    assert got[0][1] == 2**62 + 7 and got[0][2] == decimal.Decimal("123456789.123456")
    assert got[0][8] == full["ts_tz"].astimezone(UTC).replace(tzinfo=None), "the instant is kept"
    assert got[1][1:] == (None,) * 12


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_wide_decimals_keep_every_digit(source, destination):
    table = create(source, "money",
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("amount", sa.Numeric(38, 10)))
    install_channel(source, "money", "money")
    value = decimal.Decimal("1234567890123456789012345678.0123456789")
    write(source, table.insert(), {"id": 1, "amount": value})
    reflect(source, destination, ReflectionSpec("money", "money", create_table=True))
    assert typed_rows(destination, "money") == [(1, value)]


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_naive_timestamps_into_a_time_zone_column_are_taken_as_utc(source, destination):
    table = create(source, "events",
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("at", sa.DateTime))
    create(destination, "events",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("at", sa.DateTime(timezone=True)))
    install_channel(source, "events", "events")
    write(source, table.insert(), {"id": 1, "at": dt.datetime(2024, 7, 1, 12, 0)})
    reflect(source, destination, ReflectionSpec("events", "events"))
    with destination.connect() as conn:
        conn.exec_driver_sql("SET TIME ZONE 'America/New_York'")
        (at,) = conn.exec_driver_sql("SELECT at FROM events").one()
    assert at == dt.datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_types_without_a_portable_equivalent_are_refused_naming_the_column(source, destination):
    create(source, "tagged",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("tags", postgresql.ARRAY(sa.Integer)))
    install_channel(source, "tagged", "tagged")
    with pytest.raises(UnsupportedTypeError, match=r"tagged\.tags.*no portable equivalent"):
        reflect(source, destination, ReflectionSpec("tagged", "tagged", create_table=True))


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["mysql"], indirect=True)
def test_numeric_without_precision_cannot_be_created_in_mysql(source, destination):
    create(source, "loose_numbers",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("n", sa.Numeric))
    install_channel(source, "n", "loose_numbers")
    with pytest.raises(UnsupportedTypeError, match=r"loose_numbers\.n: NUMERIC without precision"):
        reflect(source, destination, ReflectionSpec("n", "loose_numbers", create_table=True))


@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_sqlite_numeric_affinity_values_keep_their_scale(source, destination):
    """SQLite stores '80.00' in a NUMERIC column as INTEGER 80: read back it is 80.00 again."""
    table = create(source, "prices",
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("price", sa.Numeric(10, 2)))
    install_channel(source, "prices", "prices")
    write(source, table.insert(), [{"id": 1, "price": decimal.Decimal("80.00")},
                                   {"id": 2, "price": decimal.Decimal("120.50")}])
    reflect(source, destination, ReflectionSpec("prices", "prices", create_table=True))
    assert [str(price) for _, price in typed_rows(destination, "prices")] == ["80.00", "120.50"]


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["mysql", "sqlite", "postgresql", "psycopg"], indirect=True)
def test_json_documents_arrive_as_json(source, destination):
    """MariaDB's JSON is LONGTEXT with a validity check: a document must arrive as JSON text."""
    import json

    table = create(source, "docs",
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("doc", postgresql.JSONB), sa.Column("items", postgresql.JSONB))
    install_channel(source, "docs", "docs")
    document = {"name": "ü ' \"", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    write(source, table.insert(), {"id": 1, "doc": document, "items": [1, "two"]})
    reflect(source, destination, ReflectionSpec("docs", "docs", create_table=True))
    ((_, doc, items),) = typed_rows(destination, "docs")
    decode = lambda value: json.loads(value) if isinstance(value, str) else value
    assert (decode(doc), decode(items)) == (document, [1, "two"])


@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_percent_signs_in_column_names(source, destination):
    """Mirrored where the engine can write them; refused clearly, before any write, by MySQL."""
    table = create(source, "rates",
                   sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   sa.Column("rate %", sa.String(10)), sa.Column("100%", sa.Integer))
    install_channel(source, "rates", "rates")
    write(source, table.insert(), [{"id": 1, "rate %": "5%", "100%": 1}, {"id": 2, "rate %": "x", "100%": 2}])
    if engine_module(destination).name == "mysql":
        with pytest.raises(ConfigurationError, match=r"columns \['rate %', '100%'\] contain '%'"):
            reflect(source, destination, ReflectionSpec("rates", "rates", create_table=True))
        assert pending_changes(source, "rates").count == 2, "nothing acknowledged"
        return
    reflect(source, destination, ReflectionSpec("rates", "rates", create_table=True))
    write(source, table.update().where(table.c.id == 1).values({"rate %": "6%"}))
    reflect(source, destination, ReflectionSpec("rates", "rates"))
    assert typed_rows(destination, "rates") == [(1, "6%", 1), (2, "x", 2)]


def test_mysql_datetime_decoder_reads_every_text_as_mysqlclient_does():
    """The faster decoder the drain gives mysqlclient returns what mysqlclient's own does, for the
    server's shapes (every fraction length, zero and impossible dates) and for texts around them."""
    from MySQLdb.times import DateTime_or_None

    from airflow_provider_pdr.core.engines.drivers.mysqldb import datetime_or_none

    shapes = ["2026-01-01 00:00:01", "2026-01-01 00:00:01.5", "2026-01-01 00:00:01.123",
              "9999-12-31 23:59:59.999999", "0001-01-01 00:00:00", "0000-00-00 00:00:00",
              "2026-02-30 00:00:00", "2026-01-01 24:00:00", "2026-01-01", "2026-01-01T00:00:00",
              "2026-01-01 00:00:00+00:00", "2026-W01-1 00:00:00", "2026-01-01 00:00:00.1234567"]
    shapes += mutations("2026-01-01 12:34:56.123456", "0123456789-: .TWZ+,_\u0663", 20_000, seed=7, shortest=19)
    for text in shapes:
        ours, theirs = datetime_or_none(text), DateTime_or_None(text)
        assert (ours, type(ours)) == (theirs, type(theirs)), text


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["sqlite", "postgresql"], indirect=True)
def test_mysql_datetimes_arrive_as_mysqlclient_reads_them(source, destination):
    precisions = [0, 1, 3, 6]
    table = create(source, "stamps", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                   *[sa.Column(f"at{p}", mysql.DATETIME(fsp=p)) for p in precisions],
                   sa.Column("ts", mysql.TIMESTAMP(fsp=6), nullable=True))
    install_channel(source, "stamps", "stamps")
    instants = [dt.datetime(2024, 2, 29, 23, 59, 59, 999999), dt.datetime(1000, 1, 1),
                dt.datetime(9999, 12, 31, 23, 59, 59, 100000), dt.datetime(2026, 7, 1, 0, 0, 0, 5)]
    write(source, table.insert(), [{"id": i, **{f"at{p}": at for p in precisions}, "ts": at.replace(year=2020)}
                                   for i, at in enumerate(instants)])
    with source.begin() as conn:  # a zero date, as a server with a lenient sql_mode keeps it
        conn.exec_driver_sql("SET SESSION sql_mode = ''")
        conn.exec_driver_sql("INSERT INTO stamps (id, at0, at6) VALUES (9, '0000-00-00 00:00:00', '2026-00-00')")
    reflect(source, destination, ReflectionSpec("stamps", "stamps", create_table=True))
    plain = sa.create_engine(source.url, poolclass=sa.pool.NullPool)  # mysqlclient's own decoders
    try:
        expected = typed_rows(plain, "stamps")
    finally:
        plain.dispose()
    assert typed_rows(destination, "stamps") == expected
    assert expected[0][1:5] == tuple(instants[0].replace(microsecond=m) for m in (0, 900000, 999000, 999999))
    assert expected[-1][1:3] == (None, None), "zero dates read as NULL"


def test_sqlite_datetimes_are_written_as_sqlalchemy_writes_them():
    """SQLite datetime columns are bound by a faster formatter: the text stored must not change."""
    import pendulum
    from sqlalchemy.dialects import sqlite

    engine = sa.create_engine("sqlite://")
    engine_module(engine)
    ours = sa.DateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
    theirs = sqlite.DATETIME().bind_processor(sqlite.dialect())
    rng = random.Random(3)
    values = [dt.datetime(1, 1, 1), dt.datetime(999, 5, 6, 7, 8, 9), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
              dt.datetime(2026, 1, 1, 12, tzinfo=IST), pendulum.datetime(2026, 3, 1, 1, 2, 3, 4, tz="Asia/Tokyo"),
              dt.date(2024, 2, 29), None]
    values += [dt.datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                           rng.randint(0, 59), rng.randint(0, 59), rng.choice([0, rng.randint(0, 999_999)]))
               for _ in range(5000)]
    assert [ours(v) for v in values] == [theirs(v) for v in values]
    truncating = sqlite.DATETIME(truncate_microseconds=True)
    assert truncating.dialect_impl(engine.dialect).bind_processor(engine.dialect)(values[1]) == "0999-05-06 07:08:09"


def sqlite_shortcuts(scale: int = 4) -> dict:
    """Per kind, the SQLite-to-SQLite shortcut and the exact way it must equal (values.exact_path)."""
    from airflow_provider_pdr.core.values import exact_path, value_converters

    engine = sa.create_engine("sqlite://")
    module = engine_module(engine)
    kinds = {"decimal": sa.Numeric(18, scale), "datetime": sa.DateTime(), "date": sa.Date(), "boolean": sa.Boolean()}
    table = sa.Table("t", sa.MetaData(), *[sa.Column(kind, module.io_type(type_)) for kind, type_ in kinds.items()])
    converters = value_converters(table)
    ways = {}
    for column in table.columns:
        exact = exact_path(column.type, converters.get(column.name), column.type, engine.dialect, engine.dialect)
        ways[column.name] = (module.shortcut(column.type, column.type, engine.dialect)(exact), exact)
    return ways


def outcome(function, value):
    try:
        result = function(value)
    except (ArithmeticError, ValueError, TypeError) as error:
        return type(error)
    return result, type(result)


def mutations(canonical: str, alphabet: str, count: int, seed: int, shortest: int | None = None) -> list[str]:
    """`canonical` (cut at a random length from `shortest` on, if given) with one to three
    characters changed, added or removed, `count` times."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        text = list(canonical[: rng.randint(shortest, len(canonical))] if shortest else canonical)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            change = rng.choice(alphabet)
            if at == len(text) or rng.random() < 0.25:
                text.insert(at, change)
            elif rng.random() < 0.66:
                text[at] = change
            else:
                del text[at]
        texts.append("".join(text))
    return texts


@pytest.mark.parametrize("scale", [0, 2, 4, 10])
def test_sqlite_shortcuts_give_what_reading_and_writing_give(scale):
    """Between SQLite tables, a span's decimals, datetimes, dates and booleans skip their Python
    values: for every value SQLite can return, the shortcut gives what SQLAlchemy's reading, the
    drain's conversion and SQLAlchemy's writing give (or raises as they do)."""
    ways = sqlite_shortcuts(scale)
    rng = random.Random(scale)
    anything = [None, 0, 1, -1, 2, 10**30, -(10**17), 0.0, -0.0, 1.0, 0.5, "", "x", b"\x00", "1.5", " 2", "1e3"]
    decimals = anything + [
        0.00005, 0.00015, 2.5, 3.5, 12345.6789, -12345.6789, 0.1 + 0.2, 1 / 3, 1e15, 1e16, 1.5e16, 123456789012.25,
        5e-324, 1e-7, 1.7976931348623157e308, float("inf"), float("-inf"), float("nan"), 10**27, 10**28, -(10**26),
    ]
    decimals += [rng.uniform(-1e6, 1e6) for _ in range(3000)]
    decimals += [round(rng.uniform(-1e9, 1e9), rng.randint(0, 6)) for _ in range(3000)]
    decimals += [rng.randint(-(10**20), 10**20) for _ in range(1000)]
    decimals += [float(rng.randint(-999, 999)) / 8 for _ in range(500)]
    decimals += [rng.random() * 10.0 ** rng.randint(-12, 30) for _ in range(2000)]
    datetimes = anything + ["2026-01-01 12:34:56.123456", "0001-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999",
                            "2026-01-01 24:00:00.000000", "2026-02-30 00:00:00.000000", "2026-01-01T12:34:56.123456",
                            "2026-01-01 12:34:56.1234+01", "2026-01-01 12:34:56.12345Z", "2026-01-01 12:34:56",
                            "2026-01-01 12:34:56.1234567", "2026-01-01", "20260101 123456.1234567890"]
    datetimes += mutations("2026-01-01 12:34:56.123456", "0123456789-: .TWZ+,_\u0663", 20_000, seed=scale)
    dates = anything + ["2026-01-01", "0001-01-01", "9999-12-31", "2024-02-29", "2026-02-29", "2026-W01-1",
                        "2026-001", "20260101", "2026-01-01 00:00:00"]
    dates += mutations("2026-01-31", "0123456789-W T\u0663", 10_000, seed=scale)
    booleans = anything + [True, False, 1.0, 0.5, "1", "0"]
    for kind, values in (("decimal", decimals), ("datetime", datetimes), ("date", dates), ("boolean", booleans)):
        shortcut, exact = ways[kind]
        for value in values:
            assert outcome(shortcut, value) == outcome(exact, value), (kind, value)


def test_sqlite_decimal_shortcut_keeps_a_lower_decimal_precision():
    """quantize raises beyond the context's precision: the shortcut must not write those digits."""
    with decimal.localcontext(prec=6):
        shortcut, exact = sqlite_shortcuts(4)["decimal"]
        for value in (12.5, 123.25, 1234.5, 99.0, 12, 123, 1234):
            assert outcome(shortcut, value) == outcome(exact, value), value
        assert outcome(shortcut, 1234.5) == (decimal.InvalidOperation)


def test_sqlite_shortcuts_store_what_python_values_store(databases):
    """The same source rows, copied by an initial load and drained by spans, are stored alike
    with the shortcuts and without them (every value through its Python object), value and
    storage class: rows 1-5 only by the copy, rows 6-10 last by a span."""
    from airflow_provider_pdr.core.drain.assemble import open_drain

    source = databases.new("sqlite")
    create(source, "odd", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("price", sa.Numeric(10, 2)), sa.Column("rate", sa.Numeric(18, 4)),
           sa.Column("at", sa.DateTime), sa.Column("day", sa.Date), sa.Column("flag", sa.Boolean),
           sa.Column("note", sa.String(20)))
    odd = [  # as another program may have written them: NUMERIC affinity, other datetime shapes
        (80, 0.00005, "2026-01-01 10:00:00.000000", "2026-01-31", 1, "plain"),
        (120.5, 12345.6789, "2026-01-01T10:00:00", "2026-W05-6", 0, None),
        ("1.50", 1e16, "2026-01-01 10:00:00+02:00", "2024-02-29", 2, "x"),
        (-0.0, -1 / 3, "1999-12-31 23:59:59.999999", None, None, ""),
        (None, 7, "2026-06-30 12:00:00", "0001-01-01", 1, "ü"),
    ]
    insert = "INSERT INTO odd VALUES (?, ?, ?, ?, ?, ?, ?)"
    with source.begin() as conn:
        conn.exec_driver_sql(insert, [(i, *values) for i, values in enumerate(odd, 1)])
    for channel in ("fast", "plain"):
        install_channel(source, channel, "odd")
    with source.begin() as conn:  # changes after the channels: rows 6-10, and one row deleted
        conn.exec_driver_sql(insert, [(i + 5, *values) for i, values in enumerate(reversed(odd), 1)])
        conn.exec_driver_sql("UPDATE odd SET rate = rate + 0.5 WHERE id > 7")
        conn.exec_driver_sql("DELETE FROM odd WHERE id = 6")
    fast, plain = databases.new("sqlite"), databases.new("sqlite")
    with open_drain(source, fast, ReflectionSpec("fast", create_table=True)) as opened:
        drain = opened[0]
        assert drain.route.span_queries and sorted(drain.route.shortcuts) == [1, 2, 3, 4, 5], "the shortcuts are taken"
    reflect(source, fast, ReflectionSpec("fast"), initial_load=True)
    reflect(source, plain, ReflectionSpec("plain", create_table=True, route=RoutePolicy(shortcuts=False)),
            initial_load=True)

    def raw(engine):
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT id, price, typeof(price), rate, typeof(rate), at, day, flag, typeof(flag), note "
                "FROM odd ORDER BY id").all()

    assert raw(fast) == raw(plain)
    assert len(raw(fast)) == 9
    assert raw(fast)[0][1:5] == ("80.00", "text", "0.0000", "text")  # quantized as Decimal(str(0.00005)) is
    assert raw(fast)[1][5:7] == ("2026-01-01 10:00:00.000000", "2026-01-31")
    assert typed_rows(fast, "odd") == typed_rows(source, "odd")
