"""Values on their way between engines: the conversions a destination column needs, one form
for values equal across engines, typed keys in JSON, and the exact way a driver's value takes
to the other driver."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa


def _aware(value):
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _naive_utc(value):
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def _text(value):
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dict, list)):  # MariaDB's JSON is LONGTEXT with a validity check
        return json.dumps(value)
    return value


def _boolean(value):
    return bool(value) if isinstance(value, int) else value


def value_converters(table: sa.Table, sources: dict[str, sa.types.TypeEngine] | None = None) -> dict[str, Callable]:
    """Per destination column, the conversion its values need (docs/types.md).

    Time zone aware values going into a column without time zone are stored in UTC; naive
    values going into a column with time zone are taken as UTC; integers into a boolean
    column become booleans; UUIDs into a text column take their canonical text form, JSON
    documents JSON text. With `sources` (the type each column's values are read with), a
    boolean or text column fed by a boolean or text source needs none.
    """
    converters = {}
    for column in table.columns:
        type_, source = column.type, (sources or {}).get(column.name)
        if isinstance(type_, sa.DateTime):  # always: some aware types do not say so (DATETIMEOFFSET)
            converters[column.name] = _aware if type_.timezone else _naive_utc
        elif isinstance(type_, sa.Boolean):
            if not isinstance(source, sa.Boolean):
                converters[column.name] = _boolean
        elif isinstance(type_, sa.String):
            if not isinstance(source, sa.String):
                converters[column.name] = _text
    return converters


def convert_rows(rows: list[Sequence], conversions: list[tuple[int, Callable]]) -> list[Sequence]:
    """Rows with the value at each position `i` of `conversions` passed through its function."""
    if not conversions:
        return rows
    out = []
    for row in rows:
        row = list(row)
        for i, convert in conversions:
            row[i] = convert(row[i])
        out.append(row)
    return out


def exact_path(source: sa.types.TypeEngine, convert: Callable | None, destination: sa.types.TypeEngine,
               source_dialect: sa.engine.Dialect, destination_dialect: sa.engine.Dialect) -> Callable:
    """The way a value the source's driver returns for a `source` field goes to the destination's
    driver: SQLAlchemy's result processing, the drain's conversion, then the bind processing.
    The result processor is the one for no reported column type, as SQLite's driver reports none."""
    steps = [step for step in (source._cached_result_processor(source_dialect, None), convert,
                               destination._cached_bind_processor(destination_dialect)) if step is not None]

    def exact(value):
        for step in steps:
            value = step(value)
        return value

    return exact


PLAIN_VALUES = {int, str, float, type(None)}  # already in the one form `comparable` gives


def comparable(value):
    """One form for values equal across engines (an instant, a number, bytes)."""
    if type(value) in PLAIN_VALUES:  # most keys and values, each compared many times
        return value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        return value.normalize() if value.is_finite() else value
    if isinstance(value, memoryview):
        return bytes(value)
    return value


# -- key values in JSON, typed so that a resumed run binds exactly the same values ----------
def encode_key(values) -> str:
    def one(v):
        for kind, type_ in (("datetime", dt.datetime), ("date", dt.date), ("time", dt.time)):
            if isinstance(v, type_):
                return {kind: v.isoformat()}
        if isinstance(v, decimal.Decimal):
            return {"decimal": str(v)}
        if isinstance(v, (bytes, memoryview)):
            return {"bytes": bytes(v).hex()}
        if isinstance(v, uuid.UUID):
            return {"uuid": str(v)}
        return v
    return json.dumps([one(v) for v in values])


def decode_key(text: str) -> tuple:
    parse = {"datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat, "time": dt.time.fromisoformat,
             "decimal": decimal.Decimal, "bytes": bytes.fromhex, "uuid": uuid.UUID}

    def one(v):
        if isinstance(v, dict):
            (kind, raw), = v.items()
            return parse[kind](raw)
        return v
    return tuple(one(v) for v in json.loads(text))
