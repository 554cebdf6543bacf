"""The notification channel in the source database: install, uninstall, count.

Layout in the source (all in the connection's default schema):
- ``pdr_channels``: one row per channel — which table it watches, its change table, key.
- one change table per channel: ``seq`` (increasing), ``changed_at``, ``key_1..key_n``
  typed like the source's primary key, so a change row joins straight back to its row.
- capture triggers on each watched table, one insert per channel per row (or statement),
  regenerated whenever the set of channels on the table changes.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines import CaptureTarget, EngineModule, SourceTable, engine_module
from airflow_provider_pdr.core.errors import ChannelNotFoundError, ConfigurationError
from airflow_provider_pdr.core.registry import (
    Channel, Pending, change_table, channels_on, count_pending, forget, load_channel, registry_schema, registry_table,
    row_to_channel,
)
from airflow_provider_pdr.core.schema import describe, introspect_table, primary_key

log = logging.getLogger(__name__)

# Bumped when the layout of channel objects changes; install upgrades older ones.
FORMAT_VERSION = 1


def sync_triggers(conn: Connection, module: EngineModule, table: SourceTable, targets: list[CaptureTarget]) -> str | None:
    """Make the triggers on `table` write to exactly `targets`; returns the trigger base name.

    The new triggers are created before the old ones are dropped, so that on engines whose DDL
    is not transactional (MySQL) no write goes uncaptured in between; a change captured twice
    meanwhile is harmless (apply is idempotent).
    """
    installed = module.capture_objects(conn, table)
    wanted = None
    if targets:
        wanted = capture_base_name(module, table, targets)
        if wanted not in installed:
            module.execute_ddl(conn, module.capture_ddl(table, targets, wanted))
    for base in installed - {wanted}:
        module.execute_ddl(conn, module.drop_capture_ddl(table, base))
    return wanted


def install_channel(engine: Engine, channel: str, table: str, schema: str | None = None) -> Channel:
    """Install (or upgrade) `channel` on a source table. Running it again changes nothing.

    An install that fails leaves the source as it was: where DDL is not transactional (MySQL
    commits each CREATE at once) the objects it had created are removed again.
    """
    names.check_channel_name(channel)
    names.check_identifier(table, "table")
    module = engine_module(engine)
    with engine.connect() as conn:
        before = _InstallState.read(conn, module, channel, table, schema)
    try:
        return _install(engine, module, channel, table, schema)
    except BaseException:
        before.restore(engine, module)
        raise


@dataclass(frozen=True)
class _InstallState:
    """What an install may create or change, as it was before the install started."""

    channel: str
    table: SourceTable
    registry_schema: str | None
    registry_existed: bool
    registry_row: dict | None
    change_table: str
    change_table_existed: bool
    capture_objects: frozenset[str]

    @classmethod
    def read(cls, conn: Connection, module: EngineModule, channel: str, table: str, schema: str | None):
        where = registry_schema(conn, module)
        source = SourceTable(table, _table_schema(where, schema), ())
        inspector = sa.inspect(conn)
        registry = registry_table(where)
        registry_existed = inspector.has_table(registry.name, schema=where)
        row = None
        if registry_existed:
            row = conn.execute(sa.select(registry).where(registry.c.channel == channel)).mappings().first()
        change = names.change_table_name(channel, module.max_identifier_length)
        objects = module.capture_objects(conn, source) if inspector.has_table(table, schema=schema) else set()
        conn.rollback()
        return cls(channel, source, where, registry_existed, dict(row) if row else None, change,
                   inspector.has_table(change, schema=where), frozenset(objects))

    def restore(self, engine: Engine, module: EngineModule) -> None:
        """Undo what a failed install left behind (nothing, where its transaction rolled back)."""
        try:
            with engine.begin() as conn:
                inspector = sa.inspect(conn)
                registry = registry_table(self.registry_schema)
                if inspector.has_table(self.table.name, schema=self.table.schema):
                    for base in module.capture_objects(conn, self.table) - self.capture_objects:
                        module.execute_ddl(conn, module.drop_capture_ddl(self.table, base))
                if not self.change_table_existed:
                    sa.Table(self.change_table, sa.MetaData(), schema=self.registry_schema).drop(conn, checkfirst=True)
                if inspector.has_table(registry.name, schema=self.registry_schema):
                    row = conn.execute(sa.select(registry).where(registry.c.channel == self.channel)).mappings().first()
                    if (dict(row) if row else None) != self.registry_row:
                        conn.execute(registry.delete().where(registry.c.channel == self.channel))
                        if self.registry_row is not None:
                            conn.execute(registry.insert().values(**self.registry_row))
                    empty = conn.execute(sa.select(sa.func.count()).select_from(registry)).scalar() == 0
                    if not self.registry_existed and empty:
                        registry.drop(conn)
        except Exception:  # the install's own error is the one to report
            log.exception("channel %r: could not remove what the failed install created", self.channel)


def _table_schema(where: str | None, schema: str | None) -> str | None:
    """A table named without a schema is in the registry's, the default one (None where tables have none)."""
    return schema if schema is not None else where


def _install(engine: Engine, module: EngineModule, channel: str, table: str, schema: str | None) -> Channel:
    with engine.begin() as conn:
        source = introspect_table(conn, module, table, schema)
        keys = primary_key(source)
        where = registry_schema(conn, module)
        table_schema = _table_schema(where, schema)
        registry = registry_table(where)
        registry.create(conn, checkfirst=True)
        existing = conn.execute(sa.select(registry).where(registry.c.channel == channel)).first()
        if existing is not None:
            found = row_to_channel(existing, where)
            if (found.table.name, found.table.schema) != (table, table_schema):
                raise ConfigurationError(
                    f"channel {channel!r} already watches table {str(found.table)!r}, not "
                    f"{describe(table, table_schema)!r}: uninstall it first or choose another channel name"
                )
            if found.format_version > FORMAT_VERSION:
                raise ConfigurationError(
                    f"channel {channel!r} was installed by a newer airflow-provider-pdr "
                    f"(format {found.format_version} > {FORMAT_VERSION}); upgrade the package"
                )
        info = Channel(
            name=channel,
            table=SourceTable(table, table_schema, keys),
            change_table=names.change_table_name(channel, module.max_identifier_length),
            schema=where,
            columns={c.name: str(c.type.compile(dialect=conn.dialect)) for c in source.columns},
            format_version=FORMAT_VERSION,
        )
        changes = change_table(module, info, [source.c[k].type for k in keys])
        if existing is not None and existing.key_columns != json.dumps(list(keys)):
            changes.drop(conn, checkfirst=True)  # the key changed: old change rows no longer join
        changes.create(conn, checkfirst=True)
        values = {
            "source_schema": table_schema, "source_table": table, "change_table": info.change_table,
            "key_columns": json.dumps(list(keys)), "source_columns": json.dumps(info.columns),
            "format_version": FORMAT_VERSION,
        }
        if existing is None:
            conn.execute(registry.insert().values(channel=channel, **values))
        else:
            conn.execute(registry.update().where(registry.c.channel == channel).values(**values))
        sync_triggers(conn, module, info.table, [c.target() for c in channels_on(conn, registry, info.table)])
    return info


def uninstall_channel(engine: Engine, channel: str) -> bool:
    """Remove the channel, its change table and (if it was the last) the triggers. False if absent."""
    names.check_channel_name(channel)
    module = engine_module(engine)
    with engine.begin() as conn:
        try:
            info = load_channel(conn, module, channel)
        except ChannelNotFoundError:
            return False
        registry = registry_table(info.schema)
        conn.execute(registry.delete().where(registry.c.channel == channel))
        remaining = [c.target() for c in channels_on(conn, registry, info.table)]
        if sa.inspect(conn).has_table(info.table.name, schema=info.table.schema):
            sync_triggers(conn, module, info.table, remaining)
        sa.Table(info.change_table, sa.MetaData(), schema=info.schema).drop(conn, checkfirst=True)
        forget(conn, info.schema, channel)
        if conn.execute(sa.select(sa.func.count()).select_from(registry)).scalar() == 0:
            registry.drop(conn)
    return True


def pending_changes(engine: Engine, channel: str) -> Pending:
    """How many changes wait in the channel, and how old the oldest is (seconds)."""
    module = engine_module(engine)
    with engine.connect() as conn:
        info = load_channel(conn, module, channel)
        return count_pending(conn, module, info)


def capture_base_name(module: EngineModule, table: SourceTable, targets: list[CaptureTarget]) -> str:
    """The base name of the triggers that capture `table` into exactly `targets`: a hash of their DDL,
    so that changed triggers get a new name and replace the old ones."""
    template = "\n".join(module.capture_ddl(table, targets, "pdr_base"))
    return names.trigger_base_name(table.schema, table.name, template)


def install_ddl(engine: Engine, channel: str, table: str, schema: str | None = None) -> list[str]:
    """The DDL install_channel would run now, run by nothing: for a DBA to review.

    Reads the catalogs only. The registry row install writes is data, not DDL, and is left out.
    """
    names.check_channel_name(channel)
    names.check_identifier(table, "table")
    module = engine_module(engine)
    with engine.connect() as conn:
        source = introspect_table(conn, module, table, schema)
        keys = primary_key(source)
        where = registry_schema(conn, module)
        registry = registry_table(where)
        has_table = functools.partial(sa.inspect(conn).has_table, schema=where)
        watched = SourceTable(table, _table_schema(where, schema), keys)
        registered = has_table(registry.name)
        found = conn.execute(sa.select(registry).where(registry.c.channel == channel)).first() if registered else None
        if found is not None and (found.source_table, found.source_schema) != (table, watched.schema):
            raise ConfigurationError(
                f"channel {channel!r} already watches table {describe(found.source_table, found.source_schema)!r}, "
                f"not {describe(table, watched.schema)!r}: uninstall it first or choose another channel name"
            )
        others = channels_on(conn, registry, watched) if registered else []
        info = Channel(channel, watched, names.change_table_name(channel, module.max_identifier_length), where, {},
                       FORMAT_VERSION)
        changes = change_table(module, info, [source.c[k].type for k in keys])
        statements = [] if registered else [sa.schema.CreateTable(registry)]
        if any(c.name == channel and c.table.key_columns != keys for c in others):
            statements.append(sa.schema.DropTable(changes))  # the key changed: old change rows no longer join
            statements.append(sa.schema.CreateTable(changes))
        elif not has_table(changes.name):
            statements.append(sa.schema.CreateTable(changes))
        ddl = [str(statement.compile(dialect=conn.dialect)).strip() for statement in statements]
        targets = sorted([c for c in others if c.name != channel] + [info], key=lambda c: c.name)
        wanted = capture_base_name(module, watched, [c.target() for c in targets])
        installed = module.capture_objects(conn, watched)
        if wanted not in installed:
            ddl += module.capture_ddl(watched, [c.target() for c in targets], wanted)
        for base in sorted(installed - {wanted}):
            ddl += module.drop_capture_ddl(watched, base)
        conn.rollback()
    return ddl

