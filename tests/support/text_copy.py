"""What the text-copy tests share: PostgreSQL columns of many kinds, hostile text, and how to
read a table back as PostgreSQL writes its records."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, reflect
from tests.support.databases import execute, q

TEXT_PATH = "rows travel as the source's own text"  # what a drain logs when its rows travel so

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


def assert_row_path(source: sa.Engine, destination: sa.Engine, source_type: str, destination_type: str, caplog):
    """A column of `source_type` mirrored into one of `destination_type` sends the drain by the row path."""
    execute(source, f"CREATE TABLE items (id integer PRIMARY KEY, x {source_type})")
    execute(destination, f"CREATE TABLE items (id integer PRIMARY KEY, x {destination_type})")
    install_channel(source, "items", "items")
    execute(source, "INSERT INTO items VALUES (1, NULL)")
    with caplog.at_level(logging.INFO, logger="airflow_provider_pdr"):
        assert reflect(source, destination, ReflectionSpec("items")).drained
    assert TEXT_PATH not in caplog.text

