"""ReflectOperator: apply a channel's pending changes to the destination table."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, BaseOperator

from airflow_provider_pdr.assets import table_asset
from airflow_provider_pdr.core import ConfigurationError, ReflectResult, ReflectionSpec, reflect, snapshot, transform
from airflow_provider_pdr.core.registry import load_channel
from airflow_provider_pdr.core.schema import describe
from airflow_provider_pdr.hooks import PdrHook
from airflow_provider_pdr.params import full_refresh_requested


def seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def templated(*values: str | None) -> bool:
    return any(value and "{{" in value for value in values)


class ReflectOperator(BaseOperator):
    """Drain `channel` from the source into `destination_table`, batch by batch.

    It keeps draining while changes keep arriving, up to `time_budget` (a busy table does not
    pay a task start-up per batch); what is left waits for the next run. Each batch is one
    destination transaction of at most `batch_size` rows; change rows are acknowledged in the
    source only after the batches that apply them committed.

    The destination table is the task's Asset outlet (``pdr://<destination_conn_id>/[<schema>/]<table>``,
    see :func:`airflow_provider_pdr.assets.table_asset`) unless the names are templated or
    ``outlets`` is given. XCom: upserted, deleted, batches, changes, copied, drained, lag_seconds,
    seconds, reading_seconds, writing_seconds.

    `mapping` reshapes rows (fields, key, filter, on_delete, evolve, custom statements: the
    core's ``ColumnMapping`` or the same keys as a dict). With `initial_load`, rows the source table
    had before its channel are copied once, first. A manual run with ``full_refresh`` true (task
    argument, DAG param or run conf) resyncs: copies every row again and removes destination rows
    the source no longer has (XCom: removed).

    :param source_conn_id: Airflow connection of the source database (templated).
    :param channel: the channel to drain, installed by :class:`InstallTriggersOperator` (templated).
    :param destination_conn_id: Airflow connection of the destination database (templated).
    :param destination_table: the mirror table (templated).
    :param source_table: when given, checked against the table the channel watches, so a wrong
        channel name fails before anything is written (templated).
    :param destination_schema: schema (PostgreSQL, SQL Server) or database (MySQL/MariaDB) of the
        mirror table; None means the connection's default (templated).
    :param batch_size: rows per destination transaction, at least 1 (default 5000); a span reads
        up to four times as many change rows.
    :param create_table: create the mirror table from the source's columns if it does not exist
        (default False).
    :param deletes: mirror deletes (default True); with False, rows deleted in the source stay in
        the mirror.
    :param time_budget: seconds (or a timedelta) the task keeps draining while changes keep
        arriving (default 300); the rest waits for the next run.
    :param lock_timeout: seconds (or a timedelta) to wait for the channel's lock held by another
        run (default 60); then the task fails without writing anything, and a retry is safe.
    :param mapping: how rows are reshaped: fields, key, filter, on_delete, evolve, custom
        statements; a mapping object of the core or the same keys as a dict, as the YAML
        ``mapping`` key takes them. None mirrors every column under its own name.
    :param initial_load: copy the rows the source table had before its channel, once, before
        the first drain (default False; the DAG factory's default is True).
    :param full_refresh: resync on every run: copy every row again and remove what the source
        no longer has (default False). A single run asks for it with the DAG param or run conf
        ``full_refresh``.
    """

    template_fields: Sequence[str] = (
        "source_conn_id", "channel", "destination_conn_id", "destination_table", "source_table",
        "destination_schema",
    )
    ui_color = "#dcebf7"

    def __init__(self, *, source_conn_id: str, channel: str, destination_conn_id: str, destination_table: str,
                 source_table: str | None = None, destination_schema: str | None = None, batch_size: int = 5000,
                 create_table: bool = False, deletes: bool = True, time_budget: float | timedelta = 300,
                 lock_timeout: float | timedelta = 60, mapping: transform.ColumnMapping | dict | None = None,
                 initial_load: bool = False, full_refresh: bool = False, **kwargs):
        if "outlets" not in kwargs and not templated(destination_conn_id, destination_table, destination_schema):
            kwargs["outlets"] = [table_asset(destination_conn_id, destination_table, destination_schema)]
        super().__init__(**kwargs)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.source_conn_id = source_conn_id
        self.channel = channel
        self.destination_conn_id = destination_conn_id
        self.destination_table = destination_table
        self.source_table = source_table
        self.destination_schema = destination_schema
        self.batch_size = int(batch_size)
        self.create_table = create_table
        self.deletes = deletes
        self.time_budget = seconds(time_budget)
        self.lock_timeout = seconds(lock_timeout)
        self.mapping = mapping if isinstance(mapping, transform.ColumnMapping) else transform.ColumnMapping.from_dict(
            mapping, f"task {kwargs.get('task_id')!r}: mapping")
        self.initial_load = initial_load
        self.full_refresh = full_refresh

    def execute(self, context: Any) -> dict:
        target = describe(self.destination_table, self.destination_schema)
        with PdrHook(self.source_conn_id) as source, PdrHook(self.destination_conn_id) as destination:
            self.check_source_table(source)
            started = time.monotonic()
            resynced = self.resync(source, destination) if self.wants_full_refresh(context) else None
            total = self.drain(source, destination, self.time_budget - (time.monotonic() - started))
            if resynced is not None:
                total.copied += resynced.copied
                total.add_sides(resynced)
            total.seconds = time.monotonic() - started
            removed = "" if resynced is None else f", removed {resynced.removed}"
            self.log.info(  # the run's one summary: the counts exactly as the XCom has them
                "channel %r -> %r in %s: %s%s, %s%s", self.channel, target, destination.describe(),
                total.counts(), removed, total.timing(), self.unfinished(total, resynced),
            )
        summary = total.as_dict()
        for field in ("lag_seconds", "seconds", "reading_seconds", "writing_seconds"):
            summary[field] = round(summary[field], 3)
        if resynced is not None:
            summary["removed"] = resynced.removed
        self.annotate_assets(context, summary)
        return summary

    def wants_full_refresh(self, context: Any) -> bool:
        return self.full_refresh or full_refresh_requested(context)

    def resync(self, source: PdrHook, destination: PdrHook):
        """Copy every row again and remove what the source no longer has; a paused resync resumes
        on the next run before anything else."""
        spec = ReflectionSpec(self.channel, self.destination_table, self.destination_schema, mapping=self.mapping,
                              deletes=self.deletes, create_table=self.create_table, lock_timeout=self.lock_timeout)
        result = snapshot(source.engine, destination.engine, spec, resync=True, restart=True,
                          chunk_size=self.batch_size, time_budget=self.time_budget)
        return result

    @staticmethod
    def unfinished(total: ReflectResult, resynced) -> str:
        """What the run left for the next one, for the summary line."""
        if resynced is not None and not resynced.done:
            return " (the full refresh was paused by the time budget: it resumes on the next run)"
        return "" if total.drained else " (time budget used up: the rest waits for the next run)"

    def drain(self, source: PdrHook, destination: PdrHook, budget: float | None = None) -> ReflectResult:
        """Reflect until the channel stays empty or the time budget is spent."""
        deadline = time.monotonic() + (self.time_budget if budget is None else max(budget, 0.0))
        total = ReflectResult()
        while True:
            spec = ReflectionSpec(self.channel, self.destination_table, self.destination_schema, mapping=self.mapping,
                                  deletes=self.deletes, create_table=self.create_table, lock_timeout=self.lock_timeout)
            result = reflect(source.engine, destination.engine, spec, batch_size=self.batch_size,
                             time_budget=max(deadline - time.monotonic(), 0.0), initial_load=self.initial_load)
            for field in ("upserted", "deleted", "batches", "changes", "copied"):
                setattr(total, field, getattr(total, field) + getattr(result, field))
            total.add_sides(result)
            total.drained, total.lag_seconds = result.drained, result.lag_seconds
            # Changes committed after the last empty read: take them too while time remains.
            if result.drained or time.monotonic() >= deadline:
                return total

    def check_source_table(self, source: PdrHook) -> None:
        if not self.source_table:
            return
        with source.engine.connect() as conn:
            watched = load_channel(conn, source.module, self.channel).table
        if watched.name != self.source_table:
            raise ConfigurationError(
                f"channel {self.channel!r} watches table {str(watched)!r}, not {self.source_table!r}: "
                "fix source_table or the channel name"
            )

    def annotate_assets(self, context: Any, summary: dict) -> None:
        """Attach the summary to the asset events, so consumers can see what changed."""
        events = context.get("outlet_events") if isinstance(context, Mapping) else None
        if events is None:  # execute() called outside a task run
            return
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                events[outlet].extra.update(summary)
