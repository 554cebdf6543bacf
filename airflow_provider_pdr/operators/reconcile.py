"""ReconcileOperator: prove a mirror equals its source, and repair it when asked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_pdr.core import PdrError, ReflectionSpec, reconcile, transform
from airflow_provider_pdr.core.schema import describe
from airflow_provider_pdr.hooks import PdrHook
from airflow_provider_pdr.operators.reflect import seconds


class DifferenceFound(PdrError):
    """The mirror differs from the source (raised only with ``fail_on_difference``)."""


class ReconcileOperator(BaseOperator):
    """Compare `destination_table` with the channel's source table chunk by chunk.

    Counts rows missing from the mirror, rows whose values differ, and rows the source no
    longer has; keys with a pending change are counted apart (the next reflect applies them).
    With ``repair=True`` it also writes the differences. It holds the channel's lock, so it
    never races a reflect. XCom: checked, missing, different, extra, differing, pending,
    repaired, samples (a few differing keys).

    :param source_conn_id: Airflow connection of the source database (templated).
    :param channel: the channel whose source table the mirror reflects (templated).
    :param destination_conn_id: Airflow connection of the destination database (templated).
    :param destination_table: the mirror table to check (templated).
    :param destination_schema: schema or database of the mirror table; None means the
        connection's default (templated).
    :param mapping: the reflection's mapping, as given to :class:`ReflectOperator`, so that the
        same fields are compared.
    :param deletes: False when the reflection keeps deleted rows (default True): rows the source
        no longer has are then not counted as differences.
    :param repair: write the source's rows where the mirror differs and delete the extra ones
        (default False).
    :param fail_on_difference: fail the task when something differs and ``repair`` is False
        (default False).
    :param chunk_size: rows compared per chunk, each under the channel's lock (default 5000).
    :param lock_timeout: seconds (or a timedelta) to wait for the channel's lock (default 60).
    """

    template_fields: Sequence[str] = (
        "source_conn_id", "channel", "destination_conn_id", "destination_table", "destination_schema",
    )
    ui_color = "#e8f3dc"

    def __init__(self, *, source_conn_id: str, channel: str, destination_conn_id: str, destination_table: str,
                 destination_schema: str | None = None, mapping: transform.ColumnMapping | dict | None = None,
                 deletes: bool = True, repair: bool = False, fail_on_difference: bool = False, chunk_size: int = 5000,
                 lock_timeout: float | timedelta = 60, **kwargs):
        super().__init__(**kwargs)
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
        self.source_conn_id = source_conn_id
        self.channel = channel
        self.destination_conn_id = destination_conn_id
        self.destination_table = destination_table
        self.destination_schema = destination_schema
        self.mapping = mapping if isinstance(mapping, transform.ColumnMapping) else transform.ColumnMapping.from_dict(
            mapping, f"task {kwargs.get('task_id')!r}: mapping")
        self.deletes = deletes  # False: rows the source no longer has are meant to stay, not differences
        self.repair = repair
        self.fail_on_difference = fail_on_difference
        self.chunk_size = int(chunk_size)
        self.lock_timeout = seconds(lock_timeout)

    def execute(self, context: Any) -> dict:
        target = describe(self.destination_table, self.destination_schema)
        with PdrHook(self.source_conn_id) as source, PdrHook(self.destination_conn_id) as destination:
            spec = ReflectionSpec(self.channel, self.destination_table, self.destination_schema, mapping=self.mapping,
                                  deletes=self.deletes, lock_timeout=self.lock_timeout)
            result = reconcile(source.engine, destination.engine, spec, repair=self.repair, chunk_size=self.chunk_size)
        self.log.info(
            "channel %r -> %r: %d rows checked, %d differ (%d missing, %d different, %d extra), %d pending%s",
            self.channel, target, result.checked, result.differing, result.missing, result.different, result.extra,
            result.pending, f", {result.repaired} repaired" if self.repair else "",
        )
        if result.samples:
            self.log.info("differing keys (first %d): %s", len(result.samples), "; ".join(result.samples))
        if result.differing and self.fail_on_difference and not self.repair:
            raise DifferenceFound(
                f"channel {self.channel!r}: {result.differing} rows of {target!r} differ from the source "
                f"(e.g. {'; '.join(result.samples[:3])}); run with repair=True or a full refresh"
            )
        return result.as_dict()
