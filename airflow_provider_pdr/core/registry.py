"""The channel tables in the source database, as the rest of the core reads them: the registry
(``pdr_channels``), each channel's change table, and the snapshot progress table
(``pdr_snapshots``); the Channel and Pending values read from them."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines import CaptureTarget, EngineModule, SourceTable
from airflow_provider_pdr.core.errors import ChannelNotFoundError

PROGRESS_TABLE = "pdr_snapshots"
COPY, SWEEP, DONE = "copy", "sweep", "done"


@dataclass(frozen=True)
class Channel:
    """A channel as registered in the source database."""

    name: str
    table: SourceTable
    change_table: str
    schema: str | None  # where pdr_channels and the change table live
    columns: dict[str, str]  # source column -> type, as seen at install (for drift checks)
    format_version: int

    def target(self) -> CaptureTarget:
        return CaptureTarget(self.change_table, self.schema, self.name)


@dataclass(frozen=True)
class Pending:
    count: int
    oldest_age_seconds: float | None  # None when nothing is pending


# The same Table object for the same name, call after call: SQLAlchemy finds the statements
# built on it in its compiled cache instead of compiling them again for every run.
@functools.lru_cache(maxsize=256)
def registry_table(schema: str | None) -> sa.Table:
    return sa.Table(
        names.REGISTRY_TABLE, sa.MetaData(),
        sa.Column("channel", sa.Unicode(63), primary_key=True),
        sa.Column("source_schema", sa.Unicode(128)),
        sa.Column("source_table", sa.Unicode(128), nullable=False),
        sa.Column("change_table", sa.Unicode(64), nullable=False),
        sa.Column("key_columns", sa.UnicodeText, nullable=False),
        sa.Column("source_columns", sa.UnicodeText, nullable=False),
        sa.Column("format_version", sa.Integer, nullable=False),
        schema=schema,
    )


def change_table(module: EngineModule, channel: Channel, key_types: list[sa.types.TypeEngine]) -> sa.Table:
    return sa.Table(
        channel.change_table, sa.MetaData(),
        sa.Column("seq", module.sequence_type, primary_key=True, autoincrement=True),
        module.changed_at_column(),
        *[sa.Column(f"key_{i}", type_, nullable=False) for i, type_ in enumerate(key_types, 1)],
        schema=channel.schema,
    )


def row_to_channel(row, schema: str | None) -> Channel:
    return Channel(
        name=row.channel,
        table=SourceTable(row.source_table, row.source_schema, tuple(json.loads(row.key_columns))),
        change_table=row.change_table,
        schema=schema,
        columns=json.loads(row.source_columns),
        format_version=row.format_version,
    )


def registry_schema(conn: Connection, module: EngineModule) -> str | None:
    return module.default_schema(conn)


def load_channel(conn: Connection, module: EngineModule, channel: str) -> Channel:
    schema = registry_schema(conn, module)
    registry = registry_table(schema)
    if not sa.inspect(conn).has_table(registry.name, schema=schema):
        raise ChannelNotFoundError(f"channel {channel!r} is not installed: the source has no {registry.name} table")
    row = conn.execute(sa.select(registry).where(registry.c.channel == channel)).first()
    if row is None:
        raise ChannelNotFoundError(f"channel {channel!r} is not installed in the source database")
    return row_to_channel(row, schema)


def channels_on(conn: Connection, registry: sa.Table, table: SourceTable) -> list[Channel]:
    rows = conn.execute(
        sa.select(registry)
        .where(registry.c.source_table == table.name)
        .where(registry.c.source_schema.is_(None) if table.schema is None else registry.c.source_schema == table.schema)
        .order_by(registry.c.channel)
    )
    return [row_to_channel(row, registry.schema) for row in rows]


@functools.lru_cache(maxsize=256)  # as registry_table
def change_clock(name: str, schema: str | None) -> sa.Table:
    """A change table as count_pending reads it: when each change was captured."""
    return sa.Table(name, sa.MetaData(), sa.Column("changed_at"), schema=schema)


def count_pending(conn: Connection, module: EngineModule, info: Channel) -> Pending:
    changes = change_clock(info.change_table, info.schema)
    count, age = conn.execute(
        sa.select(sa.func.count(), module.age_seconds(sa.func.min(changes.c.changed_at)))
    ).one()
    conn.rollback()
    return Pending(int(count), None if not count else max(0.0, float(age)))


def progress_table(schema: str | None) -> sa.Table:
    return sa.Table(
        PROGRESS_TABLE, sa.MetaData(),
        sa.Column("channel", sa.String(63), primary_key=True),
        sa.Column("phase", sa.String(8), nullable=False),  # copy, sweep or done
        sa.Column("resync", sa.Boolean, nullable=False),
        sa.Column("last_key", sa.Text),  # JSON: the last key copied (copy) or swept (sweep)
        sa.Column("copied", sa.BigInteger, nullable=False),
        sa.Column("removed", sa.BigInteger, nullable=False),
        schema=schema,
    )


def unfinished(source: Connection, schema: str | None, channel: str) -> bool:
    """True when a copy or sweep of the channel was interrupted (it resumes on the next reflect)."""
    found = False
    if sa.inspect(source).has_table(PROGRESS_TABLE, schema=schema):
        table = progress_table(schema)
        found = source.execute(sa.select(table.c.phase).where(table.c.channel == channel)).scalar() in (COPY, SWEEP)
    source.rollback()
    return found


def forget(conn: Connection, schema: str | None, channel: str) -> None:
    """Drop the channel's snapshot progress (on uninstall); the table goes with its last row."""
    if not sa.inspect(conn).has_table(PROGRESS_TABLE, schema=schema):
        return
    table = progress_table(schema)
    conn.execute(table.delete().where(table.c.channel == channel))
    if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0:
        table.drop(conn)
