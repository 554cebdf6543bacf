"""The drain loop: batches are written in a worker thread while the next is read, and each is
acknowledged once written; or, where the source reaches the destination table, spans are
applied inside the source database (in_database.py)."""

from __future__ import annotations

import gc
import logging
import time
from concurrent.futures import Future
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.drain.assemble import Drain
from airflow_provider_pdr.core.drain.batch import Batch, Span
from airflow_provider_pdr.core.drain.connections import reaching
from airflow_provider_pdr.core.drain.in_database import applying_in_database
from airflow_provider_pdr.core.drain.pace import Deferred, Pace, writing_thread
from airflow_provider_pdr.core.drain.read import WINDOW_BATCHES, Spans, Window
from airflow_provider_pdr.core.drain.results import ReflectResult
from airflow_provider_pdr.core.errors import ApplyError

log = logging.getLogger(__name__)


class PendingWrite(NamedTuple):
    """A batch in the writer: the batch, the one read after it (Batch.without), and its result."""

    batch: Batch
    later: Batch | None
    result: Future | Deferred


class Limits(NamedTuple):
    """A run's limits on destination transactions and time; they stop a drain after a batch,
    never before the first."""

    max_batches: int | None
    deadline: float | None

    def more(self, planned: int) -> bool:
        return planned == 0 or ((self.max_batches is None or planned < self.max_batches)
                                and (self.deadline is None or time.monotonic() < self.deadline))

    def batches_left(self, planned: int) -> int | None:
        """How many batches a span may hold: one, past the deadline."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return 1
        return None if self.max_batches is None else self.max_batches - planned


class Pipeline:
    """Applies batches in a worker thread while the next batch is read, so that the source and the
    destination work at the same time. A batch is acknowledged only after its destination commit,
    and batches are applied in the order they were read, so a later read (a newer state) always
    lands last. The drain ends when a read from the oldest change finds nothing, or at a limit."""

    def __init__(self, drain: Drain, source: Connection, destination: Connection, where: str,
                 result: ReflectResult, pace: Pace):
        self.drain, self.source, self.destination = drain, source, destination
        self.where, self.result, self.pace = where, result, pace

    def run(self, batch_size: int, max_batches: int | None, deadline: float | None) -> None:
        limits, reader = Limits(max_batches, deadline), self.drain.reader
        reading: Spans | Window = (Spans(reader) if self.drain.route.span_queries
                                   else Window(reader, WINDOW_BATCHES * batch_size))
        planned = 0  # destination transactions of the batches read
        plan = self.drain.plan
        with writing_thread(plan.src, plan.dst) as executor:
            in_flight: PendingWrite | None = None
            held: Batch | None = None  # a span read, applied once the next read tells which keys come again
            while True:
                batch = None
                if limits.more(planned):
                    with reaching(self.where, "source"):
                        batch = reading.next(self.source, batch_size, limits.batches_left(planned))
                written = self.await_write(in_flight) if in_flight is not None else None
                in_flight = None
                if held is not None:  # written while the batch that was written is acknowledged
                    in_flight, held = self.start_write(executor, held, batch, batch_size), None
                if written is not None and not self.acknowledge(written):
                    if in_flight is not None:  # written, not acknowledged: read again with the rest
                        self.await_write(in_flight)
                        in_flight = None
                    reading = self.exact_window(batch_size)
                    continue
                if batch is None or not batch.changes:
                    if in_flight is not None:  # it is written before the drain stops or reads from the oldest again
                        written, in_flight = self.await_write(in_flight), None
                        if not self.acknowledge(written):
                            reading = self.exact_window(batch_size)
                            continue
                    if batch is None or reading.fresh:
                        return
                    reading.restart()  # dry: look again from the oldest change
                    continue
                planned += -(-(len(batch.upserts) + len(batch.deletes)) // batch_size)
                if batch.span is not None:
                    held = batch
                else:
                    in_flight = self.start_write(executor, batch, None, batch_size)

    def start_write(self, executor, batch: Batch, later: Batch | None, batch_size: int) -> PendingWrite:
        return PendingWrite(batch, later, executor.submit(self.pace.writer(self.write), batch, later, batch_size))

    def exact_window(self, batch_size: int) -> Window:
        log.info("%s: another transaction committed late, or is still open, inside the span of "
                 "changes just applied; reading the rest of this run's changes one by one", self.where)
        return Window(self.drain.reader, WINDOW_BATCHES * batch_size)  # from the oldest: nothing is in flight

    def write(self, batch: Batch, later: Batch | None, size: int) -> tuple[Batch, int, int]:
        """In the writer: the batch without the keys `later` writes again, applied; returns it, the rows
        removed and the transactions. The cycles of the batches read so far are collected first
        (young_collections_only), here beside the reads rather than between them."""
        gc.collect(1)
        batch = batch.without(later)
        return (batch, *self.drain.writer.apply_batch(self.destination, batch, size))

    def await_write(self, pending: PendingWrite) -> Batch:
        """Wait for the batch's destination commits (Pipeline.write); returns the batch as applied;
        ApplyError, naming the row, if refused."""
        where = self.where
        try:
            with reaching(where, "destination"):
                batch, removed, transactions = self.pace.wait(pending.result)
        except sa.exc.DBAPIError as error:
            batch = pending.batch.without(pending.later)
            with reaching(where, "destination"):
                why = self.drain.writer.refusal(self.destination, batch, error)
            raise ApplyError(
                f"{where}: the destination rejected a batch of {len(batch.upserts)} upserts and "
                f"{len(batch.deletes)} deletes, nothing of it was acknowledged: {why}"
            ) from error
        self.result.deleted += removed
        self.result.upserted += len(batch.upserts)
        self.result.batches += transactions
        return batch

    def acknowledge(self, batch: Batch) -> bool:
        """Acknowledge exactly the change rows of a batch that was written; False if they could not be
        (Acknowledger.acknowledge)."""
        with reaching(self.where, "source"):
            if not self.drain.ack.acknowledge(self.source, batch):
                return False
        self.result.changes += batch.changes
        return True


def drain_in_database(drain: Drain, source: Connection, destination: Engine, where: str, result: ReflectResult,
                      pace: Pace, batch_size: int, limits: Limits) -> bool:
    """Apply spans of `batch_size` changes inside the source database while it can (in_database.py);
    True when that ended the drain (dry, or at a limit), False when the row path takes the rest."""
    if drain.route.span_queries is None:
        return False
    with reaching(where, "source"), applying_in_database(drain.plan, drain.route, source, destination) as applying:
        if applying is None:
            return False
        log.info("%s: applying changes inside the source database, which reaches the destination table", where)
        spans = 0
        while limits.more(spans):
            applied = pace.inline(applying.apply, source, batch_size)
            if applied is None:  # the destination refused a row: the row path names it
                return False
            first, last, count, upserted, deleted = applied
            if not count:
                return True
            spans += 1
            result.upserted += upserted
            result.deleted += deleted
            result.batches += 1
            if not drain.ack.acknowledge(source, Batch([], [], [], Span(first, last, count))):
                log.info("%s: another transaction committed late inside the span of changes just applied; "
                         "the rest of this run goes row by row", where)
                return False
            result.changes += count
        return True
