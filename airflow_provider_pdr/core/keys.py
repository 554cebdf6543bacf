"""Conditions on primary keys that every engine accepts: no row values (Firebird and SQL
Server have no `(a, b) IN (...)` nor `(a, b) > (...)`), few enough parameters per statement
(Firebird takes 1500 values in an IN list, SQL Server 2100 parameters)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa

MAX_PARAMETERS = 1000


def after(columns: Sequence[sa.ColumnElement], last: tuple | None) -> sa.ColumnElement | None:
    """Keyset condition "key > last": (a > x) OR (a = x AND b > y) ..."""
    if last is None:
        return None
    return sa.or_(*[
        sa.and_(*[columns[j] == last[j] for j in range(i)], column > last[i]) for i, column in enumerate(columns)
    ])


def key_in(columns: Sequence[sa.ColumnElement], keys: Sequence[tuple]) -> sa.ColumnElement:
    if len(columns) == 1:
        return columns[0].in_([key[0] for key in keys])
    return sa.or_(*[sa.and_(*[c == v for c, v in zip(columns, key)]) for key in keys])


def key_chunks(keys: Sequence[tuple], width: int) -> Iterator[Sequence[tuple]]:
    """Keys in parts small enough for one statement."""
    size = max(1, MAX_PARAMETERS // max(width, 1))
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
