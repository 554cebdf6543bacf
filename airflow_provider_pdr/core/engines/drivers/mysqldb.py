"""mysqlclient (SQLAlchemy's mysqldb): multi-row upserts from its own executemany, and a cheaper
decoder of DATETIME and TIMESTAMP text."""

from __future__ import annotations

import datetime as dt

from airflow_provider_pdr.core.engines.drivers import Driver
from airflow_provider_pdr.core.engines.drivers.dbapi import executemany_upserter


def datetime_or_none(text: str):
    """mysqlclient's DATETIME and TIMESTAMP decoder (MySQLdb.times.DateTime_or_None) taking
    datetime.fromisoformat for the shape the server sends, a tenth of its cost: the same value
    for every text of that shape; any other text goes to mysqlclient's own."""
    if (19 <= len(text) <= 26 and text[4] == text[7] == "-" and text[10] == " " and text[13] == text[16] == ":"
            and text[19:20] in ("", ".")):
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:  # a zero date, say: mysqlclient's own decoder makes it None
            pass
        else:
            if value.tzinfo is None:
                return value
    from MySQLdb.times import DateTime_or_None

    return DateTime_or_None(text)


class Mysqldb(Driver):
    def upserter(self, statement, dialect, table):
        # mysqlclient's executemany rewrites INSERT ... VALUES (...) ON DUPLICATE KEY UPDATE
        # into multi-row statements itself.
        return executemany_upserter(statement, dialect, table)

    def decode_faster(self, conn):
        from MySQLdb.constants import FIELD_TYPE
        from MySQLdb.times import DateTime_or_None

        # The driver connection's own decoders, read by every result it makes: left as they are
        # where a user gave others.
        decoders = conn.connection.dbapi_connection.converter
        for field in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
            if decoders.get(field) is DateTime_or_None:
                decoders[field] = datetime_or_none


__all__ = ["Mysqldb", "datetime_or_none"]
