"""PostgreSQL to PostgreSQL (psycopg 3 or psycopg2 writing): span rows travel as the source's own text (one
line of COPY text per row), never parsed in Python. Every value must arrive exactly, whatever
the sessions' settings; anything that text would not carry exactly stays on the row path."""

from __future__ import annotations

import logging
import traceback

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, ColumnMapping, ReflectionSpec, install_channel, pending_changes, reflect
from tests.support.databases import execute, q
from tests.support.tables import orders, table_rows, write

TEXT_PATH = "rows travel as the source's own text"

# Columns of many kinds, declared the same on both sides.
COLUMNS = """
    id integer PRIMARY KEY, t text, v varchar(50), c char(6), b bytea, n numeric(30, 10), f float8,
    r real, ts timestamp, tz timestamptz, d date, tm time, iv interval, ok boolean, u uuid,
    j jsonb, js json, arr text[], nums integer[], ip inet
"""
HOSTILE = ["", "\\", "\\N", "a\tb", "line\nbreak", "cr\rlf\r\n", "back\\slash\\t", "quote'\"", "ünïcødé ✓",
           "NULL", " lead and trail "]


def hostile_rows() -> list[dict]:
    rows = []
    for i, text in enumerate(HOSTILE):
        rows.append({
            "id": i, "t": text, "v": text[:50], "c": text[:6], "b": text.encode() + b"\x00\x01\\\n\t",
            "n": f"{i}1234567890.0123456789" if i % 2 else "-0.0000000001", "f": [0.1 + 0.2, 1e-300, -0.0,
            float("inf"), float("nan"), 1.7976931348623157e308][i % 6], "r": 0.1 * (i + 1),
            "ts": ["2026-01-02 03:04:05.678901", "0044-03-15 12:00:00 BC", "infinity", "1999-12-31 23:59:59"][i % 4],
            "tz": "2026-06-30 23:59:59.999999+05:30", "d": ["2026-02-28", "-infinity", "0001-01-01 BC"][i % 3],
            "tm": "23:59:59.999999", "iv": ["1 year 2 mons 3 days 04:05:06.7", "-1 day +02:00", "P1Y2M"][i % 3],
            "ok": [True, False, None][i % 3], "u": f"00000000-0000-0000-0000-{i:012d}",
            "j": '{"k": "%s", "n": [1, 2.50, null]}' % text.replace("\\", "\\\\").replace('"', '\\"')
                 .replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r"),
            "js": '{ "spaced":  "kept as written" }', "arr": [text, None, 'a,"b"', "{}"], "nums": [i, -i, None],
            "ip": "10.0.0.1/32" if i % 2 else "2001:db8::1",
        })
    rows.append({"id": 99, **{name: None for name in rows[0] if name != "id"}})  # every value NULL
    return rows


def load(engine: sa.Engine, rows: list[dict]) -> None:
    names = list(rows[0])
    statement = sa.text(f"INSERT INTO kinds ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})")
    with engine.begin() as conn:
        conn.execute(statement, rows)


def as_text(engine: sa.Engine, table: str = "kinds") -> list[str]:
    """Each row as PostgreSQL writes the whole record, in settings fixed here: equal text, equal values."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; "
                             "SET bytea_output = 'hex'; SET TimeZone = 'UTC'")
        return [row[0] for row in conn.exec_driver_sql(f"SELECT k::text FROM {q(engine, table)} k ORDER BY id")]


def database_settings(engine: sa.Engine, settings: dict) -> None:
    """Settings every new session of this database starts with."""
    name = engine.url.database
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for setting, value in settings.items():
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET {setting} = {value}')
    engine.dispose()


@pytest.mark.parametrize("source", ["postgresql", "psycopg"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_values_of_every_kind_arrive_exactly_whatever_the_sessions_settings(source, destination, caplog):
    # Settings that change how values are written as text, different on each side.
    database_settings(source, {"DateStyle": "'SQL, DMY'", "IntervalStyle": "sql_standard",
                               "extra_float_digits": "-15", "bytea_output": "escape", "TimeZone": "'Asia/Kolkata'"})
    database_settings(destination, {"DateStyle": "'German, MDY'", "IntervalStyle": "iso_8601",
                                    "TimeZone": "'America/New_York'"})
    for engine in (source, destination):
        execute(engine, f"CREATE TABLE kinds ({COLUMNS})")
    install_channel(source, "kinds", "kinds")
    rows = hostile_rows()
    load(source, rows)
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        result = reflect(source, destination, ReflectionSpec("kinds"), batch_size=4)
    assert TEXT_PATH in caplog.text
    assert result.drained and result.upserted == len(rows)
    assert as_text(destination) == as_text(source)

    # Updates, a key update and deletes, in spans that hold some keys again.
    execute(source, "UPDATE kinds SET t = t || E'\\t\\\\N', f = f / 3, n = n * -1 WHERE id % 2 = 0")
    execute(source, "UPDATE kinds SET id = 1000 WHERE id = 3")
    execute(source, "DELETE FROM kinds WHERE id IN (1, 5)")
    execute(source, "UPDATE kinds SET v = 'again' WHERE id = 0")
    result = reflect(source, destination, ReflectionSpec("kinds"), batch_size=3)
    assert result.drained and result.deleted == 3
    assert as_text(destination) == as_text(source)


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["psycopg"], indirect=True)
@pytest.mark.parametrize("source_type,destination_type", [
    ("money", "money"),  # its text follows lc_monetary
    ("numeric(12, 4)", "numeric(12, 2)"),  # the destination rounds: the row path refuses nothing either,
    ("timestamptz", "timestamp"),  # but converts the instant to UTC first
])
def test_values_text_would_not_carry_exactly_take_the_row_path(source, destination, source_type, destination_type,
                                                               caplog):
    assert_row_path(source, destination, source_type, destination_type, caplog)


def assert_row_path(source: sa.Engine, destination: sa.Engine, source_type: str, destination_type: str, caplog):
    """A column of `source_type` mirrored into one of `destination_type` sends the drain by the row path."""
    execute(source, f"CREATE TABLE items (id integer PRIMARY KEY, x {source_type})")
    execute(destination, f"CREATE TABLE items (id integer PRIMARY KEY, x {destination_type})")
    install_channel(source, "items", "items")
    execute(source, "INSERT INTO items VALUES (1, NULL)")
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        assert reflect(source, destination, ReflectionSpec("items")).drained
    assert TEXT_PATH not in caplog.text


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_custom_statements_and_nullify_take_the_row_path(source, destination, caplog):
    table = orders(source)
    for channel in ("nullified", "custom", "plain"):
        install_channel(source, channel, "orders")
    write(source, table.insert(), [{"id": i, "note": "n", "amount": i} for i in range(5)])
    execute(destination, "CREATE TABLE custom (id integer PRIMARY KEY, note varchar(100), amount numeric(12, 2))")
    for channel, mapping in (("nullified", ColumnMapping(on_delete="nullify")), ("custom", ColumnMapping(
            upsert_statement="INSERT INTO custom VALUES (:id, :note, :amount) ON CONFLICT (id) DO NOTHING"))):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
            reflect(source, destination, ReflectionSpec(channel, channel, create_table=True, mapping=mapping))
        assert TEXT_PATH not in caplog.text, channel
        assert table_rows(destination, channel) == table_rows(source, "orders")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        reflect(source, destination, ReflectionSpec("plain", "plain", create_table=True))
    assert TEXT_PATH in caplog.text
    assert table_rows(destination, "plain") == table_rows(source, "orders")


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_a_value_refused_while_copied_is_named_by_key_without_the_value(source, destination, caplog):
    """A domain of the same name that is stricter in the destination refuses the value as COPY
    reads it; the server's context line would quote the value."""
    execute(source, "CREATE DOMAIN code AS varchar(20)")
    execute(destination, "CREATE DOMAIN code AS varchar(20) CHECK (VALUE NOT LIKE 'secret%')")
    for engine in (source, destination):
        execute(engine, "CREATE TABLE items (id integer PRIMARY KEY, c code)")
    install_channel(source, "items", "items")
    execute(source, "INSERT INTO items VALUES (1, 'fine'), (2, 'secret-42'), (3, 'fine too')")
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"), pytest.raises(ApplyError) as error:
        reflect(source, destination, ReflectionSpec("items"))
    assert TEXT_PATH in caplog.text
    message = str(error.value)
    assert "id=2" in message and "code_check" in message, message
    logged = "".join(traceback.format_exception(error.value))  # the message and its chain, as a task log shows them
    assert "secret-42" not in logged, logged
    assert "secret-42" not in caplog.text
    assert table_rows(destination, "items") == []


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
def test_a_row_refused_on_the_text_path_is_named_by_key_and_nothing_of_its_span_is_acknowledged(
        source, destination, caplog):
    table = orders(source)
    execute(destination, "CREATE TABLE strict (id integer PRIMARY KEY, note varchar(100), "
                         "amount numeric(12, 2) CONSTRAINT amount_not_negative CHECK (amount >= 0))")
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "ok", "amount": 1} for i in range(20)])
    write(source, table.update().where(table.c.id == 7).values(amount=-5))
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"), pytest.raises(ApplyError) as error:
        reflect(source, destination, ReflectionSpec("orders", "strict"), batch_size=100)
    assert TEXT_PATH in caplog.text
    message = str(error.value)
    assert "id=7" in message and "amount_not_negative" in message, message
    assert table_rows(destination, "strict") == []
    assert pending_changes(source, "orders").count == 21

    write(source, table.update().where(table.c.id == 7).values(amount=5))
    assert reflect(source, destination, ReflectionSpec("orders", "strict")).drained
    assert table_rows(destination, "strict") == table_rows(source, "orders")
