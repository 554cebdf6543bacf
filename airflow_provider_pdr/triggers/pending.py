"""The trigger behind a deferred PendingChangesSensor: waits in the triggerer, never blocking it.

Database calls run in the trigger's own worker threads, bounded by the deadline: a source
that hangs (a host that drops packets) ties up those threads, never the event loop or the
executor other triggers share, and the trigger still reports its timeout on time. Where the engine can notify
(PostgreSQL's pg_notify from the capture trigger), the trigger LISTENs and wakes within a
moment of a change; everywhere, it also polls every `poll_interval` seconds, so a lost
notification or a dropped LISTEN connection only costs latency. Its deadline is an absolute
time, so it survives serialization and a triggerer restart unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_pdr.core import PdrError, Pending, pending_changes
from airflow_provider_pdr.core.registry import load_channel
from airflow_provider_pdr.hooks import PdrHook

# Errors that may heal on their own (server restarting, network blip): keep waiting.
TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, TimeoutError)

# Shortest time between two counts when notifications keep waking the trigger.
RECHECK = 0.5

THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="pdr-trigger")


async def in_thread(function, *args, timeout: float | None = None):
    """Run a blocking call in our threads; TimeoutError if it does not answer within `timeout`."""
    call = functools.partial(contextvars.copy_context().run, function, *args)
    future = asyncio.get_running_loop().run_in_executor(THREADS, call)
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer from the source within {timeout:.0f}s") from None


def is_ready(pending: Pending, min_changes: int, max_wait: float | None) -> bool:
    """Enough changes are pending, or the oldest has waited longer than `max_wait` seconds."""
    if pending.count >= min_changes:
        return True
    return bool(pending.count) and max_wait is not None and (pending.oldest_age_seconds or 0.0) >= max_wait


class PendingChangesTrigger(BaseTrigger):
    """Fires when channel `channel` in the source `conn_id` has enough pending changes.

    Events: ``{"status": "success", "pending": n, "oldest_age_seconds": s}``, or
    ``{"status": "timeout" | "error", "message": ...}`` — never success without the changes.
    :class:`~airflow_provider_pdr.sensors.PendingChangesSensor` defers to it; it is rarely
    created by hand.

    :param conn_id: Airflow connection of the source database.
    :param channel: the channel to watch.
    :param min_changes: fire once this many changes are pending (default 1).
    :param max_wait: or once the oldest pending change is this many seconds old (default None).
    :param poll_interval: seconds between two counts (default 30); a notification wakes it sooner.
    :param deadline: when to give up, as epoch seconds (an absolute time, so that it survives a
        triggerer restart); None waits for ever.
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
            await in_thread(hook.dispose, timeout=10)

    async def watch(self, hook: PdrHook) -> dict:
        where = f"channel {self.channel!r} in connection {self.conn_id!r}"
        try:  # the connection lookup and engine creation may block too
            await in_thread(lambda: hook.module, timeout=self.time_left())
        except Exception as error:
            return {"status": "error", "message": f"{where}: cannot use the connection: {error}"}
        last_error: str | None = None
        async with Wakeup(hook, self.channel, where, self.log, self.time_left) as wakeup:
            await wakeup.listen()  # before counting, so no change slips in between
            self.log.info("%s: waiting for %s; %s", where, self.awaited(), wakeup.how(self.poll_interval))
            while True:
                pending = None
                try:
                    pending = await in_thread(pending_changes, hook.engine, self.channel, timeout=self.time_left())
                    last_error = None
                except TRANSIENT as error:
                    message = f"{type(error).__name__}: {getattr(error, 'orig', None) or error}".strip()
                    if message != last_error:  # once per distinct error, not once per poll
                        self.log.warning("%s: source unreachable, retrying every %gs until the deadline: %s",
                                         where, self.poll_interval, message)
                    last_error = message
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
                await wakeup.wait(self.next_delay(pending, remaining))
                await wakeup.listen()  # again where it failed or dropped, before the next count

    def awaited(self) -> str:
        """What fires the trigger, and until when, for its first log line."""
        wanted = f"{self.min_changes} pending change{'s' if self.min_changes != 1 else ''}"
        if self.max_wait is not None:
            wanted += f", or any change once the oldest is {self.max_wait:g}s old"
        if self.deadline is None:
            return f"{wanted}, without a deadline"
        ends = datetime.datetime.fromtimestamp(self.deadline, datetime.timezone.utc)
        return f"{wanted}, until {ends:%Y-%m-%d %H:%M:%S} UTC"

    def time_left(self) -> float | None:
        """How long a database call may take: until the deadline (at least a second), or unbounded."""
        return None if self.deadline is None else max(self.deadline - time.time(), 1.0)

    def next_delay(self, pending: Pending | None, remaining: float | None) -> float:
        """Poll interval, shortened to when the oldest change reaches max_wait or the deadline comes."""
        delay = self.poll_interval
        if pending is not None and pending.count and self.max_wait is not None:
            delay = min(delay, self.max_wait - (pending.oldest_age_seconds or 0.0))
        if remaining is not None:
            delay = min(delay, remaining)
        return max(delay, 0.05)


class Wakeup:
    """Sleeps for a delay, or less where the engine notifies changes (a LISTEN connection).

    A LISTEN that cannot be set up or drops is retried at the next round; meanwhile polling
    alone keeps the trigger correct.
    """

    def __init__(self, hook: PdrHook, channel: str, where: str, log, time_left):
        self.hook, self.channel, self.where, self.log, self.time_left = hook, channel, where, log, time_left
        self.stack = contextlib.AsyncExitStack()
        self.notifications = None
        self.heard: str | None = None
        self.can_listen = True

    async def __aenter__(self) -> Wakeup:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stack.aclose()

    async def listen(self) -> None:
        if self.notifications is not None or not self.can_listen:
            return

        def channel_target():
            with self.hook.engine.connect() as conn:
                return load_channel(conn, self.hook.module, self.channel).target()

        try:
            target = await in_thread(channel_target, timeout=self.time_left())
            listener = self.hook.module.listener(self.hook.engine, target)
            if listener is None:  # this engine only polls
                self.can_listen = False
                return
            self.notifications = await asyncio.wait_for(self.stack.enter_async_context(listener), self.time_left())
            self.heard = target.change_table  # the name PostgreSQL and Firebird notify under
        except Exception as error:
            self.log.debug("%s: cannot listen for notifications yet, polling: %s", self.where, error)

    def how(self, poll_interval: float) -> str:
        """What wakes the trigger, for its first log line."""
        if self.notifications is not None:
            return (f"woken by {self.hook.module.name} notifications on {self.heard!r}, "
                    f"and counting every {poll_interval:g}s in case one is lost")
        if not self.can_listen:
            return f"counting every {poll_interval:g}s ({self.hook.module.name} sends no notifications)"
        return f"counting every {poll_interval:g}s until it can listen for notifications"

    async def wait(self, delay: float) -> None:
        if self.notifications is None:
            await asyncio.sleep(delay)
            return
        started = time.monotonic()
        try:
            woke = await self.notifications.wait(delay)
        except Exception as error:
            self.log.warning("%s: stopped listening for notifications (%s); polling", self.where, error)
            await self.stack.aclose()
            self.stack = contextlib.AsyncExitStack()
            self.notifications = None
            return
        if woke:  # a busy table notifies on every commit: do not count on every one
            await asyncio.sleep(max(0.0, min(RECHECK, delay) - (time.monotonic() - started)))
