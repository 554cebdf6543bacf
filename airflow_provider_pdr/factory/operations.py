"""What the `pdr` command reads and does in a source database: its channels, their backlog and
triggers, the configured reflections' status, orphans, and an uninstall that says what it removed.

Each function returns plain rows (dicts) that the command prints as a table or as JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.channel import capture_base_name, uninstall_channel
from airflow_provider_pdr.core.engines import EngineModule, SourceTable, engine_module
from airflow_provider_pdr.core.errors import ChannelNotFoundError
from airflow_provider_pdr.core.registry import (
    Channel, channels_on, count_pending, load_channel, registry_schema, registry_table, row_to_channel,
)
from airflow_provider_pdr.factory.config import ConfigFile, Reflection


def installed_channels(conn: Connection, module: EngineModule) -> list[Channel]:
    """Every channel registered in the database, by name; none where there is no registry."""
    where = registry_schema(conn, module)
    registry = registry_table(where)
    if not sa.inspect(conn).has_table(registry.name, schema=where):
        return []
    rows = conn.execute(sa.select(registry).order_by(registry.c.channel)).all()
    return [row_to_channel(row, where) for row in rows]


def triggers_present(conn: Connection, module: EngineModule, info: Channel) -> bool:
    """True when the table's capture triggers are the ones that write to all its channels, this one included."""
    targets = [c.target() for c in channels_on(conn, registry_table(info.schema), info.table)]
    return capture_base_name(module, info.table, targets) in _capture_objects(conn, module, info.table)


def channel_row(conn: Connection, module: EngineModule, info: Channel) -> dict:
    pending = count_pending(conn, module, info)
    return {
        "channel": info.name, "table": str(info.table), "format_version": info.format_version,
        "pending": pending.count, "oldest_age_seconds": pending.oldest_age_seconds,
        "triggers": triggers_present(conn, module, info),
    }


def list_channels(engine: Engine) -> list[dict]:
    """`pdr channels`: each channel with its table, format version, backlog and whether it is captured."""
    module = engine_module(engine)
    with engine.connect() as conn:
        return [channel_row(conn, module, info) for info in installed_channels(conn, module)]


def reflection_status(configs: Iterable[ConfigFile], open_engine: Callable[[str], Engine],
                      describe_error: Callable[[str, BaseException], str]) -> list[dict]:
    """`pdr status`: each configured reflection's backlog and lag, read from its source connection.

    A connection that cannot be reached marks its reflections unreachable and the others go on.
    """
    failures: dict[str, str] = {}  # conn_id -> why, so an unreachable server is tried once
    rows = []
    for config in configs:
        for reflection in config.reflections:
            conn_id = reflection.source.conn_id
            row = {"reflection": reflection.name, "source": conn_id, "table": _source_table(reflection),
                   "channel": reflection.channel, "pending": None, "oldest_age_seconds": None, "state": ""}
            if conn_id not in failures:
                try:
                    row.update(_channel_status(open_engine(conn_id), reflection.channel))
                except Exception as error:  # reported in the row; the other connections go on
                    failures[conn_id] = describe_error(conn_id, error)
            if conn_id in failures:
                row["state"] = f"unreachable: {failures[conn_id]}"
            rows.append(row)
    return rows


def _source_table(reflection: Reflection) -> str:
    source = reflection.source
    return f"{source.schema_}.{source.table}" if source.schema_ else source.table


def _channel_status(engine: Engine, channel: str) -> dict:
    module = engine_module(engine)
    with engine.connect() as conn:
        try:
            info = load_channel(conn, module, channel)
        except ChannelNotFoundError:
            return {"state": "not installed"}
        pending = count_pending(conn, module, info)
        captured = triggers_present(conn, module, info)
    return {"pending": pending.count, "oldest_age_seconds": pending.oldest_age_seconds,
            "state": "ok" if captured else "triggers missing"}


def configured_channels(configs: Iterable[ConfigFile], conn_id: str | None) -> set[str]:
    """The channels the configs read from connection `conn_id` (from any connection when None)."""
    return {
        r.channel for config in configs for r in config.reflections if conn_id is None or r.source.conn_id == conn_id
    }


def orphan_channels(engine: Engine, configured: set[str]) -> list[dict]:
    """`pdr orphans`: the channels installed in the database that no configured reflection reads."""
    return [row for row in list_channels(engine) if row["channel"] not in configured]


def describe_channel(engine: Engine, channel: str) -> dict:
    """One channel's row, as `pdr channels` shows it; ChannelNotFoundError if it is not installed."""
    module = engine_module(engine)
    with engine.connect() as conn:
        return channel_row(conn, module, load_channel(conn, module, channel))


def uninstall(engine: Engine, channel: str) -> dict:
    """`pdr uninstall`: the channel's row as it was, with the objects `removed` (and `created`:
    the triggers regenerated for the table's other channels).

    The pending count is read just before the uninstall: changes captured in between are
    dropped too, and not counted.
    """
    module = engine_module(engine)
    with engine.connect() as conn:
        info = load_channel(conn, module, channel)
        before = channel_row(conn, module, info)
        triggers_before = _capture_objects(conn, module, info.table)
        conn.rollback()
    if not uninstall_channel(engine, channel):
        raise ChannelNotFoundError(f"channel {channel!r} is not installed in the source database")
    registry = registry_table(info.schema)
    with engine.connect() as conn:
        triggers_after = _capture_objects(conn, module, info.table)
        registry_gone = not sa.inspect(conn).has_table(registry.name, schema=info.schema)
        conn.rollback()
    removed = [f"registry row {channel!r} in {registry.name}", f"change table {info.change_table}"]
    removed += [f"capture triggers {base} on {info.table}" for base in sorted(triggers_before - triggers_after)]
    if registry_gone:
        removed.append(f"registry table {registry.name} (this was its last channel)")
    created = [f"capture triggers {base} on {info.table}, for its other channels"
               for base in sorted(triggers_after - triggers_before)]
    return {**before, "removed": removed, "created": created}


def _capture_objects(conn: Connection, module: EngineModule, table: SourceTable) -> set[str]:
    if not sa.inspect(conn).has_table(table.name, schema=table.schema):
        return set()
    return module.capture_objects(conn, table)
