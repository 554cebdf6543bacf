"""Operators that install and remove a channel (change table plus capture triggers) in a source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pdr.core import install_channel, uninstall_channel
from airflow_provider_pdr.hooks import PdrHook


class InstallTriggersOperator(BaseOperator):
    """Install or upgrade `channel` on `source_table`; running it again changes nothing.

    From then on every insert, update, delete (and TRUNCATE on PostgreSQL) of the table is
    recorded in the channel, whether Airflow runs or not. Rows the table already holds are not
    copied by this: see ``initial_load`` of :class:`ReflectOperator`.

    XCom: ``{"channel", "source_table", "change_table", "key_columns", "format_version"}``.

    :param source_conn_id: Airflow connection of the source database (templated).
    :param source_table: the table whose changes are captured; it needs a primary key (templated).
    :param channel: name of the channel: 1 to 63 letters, digits, ``_`` or ``-``, starting with a
        letter or digit; unique per source database, one per consumer (templated).
    :param source_schema: schema (PostgreSQL, SQL Server) or database (MySQL/MariaDB) of the
        source table; None means the connection's default (templated).
    """

    template_fields: Sequence[str] = ("source_conn_id", "source_table", "channel", "source_schema")
    ui_color = "#fdf1d6"

    def __init__(self, *, source_conn_id: str, source_table: str, channel: str,
                 source_schema: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.source_table = source_table
        self.channel = channel
        self.source_schema = source_schema

    def execute(self, context: Any) -> dict:
        with PdrHook(self.source_conn_id) as hook:
            info = install_channel(hook.engine, self.channel, self.source_table, self.source_schema)
            self.log.info("channel %r installed on table %r in %s: changes go to %r, key %s", info.name,
                          str(info.table), hook.describe(), info.change_table, list(info.table.key_columns))
        return {
            "channel": info.name, "source_table": str(info.table), "change_table": info.change_table,
            "key_columns": list(info.table.key_columns), "format_version": info.format_version,
        }


class UninstallTriggersOperator(BaseOperator):
    """Remove `channel`, its change table and, with the table's last channel, its triggers.

    Pending changes of the channel are dropped. Removing the last channel leaves the source
    table exactly as it was before the first install. XCom: ``{"channel", "removed"}``
    (removed is False when the channel was not installed).

    :param source_conn_id: Airflow connection of the source database (templated).
    :param channel: name of the channel to remove (templated).
    """

    template_fields: Sequence[str] = ("source_conn_id", "channel")
    ui_color = "#fdf1d6"

    def __init__(self, *, source_conn_id: str, channel: str, **kwargs):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.channel = channel

    def execute(self, context: Any) -> dict:
        with PdrHook(self.source_conn_id) as hook:
            removed = uninstall_channel(hook.engine, self.channel)
            if removed:
                self.log.info("channel %r removed from %s", self.channel, hook.describe())
            else:
                self.log.info("channel %r was not installed in %s: nothing to do", self.channel, hook.describe())
        return {"channel": self.channel, "removed": removed}
