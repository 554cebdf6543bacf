"""Draining a channel into a destination table, batch by batch.

Where keys compare exactly (integers everywhere, a few more types in PostgreSQL), the source
groups the work itself: one statement reads a span of the oldest change rows as one row per
key, with the key's current state. A span waits for the next one to be read and leaves to it
the keys it holds again (written once, with the newer state). Its rows are upserted (keys
that exist) or deleted (keys that do not) in destination transactions of at most batch_size
rows, then the span is acknowledged by deleting its range. A span with a gap (a number another
transaction may hold) has its numbers read again first: if a transaction that took one of
them committed meanwhile, nothing is deleted and the drain goes on reading change rows one by
one (the exact path); one still open is left alone. The delete must remove exactly as many
change rows as were read.

The exact path (every other key, and after such a rollback) reads (seq, key) change rows,
looks the keys up, and deletes from the change table exactly the sequence numbers read.
Never "everything up to N" unchecked: a late commit's change row must still be there for the
next batch.

A run holds the channel's lock for its whole drain: without it, a run that read a row and
stalled could write that stale state over a newer one applied by another run.
"""


from __future__ import annotations

import contextlib
import logging
import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.channel import install_channel
from airflow_provider_pdr.core.drain.assemble import Drain, prepare_drain
from airflow_provider_pdr.core.drain.connections import reaching, reflection
from airflow_provider_pdr.core.drain.pace import Pace, young_collections_only
from airflow_provider_pdr.core.drain.pipeline import Limits, Pipeline, drain_in_database
from airflow_provider_pdr.core.drain.results import ReflectResult
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.engines import EngineModule, engine_module
from airflow_provider_pdr.core.registry import Channel, count_pending, load_channel, unfinished
from airflow_provider_pdr.core.snapshot import run_snapshot

log = logging.getLogger(__name__)


def reflect(
    source: Engine,
    destination: Engine,
    spec: ReflectionSpec,
    *,
    batch_size: int = 5000,
    max_batches: int | None = None,
    time_budget: float | None = None,
    initial_load: bool = False,
) -> ReflectResult:
    """Apply the channel's pending changes to the destination until drained or a limit is hit.

    With `initial_load`, rows that existed before the channel are copied first, once
    (core/snapshot.py); an interrupted copy always resumes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    src, dst = engine_module(source), engine_module(destination)
    result = ReflectResult()
    started = time.monotonic()
    deadline = None if time_budget is None else started + time_budget
    with reaching(f"channel {spec.channel!r}", "source"), source.connect() as sconn:
        info = load_channel(sconn, src, spec.channel)
        sconn.rollback()
    where = reflection(spec.channel, info.table, spec.destination_table or info.table.name, spec.destination_schema)
    with contextlib.ExitStack() as held:
        sconn, dconn = lock_and_connect(held, source, destination, src, info, where, spec.lock_timeout)
        drain = prepare_drain(sconn, dconn, src, dst, info, spec)
        if drain.drift:  # the mapping evolves (prepare_drain refused any other drift): refresh the channel
            log.warning("%s: the source table changed (%s); evolving the reflection", where, drain.drift)
            install_channel(source, spec.channel, info.table.name, info.table.schema)
        log.debug("%s: %s", where, drain.route.describe())
        if copy_first(drain, sconn, dconn, result, initial_load, batch_size, deadline):
            drain_changes(drain, sconn, dconn, destination, where, result, batch_size, Limits(max_batches, deadline))
        with reaching(where, "source"):
            pending = count_pending(sconn, src, info)
        result.lag_seconds = pending.oldest_age_seconds or 0.0
        result.drained = pending.count == 0
    result.seconds = time.monotonic() - started
    # One task run may call reflect several times: the caller states the run's summary.
    log.debug("%s: %s, %s", where, result.counts(), result.timing())
    return result


def lock_and_connect(held: contextlib.ExitStack, source: Engine, destination: Engine, src: EngineModule,
                     info: Channel, where: str, lock_timeout: float) -> tuple[Connection, Connection]:
    """Take the channel's lock for the run, then a source and a destination connection, all
    released with `held`."""
    with reaching(where, "source"):
        asked = time.monotonic()
        held.enter_context(src.channel_lock(source, info.schema, info.name, lock_timeout))
        if time.monotonic() - asked > 0.5:
            log.info("%s: waited %.1fs for another run to finish draining this channel", where,
                     time.monotonic() - asked)
        sconn = held.enter_context(source.connect())
    with reaching(where, "destination"):
        dconn = held.enter_context(destination.connect())
        dconn.scalar(sa.select(1))  # a pooled connection the server dropped fails here, clearly
        dconn.rollback()
    return sconn, dconn


def copy_first(drain: Drain, source: Connection, destination: Connection, result: ReflectResult,
               initial_load: bool, batch_size: int, deadline: float | None) -> bool:
    """Copy the table first where asked, or where a copy is due or unfinished; False while a copy
    is unfinished: changes apply after it, on the next run."""
    found, info = drain.drift, drain.plan.channel
    # Rows written before new columns existed lack their values; without triggers, changes were lost.
    refill = bool(found.added or found.triggers_missing)
    if not (initial_load or refill or unfinished(source, info.schema, info.name)):
        return True
    loaded = run_snapshot(source, destination, drain, resync=found.triggers_missing, restart=refill,
                          chunk_size=batch_size, deadline=deadline, schema=info.schema)
    result.copied = loaded.copied
    result.add_sides(loaded)
    return loaded.done


def drain_changes(drain: Drain, source: Connection, destination: Connection, destination_engine: Engine,
                  where: str, result: ReflectResult, batch_size: int, limits: Limits) -> None:
    """The channel's changes applied, inside the source database where it can, else by the pipeline."""
    pace = Pace()
    if not drain_in_database(drain, source, destination_engine, where, result, pace, batch_size, limits):
        left = None if limits.max_batches is None else limits.max_batches - result.batches
        if drain.route.text is not None:
            log.info("%s: rows travel as the source's own text, never parsed in Python", where)
        with young_collections_only():
            Pipeline(drain, source, destination, where, result, pace).run(batch_size, left, limits.deadline)
    pace.add_to(result)
