"""PostgreSQL's COPY text format, written in Python: one line per row, fields between tabs, \\N
for NULL, for a driver that takes COPY data as text (psycopg2)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence

# What COPY's text format escapes in a value, backslash first.
COPY_ESCAPES = [("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")]


def escaped(text: str) -> str:
    for raw, escape in COPY_ESCAPES:
        text = text.replace(raw, escape)
    return text


def bytea(value) -> str:
    return "\\\\x" + bytes(value).hex()  # \\x, escaped for COPY


def interval(value: dt.timedelta) -> str:
    return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"  # as psycopg2 sends it


# COPY's text form of each kind of value a driver takes, by exact type (a subclass may print otherwise).
COPY_TEXT = {
    type(None): lambda value: "\\N", bool: lambda value: "t" if value else "f", int: str, float: repr,
    decimal.Decimal: str, str: escaped, bytes: bytea, bytearray: bytea, memoryview: bytea,
    dt.datetime: lambda value: value.isoformat(" "), dt.date: dt.date.isoformat, dt.time: dt.time.isoformat,
    dt.timedelta: interval, uuid.UUID: str,
}


def copy_text(values: Sequence, forms: dict = COPY_TEXT) -> str | None:
    """A row as one line of COPY text; None if a value is of a kind without a form here."""
    fields = []
    for value in values:
        form = forms.get(type(value))
        if form is None:
            return None
        fields.append(form(value))
    return "\t".join(fields)


__all__ = ["COPY_ESCAPES", "COPY_TEXT", "bytea", "copy_text", "escaped", "interval"]
