"""MariaDB to PostgreSQL (psycopg2 or psycopg 3 writing): span rows travel as lines of COPY text that
MariaDB writes (MysqlEngine.text_field), never parsed in Python. Each value must arrive as the row
path stores it, which parses MariaDB's text and formats the value again: the same rows go both
ways, and the two mirrors must be equal record for record."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ColumnMapping, ReflectionSpec, RoutePolicy, install_channel, reflect
from airflow_provider_pdr.core.drain.plan import DrainPlan
from tests.support.databases import execute
from tests.support.text_copy import COLUMNS as PG_COLUMNS, HOSTILE, TEXT_PATH, as_text, assert_row_path
from tests.support.text_copy import hostile_rows as pg_rows, load as pg_load

NO_TEXT = RoutePolicy(text=False)  # the row path, for the same rows to compare with

SOURCE = """id int PRIMARY KEY, i tinyint, su smallint unsigned, bi bigint, bu bigint unsigned, flag tinyint(1),
    d decimal(30, 10), dr decimal(12, 4), f float, db double, v varchar(50), vl varchar(50) CHARACTER SET latin1,
    vc varchar(50) COLLATE utf8mb4_general_ci, vk varchar(9) CHARACTER SET cp1251, vj varchar(9) CHARACTER SET ucs2,
    c char(6), t text, dt datetime(6), dt0 datetime, dd date"""
# (Strings of character sets no collation joins: MariaDB would not concatenate them as they are.)
# Kinds and sizes of the row path's own conversions and roundings: a boolean from an integer,
# decimals and timestamps rounded to fewer places.
DESTINATION = """id integer PRIMARY KEY, i smallint, su integer, bi bigint, bu numeric(20), flag boolean,
    d numeric(30, 10), dr numeric(12, 2), f double precision, db float8, v varchar(50), vl text, vc varchar(50),
    vk text, vj text, c char(6), t text, dt timestamp(3), dt0 timestamp, dd date"""


def hostile_rows() -> list[dict]:
    rows = []
    for i, text in enumerate(HOSTILE):
        rows.append({
            "id": i, "i": [-128, 127, 0][i % 3], "su": [0, 65535][i % 2], "bi": [-2**63, 2**63 - 1, 0][i % 3],
            "bu": [2**64 - 1, 0][i % 2], "flag": [0, 1, 2, -1][i % 4],
            "d": ["0.0000001000", "-12345678901234567890.0123456789", "0", "-0.0000000001",
                  "99999999999999999999.9999999999"][i % 5],
            "dr": ["1.2345", "-1.0050", "0.0050", "99999999.9999"][i % 4],
            "f": [0.1, 3.4e38, 1.17549e-38, -0.0, 1 / 7, 16777217.0][i % 6],
            "db": [0.1 + 0.2, 1e-300, -0.0, 1.7976931348623157e308, 5e-324, 2 / 3][i % 6],
            "v": text, "vl": text if all(ord(ch) < 256 for ch in text) else "ümlaut", "vc": text,
            "vk": ["жук\t", "\\N", None][i % 3], "vj": ["日本語", "\n"][i % 2], "c": text[:6],
            "t": text * 3,
            # Zero and impossible dates, which mysqlclient reads as None, among the extremes.
            "dt": ["2026-01-02 03:04:05.678901", "0000-00-00 00:00:00", "2026-02-31 10:00:00", "0001-01-01 00:00:00",
                   "9999-12-31 23:59:59.999999", "2024-02-29 12:00:00.5", "0000-01-01 00:00:00",
                   "2026-04-00 00:00:00.25"][i % 8],
            "dt0": ["1999-12-31 23:59:59", "2026-00-10 00:00:00", "2000-02-29 00:00:00", "1900-02-29 00:00:00"][i % 4],
            "dd": ["2026-02-28", "0000-00-00", "2023-02-29", "0001-01-01", "9999-12-31", "2026-00-10"][i % 6],
        })
    rows.append({"id": 99, **{name: None for name in rows[0] if name != "id"}})  # every value NULL
    return rows


def load(engine: sa.Engine, statement: str, rows: list[dict] | None = None) -> None:
    """Write as a MariaDB session that accepts zero and impossible dates (a database upgraded from old
    settings holds them)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
        conn.execute(sa.text(statement), rows or {})
        conn.exec_driver_sql("SET SESSION sql_mode = DEFAULT")


def mirror_both_ways(source: sa.Engine, destination: sa.Engine, caplog, **options) -> None:
    """Drain channel `texted` as text and channel `valued` by the row path, each into its table."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        assert reflect(source, destination, ReflectionSpec("texted", "texted"), **options).drained
    assert TEXT_PATH in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        assert reflect(source, destination, ReflectionSpec("valued", "valued", route=NO_TEXT), **options).drained
    assert TEXT_PATH not in caplog.text


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_values_of_every_kind_arrive_as_the_row_path_stores_them(source, destination, caplog):
    execute(source, f"CREATE TABLE kinds ({SOURCE})")
    for channel in ("texted", "valued"):
        install_channel(source, channel, "kinds")
        execute(destination, f"CREATE TABLE {channel} ({DESTINATION})")
    rows = hostile_rows()
    load(source, f"INSERT INTO kinds ({', '.join(rows[0])}) VALUES ({', '.join(':' + n for n in rows[0])})", rows)
    # Drained by sessions that read a backslash in a string literal as itself, as the escapes must survive.
    reader = sa.create_engine(source.url, connect_args={
        "init_command": "SET sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"})
    mirror_both_ways(reader, destination, caplog, batch_size=4)
    texted = as_text(destination, "texted")
    assert len(texted) == len(rows)
    assert texted == as_text(destination, "valued")
    # What the row path stores, spelt out for a few values.
    assert texted[1].startswith("(1,127,65535,9223372036854775807,0,t,-12345678901234567890.0123456789,-1.01,")
    assert texted[0].endswith(',"2026-01-02 03:04:05.679","1999-12-31 23:59:59",2026-02-28)')
    assert texted[1].endswith(",,,)") and texted[2].endswith(',,"2000-02-29 00:00:00",)')  # zero, impossible: NULL

    # Updates, a key update and deletes, in spans that hold some keys again.
    load(source, "UPDATE kinds SET t = CONCAT(t, '\\t\\\\N'), db = db / 3, d = d * -1, dt = '2026-02-30' "
                 "WHERE id % 2 = 0")
    load(source, "UPDATE kinds SET id = 1000 WHERE id = 3")
    load(source, "DELETE FROM kinds WHERE id IN (1, 5)")
    load(source, "UPDATE kinds SET v = 'again', dd = '2026-06-31' WHERE id = 0")
    mirror_both_ways(reader, destination, caplog, batch_size=3)
    reader.dispose()
    texted = as_text(destination, "texted")
    assert len(texted) == len(rows) - 2
    assert texted == as_text(destination, "valued")


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["psycopg"], indirect=True)
def test_an_initial_load_copies_as_text_what_the_row_path_copies(source, destination, monkeypatch):
    """Rows that were there before the channel are copied as lines of text too, chunk by chunk."""
    execute(source, f"CREATE TABLE kinds ({SOURCE})")
    rows = hostile_rows()
    load(source, f"INSERT INTO kinds ({', '.join(rows[0])}) VALUES ({', '.join(':' + n for n in rows[0])})", rows)
    for channel in ("texted", "valued"):
        install_channel(source, channel, "kinds")
        execute(destination, f"CREATE TABLE {channel} ({DESTINATION})")
    reads = spy_on_copies(monkeypatch)
    assert reflect(source, destination, ReflectionSpec("texted", "texted"), batch_size=4,
                   initial_load=True).copied == len(rows)
    assert reads and all(reads)
    reads.clear()
    assert reflect(source, destination, ReflectionSpec("valued", "valued", route=NO_TEXT), batch_size=4,
                   initial_load=True).copied == len(rows)
    assert reads and not any(reads)
    texted = as_text(destination, "texted")
    assert len(texted) == len(rows) and texted == as_text(destination, "valued")


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_an_initial_load_from_postgresql_copies_as_text(source, destination, monkeypatch):
    execute(source, f"CREATE TABLE kinds ({PG_COLUMNS})")
    execute(destination, f"CREATE TABLE kinds ({PG_COLUMNS})")
    rows = pg_rows()
    pg_load(source, rows)
    install_channel(source, "kinds", "kinds")
    reads = spy_on_copies(monkeypatch)
    assert reflect(source, destination, ReflectionSpec("kinds"), batch_size=5, initial_load=True).copied == len(rows)
    assert reads and all(reads)
    assert as_text(destination) == as_text(source)


def spy_on_copies(monkeypatch) -> list[bool]:
    """Whether each chunk an initial load reads comes as text."""
    reads, source_rows = [], DrainPlan.source_rows
    monkeypatch.setattr(DrainPlan, "source_rows", lambda self, unprocessed=(), line=None: reads.append(line is not None)
                        or source_rows(self, unprocessed, line))
    return reads


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
@pytest.mark.parametrize("source_type,destination_type", [
    ("timestamp NULL", "timestamp"),  # its text follows the session's time_zone
    ("datetime", "timestamptz"),  # the row path takes it as UTC
    ("double", "real"),  # rounded to a real from the text and from the double: not always alike
    ("float", "numeric"),  # the double's repr is another number than the text
    ("decimal(10, 2)", "text"),  # str(Decimal) may write an exponent
    ("enum('a', 'b')", "text"),
    ("varbinary(10)", "bytea"),
    ("json", "jsonb"),
    ("time", "time"),  # mysqlclient reads a timedelta
])
def test_values_text_would_not_carry_exactly_take_the_row_path(source, destination, source_type, destination_type,
                                                               caplog):
    assert_row_path(source, destination, source_type, destination_type, caplog)


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
def test_a_computed_field_takes_the_row_path(source, destination, caplog):
    """The server decides a computed field's type (a sum of integers is a DECIMAL), not its declaration."""
    execute(source, "CREATE TABLE items (id integer PRIMARY KEY, a integer, b integer)")
    install_channel(source, "items", "items")
    execute(source, "INSERT INTO items VALUES (1, 2, 3)")
    fields = ["id", {"name": "total", "expression": "a + b", "type": "integer"}]
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        spec = ReflectionSpec("items", create_table=True, mapping=ColumnMapping.from_dict({"fields": fields}))
        assert reflect(source, destination, spec).drained
    assert TEXT_PATH not in caplog.text


@pytest.mark.parametrize("source", ["mysql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql"], indirect=True)
@pytest.mark.parametrize("initial_load", [False, True])
def test_a_row_longer_than_max_allowed_packet_arrives_whole(source, destination, initial_load, caplog):
    """MariaDB makes no line longer than max_allowed_packet (CONCAT_WS gives NULL); it sends such
    a row's values all the same, so that span, or that chunk of an initial load, is read as values."""
    with source.connect() as conn:
        half = conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() // 2 + 1000
    execute(source, "CREATE TABLE big (id integer PRIMARY KEY, a longtext, b longtext)")
    if not initial_load:
        install_channel(source, "big", "big")
    execute(source, "INSERT INTO big VALUES (1, 'small', 'row'), (2, :a, NULL)", {"a": "a" * half})
    execute(source, "UPDATE big SET b = :b WHERE id = 2", {"b": "b" * half})  # one statement could not carry both
    if initial_load:
        install_channel(source, "big", "big")
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        result = reflect(source, destination, ReflectionSpec("big", create_table=True), initial_load=initial_load)
    assert result.drained and result.copied == (2 if initial_load else 0)
    assert TEXT_PATH in caplog.text
    with destination.connect() as conn:
        stored = conn.exec_driver_sql("SELECT id, a = repeat('a', %(n)s), b = repeat('b', %(n)s), length(a) + length(b) "
                                      "FROM big ORDER BY id", {"n": half}).all()
    assert stored == [(1, False, False, 8), (2, True, True, 2 * half)]
