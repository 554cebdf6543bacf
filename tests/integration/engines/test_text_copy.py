"""PostgreSQL to PostgreSQL (psycopg 3 or psycopg2 writing): span rows travel as the source's own text (one
line of COPY text per row), never parsed in Python. Every value must arrive exactly, whatever
the sessions' settings; anything that text would not carry exactly stays on the row path."""

from __future__ import annotations

import logging
import traceback

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, ColumnMapping, ReflectionSpec, install_channel, pending_changes, reflect
from tests.support.databases import execute
from tests.support.tables import orders, table_rows, write
from tests.support.text_copy import COLUMNS, TEXT_PATH, as_text, assert_row_path, hostile_rows, load


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
