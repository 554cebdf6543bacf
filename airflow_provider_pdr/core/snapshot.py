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
import datetime as dt
import decimal
import itertools
import json
import logging
import operator
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.channel import registry_schema
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.errors import ApplyError
from airflow_provider_pdr.core.keys import key_page, keys_among, page
from airflow_provider_pdr.core.reflect import (
    Batch, Drain, Pace, Timed, applying_inside, brief_key, committing, lines_made, open_drain, reflection,
    writing_thread,
)
from airflow_provider_pdr.core.schema import value_converters
from airflow_provider_pdr.core.transform import Mapping

log = logging.getLogger(__name__)

PROGRESS_TABLE = "pdr_snapshots"
COPY, SWEEP, DONE = "copy", "sweep", "done"
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


def progress_table(schema: str | None) -> sa.Table:
    return sa.Table(
        PROGRESS_TABLE, sa.MetaData(),
        sa.Column("channel", sa.String(63), primary_key=True),
        sa.Column("phase", sa.String(8), nullable=False),  # copy, sweep or done
        sa.Column("resync", sa.Boolean, nullable=False),
        sa.Column("last_key", sa.Text),  # JSON: the last key copied (copy) or swept (sweep)
        sa.Column("copied", sa.BigInteger, nullable=False),
        sa.Column("removed", sa.BigInteger, nullable=False),
        schema=schema,
    )


# -- key values in JSON, typed so that a resumed run binds exactly the same values ----------
def encode_key(values) -> str:
    def one(v):
        for kind, type_ in (("datetime", dt.datetime), ("date", dt.date), ("time", dt.time)):
            if isinstance(v, type_):
                return {kind: v.isoformat()}
        if isinstance(v, decimal.Decimal):
            return {"decimal": str(v)}
        if isinstance(v, (bytes, memoryview)):
            return {"bytes": bytes(v).hex()}
        if isinstance(v, uuid.UUID):
            return {"uuid": str(v)}
        return v
    return json.dumps([one(v) for v in values])


def decode_key(text: str) -> tuple:
    parse = {"datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat, "time": dt.time.fromisoformat,
             "decimal": decimal.Decimal, "bytes": bytes.fromhex, "uuid": uuid.UUID}

    def one(v):
        if isinstance(v, dict):
            (kind, raw), = v.items()
            return parse[kind](raw)
        return v
    return tuple(one(v) for v in json.loads(text))


PLAIN_VALUES = {int, str, float, type(None)}  # already in the one form `comparable` gives


def comparable(value):
    """One form for values equal across engines (an instant, a number, bytes)."""
    if type(value) in PLAIN_VALUES:  # most keys and values, each compared many times
        return value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, decimal.Decimal):
        return value.normalize() if value.is_finite() else value
    if isinstance(value, memoryview):
        return bytes(value)
    return value


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


def unfinished(source: Connection, schema: str | None, channel: str) -> bool:
    """True when a copy or sweep of the channel was interrupted (it resumes on the next reflect)."""
    found = False
    if sa.inspect(source).has_table(PROGRESS_TABLE, schema=schema):
        table = progress_table(schema)
        found = source.execute(sa.select(table.c.phase).where(table.c.channel == channel)).scalar() in (COPY, SWEEP)
    source.rollback()
    return found


def run_snapshot(source: Connection, destination: Connection, drain: Drain, *, resync: bool, chunk_size: int,
                 deadline: float | None, schema: str | None, restart: bool = False,
                 hold: Callable[[], ContextManager] | None = None) -> SnapshotResult:
    """Copy (and for a resync, sweep) chunk by chunk under `hold()`, the channel lock, taken
    again every CHUNKS_PER_HOLD chunks; `hold` None: the caller holds it throughout."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    progress = Progress(source, schema, drain.channel.name)
    result, pace = SnapshotResult(), Pace()
    if progress.phase in (COPY, SWEEP) and not restart and (progress.resync or not resync):
        result.resumed = True  # an interrupted snapshot continues where it stopped
    elif progress.phase == DONE and not resync and not restart:
        result.done = True
        return result
    else:
        progress.start(resync)
        progress.save(source)

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    width = len(drain.source_keys)
    where = reflection(drain.channel.name, drain.channel.table, drain.target.name, drain.target.schema)

    def chunk(last: tuple | None, as_text: bool) -> list:
        """The chunk after key `last`: keys, then the fields or (as_text) their line of text."""
        if as_text:
            drain.text.prepare(source)
        return page(source, drain.source_rows(drain.shortcuts, as_text), drain.key_columns, last, chunk_size)

    def read(last: tuple | None) -> tuple[list, bool]:
        """The next chunk's rows, and whether they hold lines of text."""
        as_text = drain.text is not None
        rows = chunk(last, as_text)
        if as_text and not lines_made(map(operator.itemgetter(width), rows)):
            as_text, rows = False, chunk(last, False)
        return rows, as_text

    def write(rows: list, as_text: bool) -> None:
        upserts, form = (([r[width] for r in rows], drain.span_form) if as_text
                         else (drain.merged([r[width:] for r in rows]), drain.shortcut_form))
        try:
            drain.apply(destination, upserts, [], form)
        except sa.exc.DBAPIError as error:
            refused = Batch(upserts, [], [], keys=[tuple(r[:width]) for r in rows], form=form)
            raise ApplyError(
                f"{where}: the destination rejected a chunk of the {'resync' if progress.resync else 'initial load'} "
                f"({len(rows)} rows from {brief_key(drain.source_keys, rows[0][:width])}); the copy resumes at "
                f"this chunk once that is fixed: {drain.refusal(destination, refused, error)}"
            ) from error

    per_hold = CHUNKS_PER_HOLD if hold else None
    hold = hold or contextlib.nullcontext

    def copy_inside() -> None:
        """Copy chunks inside the source database while it reaches the destination table (see
        core/inside.py), each chunk committed with its progress; a chunk the destination refuses
        leaves the rest of the copy to the row path, which names the row."""
        with applying_inside(drain, source, destination.engine) as inside:
            if inside is None:
                return
            log.info("%s: copying inside the source database, which reaches the destination table", where)
            while progress.phase == COPY and not out_of_time():
                with hold():
                    for held in itertools.count(1):
                        keys = pace.inline(inside.copy, source, progress.last, chunk_size)
                        if keys is None:
                            return
                        progress.chunk_copied(source, len(keys), keys[-1] if keys else None, result)
                        if not keys or held == per_hold or out_of_time():
                            break

    if progress.phase == COPY:
        copy_inside()
    # The next chunk is read while the last one is written, both under the same hold: a hold
    # ends only after every chunk it read is written (the writer's thread ends inside it, even
    # when a read fails meanwhile), and each written chunk is saved at once.
    while progress.phase == COPY and not out_of_time():
        with hold(), writing_thread(drain) as writer:
            rows, as_text = read(progress.last)
            for held in itertools.count(1):
                if not rows:
                    progress.chunk_copied(source, 0, None, result)
                    break
                writing = writer.submit(pace.writer(write), rows, as_text)
                last = tuple(rows[-1][:width])
                following = None if held == per_hold or out_of_time() else read(last)
                pace.wait(writing)
                progress.chunk_copied(source, len(rows), last, result)
                if following is None:
                    break
                rows, as_text = following

    dest_keys = [drain.target.c[k] for k in drain.keys]
    to_source = value_converters(drain.source_table)
    while progress.phase == SWEEP and not out_of_time():
        with hold():
            keys = key_page(destination, dest_keys, progress.last, chunk_size)
            if not keys:
                progress.phase, progress.last = DONE, None
            else:
                gone = missing_in_source(source, drain, keys, to_source)
                removed = pace.inline(drain.apply, destination, [], gone) if gone else 0
                progress.last = keys[-1]
                progress.removed += removed
                result.removed += removed
                result.chunks += 1
        progress.save(source)
    result.done = progress.phase == DONE
    pace.add_to(result)
    return result


def missing_in_source(source: Connection, drain: Drain, keys: list[tuple], to_source: dict) -> list[tuple]:
    """The destination keys whose row the source no longer has (or that no longer match the filter).
    Where keys compare exactly (Drain.exact_lookup), the source counts them first: mostly none
    is gone, and then no key travels back."""
    converters = [to_source.get(k) for k in drain.source_keys]
    columns = [drain.source_table.c[k] for k in drain.source_keys]
    asked = [tuple(f(v) if f else v for f, v in zip(converters, key)) for key in keys] if any(converters) else keys

    def matching(*selected: sa.ColumnElement) -> Iterator[sa.Select]:
        for condition in keys_among(drain.src, columns, asked):
            query = sa.select(*selected).select_from(drain.source_table).where(condition)
            yield query if drain.plan.condition is None else query.where(drain.plan.condition)

    try:
        if drain.exact_lookup and sum(source.scalar(query) for query in matching(sa.func.count())) == len(asked):
            return []
        found = {tuple(comparable(v) for v in row) for query in matching(*columns) for row in source.execute(query)}
    finally:
        source.rollback()
    return [key for key in keys if tuple(comparable(v) for v in key) not in found]


def snapshot(
    source: Engine,
    destination: Engine,
    channel: str,
    destination_table: str | None = None,
    destination_schema: str | None = None,
    *,
    mapping: Mapping | None = None,
    deletes: bool = True,
    resync: bool = False,
    restart: bool = False,
    chunk_size: int = 5000,
    create_table: bool = False,
    time_budget: float | None = None,
    lock_timeout: float = 60.0,
) -> SnapshotResult:
    """Initial load (``resync=False``): copy every source row once; a completed load is not
    repeated. Resync (``resync=True``): copy again and remove destination rows the source no
    longer has (unless `deletes` is false or the mapping's on_delete is keep). An interrupted
    run resumes where it stopped (``restart=True`` starts over).
    Run a reflect afterwards to apply the changes captured during the copy."""
    started = time.monotonic()
    deadline = None if time_budget is None else started + time_budget
    with open_drain(source, destination, channel, destination_table, destination_schema,
                    create_table=create_table, deletes=deletes, mapping=mapping) as (drain, sconn, dconn):
        info, table = drain.channel, drain.target.name
        result = run_snapshot(sconn, dconn, drain, resync=resync, chunk_size=chunk_size, deadline=deadline,
                              schema=info.schema, restart=restart,
                              hold=lambda: drain.src.channel_lock(source, info.schema, channel, lock_timeout))
    result.seconds = time.monotonic() - started
    log.info("%s: %s %s, %d rows copied, %d removed in %d chunks, %s",
             reflection(channel, info.table, table, destination_schema), "resync" if resync else "initial load",
             "complete" if result.done else "paused (resumes on the next run)", result.copied, result.removed,
             result.chunks, result.timing())
    return result


def forget(conn: Connection, schema: str | None, channel: str) -> None:
    """Drop the channel's snapshot progress (on uninstall); the table goes with its last row."""
    if not sa.inspect(conn).has_table(PROGRESS_TABLE, schema=schema):
        return
    table = progress_table(schema)
    conn.execute(table.delete().where(table.c.channel == channel))
    if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0:
        table.drop(conn)


__all__ = ["SnapshotResult", "is_loaded", "run_snapshot", "snapshot"]
