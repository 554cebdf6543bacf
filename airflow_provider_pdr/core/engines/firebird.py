"""Firebird 3+: one PSQL row trigger per table for all events, ``UPDATE OR INSERT ... MATCHING``
upsert, and a row lock on the channel's registry row as the channel lock.

Firebird has no schemas, a 31-character identifier limit, and applies DDL only at commit;
the ``firebird+fdb`` dialect (airflow_provider_pdr.dialects) commits DDL at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import time
from collections.abc import Sequence

import sqlalchemy as sa

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import CaptureTarget, EngineModule, SourceTable, key_mismatch
from airflow_provider_pdr.core.keys import chunks
from airflow_provider_pdr.core.errors import ConfigurationError, UnsupportedTypeError
from airflow_provider_pdr.dialects.firebird import Cursor

MAX_NUMERIC_PRECISION = 18  # Firebird 3 NUMERIC/DECIMAL
MAX_VARCHAR_UTF8 = 8191  # 32765 bytes at up to 4 bytes a character
# Of the 64 KB a Firebird row may take, what BLOB values read inline as VARCHAR may use.
INLINE_BYTES = 32000
# read committed, no wait: a lock conflict is reported at once instead of queued
NOWAIT_TPB = bytes([3, 9, 7, 15, 17])  # isc_tpb_ version3, write, nowait, read_committed, rec_version
OCTETS_SQL = "VARCHAR(8191) CHARACTER SET OCTETS"  # bytes; index keys are far shorter
LOCK_CONFLICT_GDSCODES = {335544345, 335544336, 335544878}  # lock_conflict, deadlock, update_conflict


def waiting_tpb(seconds: int) -> bytes:
    """isc_tpb_ version3, write, wait, read_committed, rec_version, lock_timeout (4 bytes LE)."""
    return bytes([3, 9, 6, 15, 17, 21, 4]) + struct.pack("<I", seconds)


class FirebirdEngine(EngineModule):
    name = "firebird"
    max_identifier_length = 31
    lock_poll_seconds = 0.2  # under a second, a NOWAIT lock asked again at this pace

    def quote(self, name: str) -> str:
        # Quote exactly as the dialect's own DDL does, or "orders" created by SQLAlchemy (stored
        # as ORDERS) and a quoted "orders" in a trigger body would be different tables.
        return self.preparer.quote(name)

    def check_name(self, name: str, what: str) -> None:
        size = len(name.encode("utf-8"))
        if size > self.max_identifier_length:
            raise ConfigurationError(
                f"{what} name {name!r} is {size} bytes long, but Firebird 3 names hold at most "
                f"{self.max_identifier_length}: create the destination table yourself with shorter names"
            )

    def default_schema(self, conn):
        return None

    def changed_at_column(self) -> sa.Column:
        return sa.Column("changed_at", sa.TIMESTAMP(), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP"))

    def age_seconds(self, oldest):
        return sa.func.datediff(sa.literal_column("MILLISECOND"), oldest, sa.literal_column("CURRENT_TIMESTAMP")) \
            / sa.literal_column("1000.0")

    # -- capture ----------------------------------------------------------------------------
    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        key_list = ", ".join(self.quote(f"key_{i}") for i in range(1, len(table.key_columns) + 1))

        def insert(row: str) -> str:
            values = ", ".join(f"{row}.{self.quote(c)}" for c in table.key_columns)
            # POST_EVENT wakes a waiting sensor at commit; Firebird merges repeats of one name.
            return " ".join(
                f"INSERT INTO {self.quote(t.change_table)} ({key_list}) VALUES ({values}); "
                f"POST_EVENT {self.literal(self.event_name(t))};"
                for t in targets
            )

        # A key update records the old key too, compared as bytes so that a change Firebird's
        # collation calls equal (trailing blanks, case under a _CI collation) still reaches
        # a mirror that tells them apart.
        changed = key_mismatch("OLD", "NEW", table.key_columns, self.quote, lambda v: f"CAST({v} AS {OCTETS_SQL})")
        return [
            f"CREATE TRIGGER {self.quote(base + '_c')} FOR {self.quote(table.name)} "
            "ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 32000 AS\nBEGIN\n"
            f"  IF (NOT DELETING) THEN BEGIN {insert('NEW')} END\n"
            f"  IF (DELETING OR ({changed})) THEN BEGIN {insert('OLD')} END\nEND"
        ]

    @staticmethod
    def event_name(target: CaptureTarget) -> str:
        return target.change_table

    def key_bytes(self, value):
        # 'a' = 'a ' in Firebird (and 'a' = 'A' under a _CI collation); the trigger compares bytes.
        return sa.cast(value, OCTETS)

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        return [f"DROP TRIGGER {self.quote(base + '_c')}"]

    def capture_objects(self, conn, table: SourceTable) -> set[str]:
        prefix = names.PREFIX + names.table_tag(table.schema, table.name)
        rows = conn.execute(
            sa.text(
                "SELECT TRIM(rdb$trigger_name) FROM rdb$triggers WHERE rdb$relation_name = :table "
                "AND rdb$trigger_name STARTING WITH :prefix"
            ),
            {"table": self.dialect.denormalize_name(table.name), "prefix": self.dialect.denormalize_name(prefix)},
        )
        return {self.dialect.normalize_name(name).rsplit("_", 1)[0] for (name,) in rows}

    # -- apply ------------------------------------------------------------------------------
    def upsert(self, conn, table: sa.Table, key_columns, rows) -> None:
        columns = list(table.columns)
        statement = sa.text(
            f"UPDATE OR INSERT INTO {self.quote(table.name)} "
            f"({', '.join(self.quote(c.name) for c in columns)}) "
            f"VALUES ({', '.join(f':p{i}' for i in range(len(columns)))}) "
            f"MATCHING ({', '.join(self.quote(k) for k in key_columns)})"
        ).bindparams(*[sa.bindparam(f"p{i}", type_=c.type) for i, c in enumerate(columns)])
        conn.execute(statement, [{f"p{i}": row[c.name] for i, c in enumerate(columns)} for row in rows])

    def delete_keys(self, conn, table: sa.Table, key_columns, keys) -> int:
        columns = [table.c[name] for name in key_columns]
        if len(columns) == 1:  # Firebird 3 accepts at most 1500 values in an IN list
            return sum(
                conn.execute(sa.delete(table).where(columns[0].in_([k[0] for k in chunk]))).rowcount
                for chunk in chunks(keys, 500)
            )
        # No row values in Firebird: (a = ? AND b = ?) OR ...
        return sum(
            conn.execute(sa.delete(table).where(sa.or_(
                *[sa.and_(*[c == v for c, v in zip(columns, key)]) for key in chunk]
            ))).rowcount
            for chunk in chunks(keys, 100)
        )

    # -- locking ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def channel_lock(self, engine, schema, channel, timeout):
        """An open transaction holding the channel's registry row WITH LOCK; the server ends
        the transaction, and with it the lock, when the connection dies. A wait of a second or
        more waits in the server's queue (whole seconds), so it is served at the next release
        even when the holder takes the lock again at once; a shorter one asks again."""
        registry = sa.table(names.REGISTRY_TABLE, sa.column("channel"))
        compiled = sa.select(registry.c.channel).where(registry.c.channel == channel) \
            .with_for_update().compile(dialect=engine.dialect)
        params = [compiled.params[name] for name in compiled.positiontup]
        raw = engine.raw_connection()
        transaction = raw.driver_connection.trans(default_tpb=NOWAIT_TPB)
        cursor = Cursor(transaction.cursor())  # drops its statement on close
        try:
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                transaction.begin(waiting_tpb(math.ceil(left)) if left >= 1 else NOWAIT_TPB)
                try:
                    cursor.execute(compiled.string, params)
                    cursor.fetchall()
                    break
                except engine.dialect.loaded_dbapi.DatabaseError as error:
                    transaction.rollback()
                    if error.args[-1] not in LOCK_CONFLICT_GDSCODES:
                        raise
                    if time.monotonic() >= deadline:
                        raise self.busy(channel, timeout) from None
                    time.sleep(min(self.lock_poll_seconds, max(0.05, deadline - time.monotonic())))
            yield
        finally:
            cursor.close()
            transaction.rollback()
            transaction.close()
            raw.close()

    # -- waking a waiting sensor ------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def listener(self, engine, target):
        """Firebird events through fdb's event conduit; its blocking wait runs in a thread."""
        raw = await asyncio.to_thread(engine.raw_connection)
        try:
            conduit = await asyncio.to_thread(raw.driver_connection.event_conduit, [self.event_name(target)])
            await asyncio.to_thread(conduit.begin)
            try:
                yield Events(conduit)
            finally:
                await asyncio.to_thread(conduit.close)
        finally:
            await asyncio.to_thread(raw.close)

    def read_forms(self, values):
        # fdb fetches each BLOB value in round trips of its own (under 2,000 rows a second with two
        # text BLOBs): a short value comes inline as a VARCHAR instead, and only a longer one as
        # a BLOB, in an extra column that is NULL otherwise.
        blobs = [i for i, value in enumerate(values)
                 if isinstance(stored_type(value.type), (sa.Text, sa.LargeBinary))]
        if not blobs:
            return list(values), []
        # The row keeps its other columns (a UTF8 character takes up to 4 bytes) and stays within 64 KB.
        others = sum(4 * value.type.length if isinstance(value.type, sa.String) and value.type.length else 16
                     for i, value in enumerate(values) if i not in blobs)
        chars = min(MAX_VARCHAR_UTF8, min(INLINE_BYTES, 60000 - others) // (4 * len(blobs)))
        if chars < 100:
            return list(values), []
        forms, extras = list(values), []
        for i in blobs:
            value = values[i]
            text = isinstance(stored_type(value.type), sa.Text)
            size = sa.func.char_length(value) if text else sa.func.octet_length(value)
            inline = sa.cast(value, InlineVarchar(chars, "UTF8" if text else "OCTETS"))
            forms[i] = sa.type_coerce(sa.case((size <= chars, inline)), value.type)
            extras.append((i, sa.type_coerce(sa.case((size > chars, value)), value.type)))
        return forms, extras

    # -- types ------------------------------------------------------------------------------
    def io_type(self, type_):
        if isinstance(type_, sa.Text) and not isinstance(type_, JsonText):
            return JsonText()
        return type_

    def ddl_type(self, generic, where):
        if isinstance(generic, sa.Numeric) and not isinstance(generic, sa.Float):
            if generic.precision is None or generic.precision > MAX_NUMERIC_PRECISION:
                shape = "without precision" if generic.precision is None else \
                    f"({generic.precision},{generic.scale})"
                raise UnsupportedTypeError(
                    f"{where}: NUMERIC {shape} cannot be stored exactly in Firebird 3 "
                    f"(NUMERIC holds at most {MAX_NUMERIC_PRECISION} digits); create the destination table yourself"
                )
        if isinstance(generic, sa.Uuid):
            return sa.CHAR(36)  # the canonical text form, as the other engines print it
        if isinstance(generic, sa.String) and not isinstance(generic, sa.Text) \
                and generic.length and generic.length > MAX_VARCHAR_UTF8:
            return sa.Text()
        return generic


def stored_type(type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
    """The type under a TypeDecorator (JsonText is a text BLOB)."""
    return type_.impl_instance if isinstance(type_, sa.types.TypeDecorator) else type_


class InlineVarchar(sa.types.UserDefinedType):
    """VARCHAR(n) of a character set, to read a BLOB's value inline."""

    cache_ok = True

    def __init__(self, length: int, charset: str):
        self.length, self.charset = length, charset

    def get_col_spec(self, **kw):
        return f"VARCHAR({self.length}) CHARACTER SET {self.charset}"


class Octets(sa.types.UserDefinedType):
    """Strings as bytes, for exact comparisons."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return OCTETS_SQL


OCTETS = Octets()


class JsonText(sa.types.TypeDecorator):
    """Text BLOBs, which is where JSON goes in Firebird: objects and arrays are written as
    their JSON text."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value


class Events:
    """Wakes on the channel's POST_EVENT; several events in a row count as one wake-up."""

    def __init__(self, conduit):
        self.conduit = conduit

    async def wait(self, timeout: float) -> bool:
        counts = await asyncio.to_thread(self.conduit.wait, max(timeout, 0.0))
        woke = any(counts.values()) if counts else False
        if woke:
            self.conduit.flush()  # swallow the rest of a burst
        return woke


__all__ = ["Events", "FirebirdEngine", "InlineVarchar", "JsonText", "OCTETS", "Octets", "stored_type", "waiting_tpb"]
