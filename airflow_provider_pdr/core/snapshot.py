"""Initial load and resync: copy the source table into the mirror while capture is on.

The channel is installed first, so every write made during the copy is captured. Each chunk
is read and written under the channel's lock, so no drain interleaves with it: a row copied
in a stale state was changed after it was read, so its change is still pending and the next
drain writes the current state over it. Nothing changed during the copy is lost, and drains
keep running between holds of the lock, a few chunks each.

The copy walks the source in primary key order, one chunk (keyset page) at a time, reading
the next while the last is written, so memory holds two chunks whatever the table's size.
After each chunk is committed in the destination, the last key copied is saved in
``pdr_snapshots`` in the source: a run that dies resumes after that key (a chunk copied
twice is harmless, upserts are idempotent).

A resync then sweeps the destination's keys, chunk by chunk, and removes (or, with
``on_delete: nullify``, clears) the rows whose key no longer exists in the source or no
longer matches the filter. The sweep asks the source about exact keys, never about key
ranges: two engines may order the same strings differently.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.drain.assemble import Drain, open_drain
from airflow_provider_pdr.core.drain.batch import Batch
from airflow_provider_pdr.core.drain.connections import brief_key, committing, reflection
from airflow_provider_pdr.core.drain.in_database import applying_in_database
from airflow_provider_pdr.core.drain.pace import Pace, writing_thread
from airflow_provider_pdr.core.drain.read import lines_made, missing_in_source
from airflow_provider_pdr.core.drain.results import Timed
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.errors import ApplyError
from airflow_provider_pdr.core.keys import key_page, page
from airflow_provider_pdr.core.registry import (
    COPY, DONE, PROGRESS_TABLE, SWEEP, progress_table, registry_schema,
)
from airflow_provider_pdr.core.values import decode_key, encode_key, value_converters

log = logging.getLogger(__name__)

# Chunks copied under one hold of the channel lock, each read while the one before is written;
# a drain waiting for the lock gets it between two holds.
CHUNKS_PER_HOLD = 8


@dataclass
class SnapshotResult(Timed):
    copied: int = 0  # source rows written to the destination
    removed: int = 0  # destination rows deleted (or cleared) because the source no longer has them
    chunks: int = 0
    done: bool = False  # False when a time budget stopped it: the next run resumes
    resumed: bool = False  # True when it continued an interrupted snapshot

    def as_dict(self) -> dict:
        return asdict(self)


class Progress:
    """The snapshot's row in pdr_snapshots, saved after every chunk."""

    def __init__(self, source: Connection, schema: str | None, channel: str):
        self.table, self.channel = progress_table(schema), channel
        self.table.create(source, checkfirst=True)
        source.commit()
        row = source.execute(sa.select(self.table).where(self.table.c.channel == channel)).first()
        source.rollback()
        self.exists = row is not None
        self.phase = row.phase if row else None
        self.resync = bool(row.resync) if row else False
        self.last = decode_key(row.last_key) if row and row.last_key else None
        self.copied = row.copied if row else 0
        self.removed = row.removed if row else 0

    def start(self, resync: bool) -> None:
        self.phase, self.resync, self.last, self.copied, self.removed = COPY, resync, None, 0, 0

    def chunk_copied(self, source: Connection, count: int, last: tuple | None, result: SnapshotResult) -> None:
        """A chunk of `count` rows up to key `last` was written (none: the copy is past the last
        row); saved, the copy resumes after it."""
        if not count:
            self.phase, self.last = (SWEEP if self.resync else DONE), None
        else:
            self.last = last
            self.copied += count
            result.copied += count
            result.chunks += 1
        self.save(source)

    def save(self, source: Connection) -> None:
        values = {"phase": self.phase, "resync": self.resync, "copied": self.copied, "removed": self.removed,
                  "last_key": None if self.last is None else encode_key(self.last)}
        with committing(source):
            if self.exists:
                source.execute(self.table.update().where(self.table.c.channel == self.channel).values(**values))
            else:
                source.execute(self.table.insert().values(channel=self.channel, **values))
        self.exists = True


def is_loaded(source: Engine, channel: str) -> bool:
    """True once an initial load (or resync) of the channel's reflection has completed."""
    module = engine_module(source)
    with source.connect() as conn:
        schema = registry_schema(conn, module)
        if not sa.inspect(conn).has_table(PROGRESS_TABLE, schema=schema):
            return False
        table = progress_table(schema)
        return conn.execute(sa.select(table.c.phase).where(table.c.channel == channel)).scalar() == DONE


def run_snapshot(source: Connection, destination: Connection, drain: Drain, *, resync: bool, chunk_size: int,
                 deadline: float | None, schema: str | None, restart: bool = False,
                 hold: Callable[[], ContextManager] | None = None) -> SnapshotResult:
    """Copy (and for a resync, sweep) chunk by chunk under `hold()`, the channel lock, taken
    again every CHUNKS_PER_HOLD chunks; `hold` None: the caller holds it throughout."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    progress = Progress(source, schema, drain.plan.channel.name)
    result, pace = SnapshotResult(), Pace()
    if progress.phase in (COPY, SWEEP) and not restart and (progress.resync or not resync):
        result.resumed = True  # an interrupted snapshot continues where it stopped
    elif progress.phase == DONE and not resync and not restart:
        result.done = True
        return result
    else:
        progress.start(resync)
        progress.save(source)
    return TableCopy(source, destination, drain, progress, result, pace, chunk_size, deadline, hold).run()


class TableCopy:
    """One snapshot run's copy and sweep, with its progress, its result and its pace."""

    def __init__(self, source: Connection, destination: Connection, drain: Drain, progress: Progress,
                 result: SnapshotResult, pace: Pace, chunk_size: int, deadline: float | None,
                 hold: Callable[[], ContextManager] | None):
        self.source, self.destination, self.drain = source, destination, drain
        self.progress, self.result, self.pace = progress, result, pace
        self.chunk_size, self.deadline = chunk_size, deadline
        self.per_hold = CHUNKS_PER_HOLD if hold else None
        self.hold = hold or contextlib.nullcontext
        plan = drain.plan
        self.width = len(plan.source_keys)
        self.where = reflection(plan.channel.name, plan.channel.table, plan.target.name, plan.target.schema)

    def run(self) -> SnapshotResult:
        if self.progress.phase == COPY:
            self.copy_in_database()
        self.copy_rows()
        self.sweep()
        self.result.done = self.progress.phase == DONE
        self.pace.add_to(self.result)
        return self.result

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def chunk(self, last: tuple | None, as_text: bool) -> list:
        """The chunk after key `last`: keys, then the fields or (as_text) their line of text."""
        plan, text = self.drain.plan, self.drain.route.text
        if as_text:
            text.prepare(self.source)
        query = plan.source_rows(self.drain.route.shortcuts, text.line if as_text else None)
        return page(self.source, query, plan.key_columns, last, self.chunk_size)

    def read(self, last: tuple | None) -> tuple[list, bool]:
        """The next chunk's rows, and whether they hold lines of text."""
        as_text = self.drain.route.text is not None
        rows = self.chunk(last, as_text)
        if as_text and not lines_made(map(operator.itemgetter(self.width), rows)):
            as_text, rows = False, self.chunk(last, False)
        return rows, as_text

    def write(self, rows: list, as_text: bool) -> None:
        drain, width = self.drain, self.width
        upserts, row_writer = (([r[width] for r in rows], drain.route.span_writer) if as_text
                               else (drain.plan.merged([r[width:] for r in rows]), drain.route.shortcut_writer))
        try:
            drain.writer.apply(self.destination, upserts, [], row_writer)
        except sa.exc.DBAPIError as error:
            refused = Batch(upserts, [], [], keys=[tuple(r[:width]) for r in rows], row_writer=row_writer)
            raise ApplyError(
                f"{self.where}: the destination rejected a chunk of the "
                f"{'resync' if self.progress.resync else 'initial load'} ({len(rows)} rows from "
                f"{brief_key(drain.plan.source_keys, rows[0][:width])}); the copy resumes at this chunk once "
                f"that is fixed: {drain.writer.refusal(self.destination, refused, error)}"
            ) from error

    def copy_in_database(self) -> None:
        """Copy chunks inside the source database while it reaches the destination table (see
        core/drain/in_database.py), each chunk committed with its progress; a chunk the destination
        refuses leaves the rest of the copy to the row path, which names the row."""
        source, progress = self.source, self.progress
        with applying_in_database(self.drain.plan, self.drain.route, source, self.destination.engine) as applying:
            if applying is None:
                return
            log.info("%s: copying inside the source database, which reaches the destination table", self.where)
            while progress.phase == COPY and not self.out_of_time():
                with self.hold():
                    for held in itertools.count(1):
                        keys = self.pace.inline(applying.copy, source, progress.last, self.chunk_size)
                        if keys is None:
                            return
                        progress.chunk_copied(source, len(keys), keys[-1] if keys else None, self.result)
                        if not keys or held == self.per_hold or self.out_of_time():
                            break

    def copy_rows(self) -> None:
        """The copy through Python. The next chunk is read while the last one is written, both
        under the same hold: a hold ends only after every chunk it read is written (the writer's
        thread ends inside it, even when a read fails meanwhile), and each written chunk is saved
        at once."""
        source, progress, pace, plan = self.source, self.progress, self.pace, self.drain.plan
        while progress.phase == COPY and not self.out_of_time():
            with self.hold(), writing_thread(plan.src, plan.dst) as writer:
                rows, as_text = self.read(progress.last)
                for held in itertools.count(1):
                    if not rows:
                        progress.chunk_copied(source, 0, None, self.result)
                        break
                    writing = writer.submit(pace.writer(self.write), rows, as_text)
                    last = tuple(rows[-1][: self.width])
                    following = None if held == self.per_hold or self.out_of_time() else self.read(last)
                    pace.wait(writing)
                    progress.chunk_copied(source, len(rows), last, self.result)
                    if following is None:
                        break
                    rows, as_text = following

    def sweep(self) -> None:
        """A resync's sweep: destination rows whose key the source no longer has are removed."""
        source, destination, progress, drain = self.source, self.destination, self.progress, self.drain
        dest_keys = [drain.plan.target.c[k] for k in drain.plan.keys]
        to_source = value_converters(drain.plan.source_table)
        while progress.phase == SWEEP and not self.out_of_time():
            with self.hold():
                keys = key_page(destination, dest_keys, progress.last, self.chunk_size)
                if not keys:
                    progress.phase, progress.last = DONE, None
                else:
                    gone = missing_in_source(source, drain.plan, keys, to_source)
                    removed = self.pace.inline(drain.writer.apply, destination, [], gone) if gone else 0
                    progress.last = keys[-1]
                    progress.removed += removed
                    self.result.removed += removed
                    self.result.chunks += 1
            progress.save(source)


def snapshot(
    source: Engine,
    destination: Engine,
    spec: ReflectionSpec,
    *,
    resync: bool = False,
    restart: bool = False,
    chunk_size: int = 5000,
    time_budget: float | None = None,
) -> SnapshotResult:
    """Initial load (``resync=False``): copy every source row once; a completed load is not
    repeated. Resync (``resync=True``): copy again and remove destination rows the source no
    longer has (unless the spec's `deletes` is false or the mapping's on_delete is keep). An
    interrupted run resumes where it stopped (``restart=True`` starts over).
    Run a reflect afterwards to apply the changes captured during the copy."""
    started = time.monotonic()
    deadline = None if time_budget is None else started + time_budget
    with open_drain(source, destination, spec) as (drain, sconn, dconn):
        info, table = drain.plan.channel, drain.plan.target.name
        result = run_snapshot(sconn, dconn, drain, resync=resync, chunk_size=chunk_size, deadline=deadline,
                              schema=info.schema, restart=restart,
                              hold=lambda: drain.plan.src.channel_lock(source, info.schema, info.name,
                                                                       spec.lock_timeout))
    result.seconds = time.monotonic() - started
    # The caller (the reflect task's full refresh, a script) states the run's summary.
    log.debug("%s: %s %s, %d rows copied, %d removed in %d chunks, %s",
              reflection(info.name, info.table, table, spec.destination_schema), "resync" if resync else "initial load",
              "complete" if result.done else "paused (resumes on the next run)", result.copied, result.removed,
              result.chunks, result.timing())
    return result


__all__ = ["SnapshotResult", "is_loaded", "run_snapshot", "snapshot"]
