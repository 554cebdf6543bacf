"""The trigger behind a deferred PendingChangesSensor: waits in the triggerer, never blocking it.

Database calls run in worker threads (`asyncio.to_thread`). Where the engine can notify
(PostgreSQL's pg_notify from the capture trigger), the trigger LISTENs and wakes within a
moment of a change; everywhere, it also polls every `poll_interval` seconds, so a lost
notification or a dropped LISTEN connection only costs latency. Its deadline is an absolute
time, so it survives serialization and a triggerer restart unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_pdr.core import Pending, PdrError, pending_changes
from airflow_provider_pdr.core.channel import load_channel
from airflow_provider_pdr.hooks import PdrHook

# Errors that may heal on their own (server restarting, network blip): keep waiting.
TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError)


def is_ready(pending: Pending, min_changes: int, max_wait: float | None) -> bool:
    """Enough changes are pending, or the oldest has waited longer than `max_wait` seconds."""
    if pending.count >= min_changes:
        return True
    return bool(pending.count) and max_wait is not None and (pending.oldest_age_seconds or 0.0) >= max_wait


class PendingChangesTrigger(BaseTrigger):
    """Fires when channel `channel` in the source `conn_id` has enough pending changes.

    Events: ``{"status": "success", "pending": n, "oldest_age_seconds": s}``, or
    ``{"status": "timeout" | "error", "message": ...}`` — never success without the changes.
    """

    def __init__(self, conn_id: str, channel: str, min_changes: int = 1, max_wait: float | None = None,
                 poll_interval: float = 30.0, deadline: float | None = None):
        super().__init__()
        self.conn_id = conn_id
        self.channel = channel
        self.min_changes = int(min_changes)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.poll_interval = float(poll_interval)
        self.deadline = None if deadline is None else float(deadline)  # epoch seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id, "channel": self.channel, "min_changes": self.min_changes,
                "max_wait": self.max_wait, "poll_interval": self.poll_interval, "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = PdrHook(self.conn_id)
        try:
            yield TriggerEvent(await self.watch(hook))
        finally:
            await asyncio.to_thread(hook.dispose)

    async def watch(self, hook: PdrHook) -> dict:
        where = f"channel {self.channel!r} in connection {self.conn_id!r}"
        last_error: str | None = None
        try:  # the connection lookup and engine creation may block too
            await asyncio.to_thread(lambda: hook.module)
        except Exception as error:
            return {"status": "error", "message": f"{where}: cannot use the connection: {error}"}
        async with contextlib.AsyncExitStack() as listening:
            notifications, can_listen = None, True
            while True:
                if can_listen and notifications is None:
                    try:
                        notifications = await self.listen(hook, listening)
                        can_listen = notifications is not None
                    except Exception as error:
                        self.log.warning("%s: cannot listen for notifications, polling: %s", where, error)
                pending = None
                try:
                    pending = await asyncio.to_thread(pending_changes, hook.engine, self.channel)
                    last_error = None
                except TRANSIENT as error:
                    last_error = f"{type(error).__name__}: {getattr(error, 'orig', None) or error}".strip()
                    self.log.warning("%s: source unreachable, retrying in %gs: %s", where, self.poll_interval,
                                     last_error)
                except PdrError as error:
                    return {"status": "error", "message": f"{where}: {error}"}
                if pending is not None and is_ready(pending, self.min_changes, self.max_wait):
                    self.log.info("%s: %d changes pending (oldest %.1fs old)", where, pending.count,
                                  pending.oldest_age_seconds or 0.0)
                    return {"status": "success", "pending": pending.count,
                            "oldest_age_seconds": pending.oldest_age_seconds}
                remaining = None if self.deadline is None else self.deadline - time.time()
                if remaining is not None and remaining <= 0:
                    reason = f"the source stayed unreachable, last error: {last_error}" if last_error else (
                        f"{pending.count} of {self.min_changes} changes pending")
                    return {"status": "timeout", "message": f"{where}: timed out waiting for changes; {reason}"}
                delay = self.poll_interval
                if pending is not None and pending.count and self.max_wait is not None:
                    delay = min(delay, self.max_wait - (pending.oldest_age_seconds or 0.0))
                if remaining is not None:
                    delay = min(delay, remaining)
                delay = max(delay, 0.05)
                if notifications is None:
                    await asyncio.sleep(delay)
                    continue
                try:
                    await notifications.wait(delay)
                except Exception as error:  # the LISTEN connection dropped: poll, listen again next round
                    self.log.warning("%s: stopped listening for notifications (%s); polling", where, error)
                    await listening.aclose()
                    notifications = None

    async def listen(self, hook: PdrHook, stack: contextlib.AsyncExitStack):
        """Start LISTENing where the engine can notify; None (poll only) elsewhere."""
        def channel_target():
            with hook.engine.connect() as conn:
                return load_channel(conn, hook.module, self.channel).target()

        target = await asyncio.to_thread(channel_target)
        listener = hook.module.listener(hook.engine, target)
        if listener is None:
            return None
        return await stack.enter_async_context(listener)
