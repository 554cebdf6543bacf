"""PendingChangesSensor: wait until a channel has changes worth a reflect run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.bases.sensor import PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from airflow_provider_pdr.core import pending_changes
from airflow_provider_pdr.hooks import PdrHook
from airflow_provider_pdr.params import full_refresh_requested
from airflow_provider_pdr.triggers.pending import PendingChangesTrigger, is_ready

# How long after its own deadline the trigger may run before Airflow's timeout takes over.
DEFER_MARGIN = timedelta(minutes=1)


class PendingChangesSensor(BaseSensorOperator):
    """Succeeds when `min_changes` changes are pending in `channel`, or the oldest pending change
    is older than `max_wait` (seconds or timedelta). Its XCom is the pending count.

    With ``deferrable=True`` (default: Airflow's ``operators.default_deferrable``) it checks once,
    then waits in the triggerer without holding a worker slot; on PostgreSQL and Firebird it wakes
    on the capture trigger's notification, and everywhere it checks every `poke_interval`. At
    ``timeout`` it fails with ``AirflowSensorTimeout`` naming the last error (or skips, with
    ``soft_fail=True``); it never succeeds without the changes. A run that asks for a full refresh
    does not wait.

    :param source_conn_id: Airflow connection of the source database (templated).
    :param channel: the channel to watch (templated).
    :param min_changes: succeed once this many changes are pending, at least 1 (default 1).
    :param max_wait: or once the oldest pending change is this old, in seconds or a timedelta
        (default None: only ``min_changes`` counts).
    :param deferrable: wait in the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param poke_interval: seconds (or a timedelta) between two checks (default 30).

    Other arguments (``timeout``, ``soft_fail``, ``mode``, ...) are those of Airflow's
    ``BaseSensorOperator``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "channel")
    ui_color = "#e8f4e4"

    def __init__(self, *, source_conn_id: str, channel: str, min_changes: int = 1,
                 max_wait: float | timedelta | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 poke_interval: float | timedelta = 30, **kwargs):
        # BaseSensorOperator's own max_wait caps the poke interval under exponential backoff,
        # which agrees with ours: never check less often than the oldest change may wait.
        super().__init__(max_wait=max_wait, poke_interval=poke_interval, **kwargs)
        if int(min_changes) < 1:
            raise ValueError(f"min_changes must be at least 1, got {min_changes!r}")
        self.source_conn_id = source_conn_id
        self.channel = channel
        self.min_changes = int(min_changes)
        self.deferrable = deferrable

    @property
    def max_wait_seconds(self) -> float | None:
        return None if self.max_wait is None else self.max_wait.total_seconds()

    def where(self) -> str:
        """The channel and its connection id, for log lines (never the connection's URI)."""
        return f"channel {self.channel!r} in connection {self.source_conn_id!r}"

    def poke(self, context: Any) -> PokeReturnValue:
        with PdrHook(self.source_conn_id) as hook:
            pending = pending_changes(hook.engine, self.channel)
        self.log.info("%s: %d changes pending (oldest %.1fs old), waiting for %d", self.where(), pending.count,
                      pending.oldest_age_seconds or 0.0, self.min_changes)
        return PokeReturnValue(is_ready(pending, self.min_changes, self.max_wait_seconds), pending.count)

    def execute(self, context: Any) -> Any:
        if full_refresh_requested(context):  # a resync copies everything: nothing to wait for
            self.log.info("%s: full refresh requested, not waiting for changes", self.where())
            return 0
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        timeout = float(self.timeout) if self.timeout is not None else None
        self.log.info("%s: deferring to the triggerer, whose log says what it waits for and what wakes it",
                      self.where())
        self.defer(
            trigger=PendingChangesTrigger(
                conn_id=self.source_conn_id, channel=self.channel, min_changes=self.min_changes,
                max_wait=self.max_wait_seconds, poll_interval=float(self.poke_interval),
                deadline=None if timeout is None else time.time() + timeout,
            ),
            method_name="execute_complete",
            timeout=None if timeout is None else timedelta(seconds=timeout) + DEFER_MARGIN,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> int:
        status = event.get("status")
        if status == "success":
            self.log.info("%s: %d changes pending, done waiting", self.where(), event["pending"])
            return event["pending"]
        if status == "timeout":
            raise AirflowSensorTimeout(event["message"])  # soft_fail turns it into a skip
        raise AirflowException(event.get("message") or f"unexpected trigger event {event!r}")
