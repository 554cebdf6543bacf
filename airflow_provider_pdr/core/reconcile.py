"""Reconcile: prove the mirror equals the source, chunk by chunk, and repair it when asked.

Pass 1 walks the source in primary key order, one chunk at a time, reads the destination
rows of exactly those keys, and compares the mapped fields value by value (in one form for
values equal across engines: an instant, a number, bytes). Pass 2 walks the destination's
keys and asks the source which of them it still has. Both passes hold memory for one chunk.

Each chunk is compared under the channel's lock, so no drain changes the mirror meanwhile
(drains run between chunks). A key with a pending change in the channel is not a
difference: the next drain applies it. Repair writes the source's rows (and
deletes or clears extra rows as the reflection's ``on_delete`` says) in the destination.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core.drain.assemble import Drain, open_drain
from airflow_provider_pdr.core.drain.read import missing_in_source
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.keys import key_page, keys_among, page
from airflow_provider_pdr.core.schema import describe
from airflow_provider_pdr.core.values import comparable, value_converters

log = logging.getLogger(__name__)
SAMPLES = 10


@dataclass
class ReconcileResult:
    checked: int = 0  # source rows compared
    missing: int = 0  # in the source, not in the destination
    different: int = 0  # in both, some mapped value differs
    extra: int = 0  # in the destination, no longer in the source (or filtered out)
    pending: int = 0  # differing keys with a pending change: the next drain applies them
    repaired: int = 0  # destination rows written, deleted or cleared by a repair
    samples: list[str] = field(default_factory=list)  # a few differing keys, for the log

    @property
    def differing(self) -> int:
        return self.missing + self.different + self.extra

    def as_dict(self) -> dict:
        return {**asdict(self), "differing": self.differing}


def describe_key(names, values) -> str:
    return ", ".join(f"{n}={v!r}" for n, v in zip(names, values))


class Reconciler:
    """Both passes, one chunk at a time, each chunk under `hold()` (the channel lock)."""

    def __init__(self, source: Connection, destination: Connection, drain: Drain, repair: bool, chunk_size: int,
                 hold: Callable[[], ContextManager] = contextlib.nullcontext):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.source, self.destination, self.drain, self.hold = source, destination, drain, hold
        self.repair, self.chunk_size = repair, chunk_size
        self.result = ReconcileResult()
        self.plan = drain.plan
        self.width = len(drain.plan.source_keys)
        self.to_source = value_converters(drain.plan.source_table)

    def note(self, kind: str, key: tuple) -> None:
        if len(self.result.samples) < SAMPLES:
            self.result.samples.append(f"{kind}: {describe_key(self.plan.keys, key)}")

    def pending_keys(self, source_keys: list[tuple]) -> set[tuple]:
        changes = self.plan.changes
        columns = [changes.c[f"key_{i}"] for i in range(1, self.width + 1)]
        found = set()
        for condition in keys_among(self.plan.src, columns, source_keys):
            rows = self.source.execute(sa.select(*columns).where(condition).distinct())
            found.update(tuple(comparable(v) for v in row) for row in rows)
        self.source.rollback()
        return found

    def compare_source(self) -> None:
        last, more = None, True
        while more:
            with self.hold():
                last, more = self.source_chunk(last)

    def compare_destination(self) -> None:
        if self.plan.on_delete == "keep":
            return  # rows the source no longer has are meant to stay
        last, more = None, True
        while more:
            with self.hold():
                last, more = self.destination_chunk(last)

    def source_chunk(self, last: tuple | None) -> tuple[tuple | None, bool]:
        """Compare the source rows after `last`; returns the new last key and whether more follow."""
        plan = self.plan
        dest_table = plan.write_table
        dest_keys = [dest_table.c[k] for k in plan.keys]
        rows = page(self.source, plan.source_rows(), plan.key_columns, last, self.chunk_size)
        if not rows:
            return last, False
        last = tuple(rows[-1][: self.width])
        wanted = {}
        for row, converted in zip(rows, plan.converted(plan.merged([row[self.width :] for row in rows]))):
            values = plan.as_dict(converted)
            wanted[tuple(comparable(values[k]) for k in plan.keys)] = (tuple(row[: self.width]), values)
        have = {}
        keys = [tuple(values[k] for k in plan.keys) for _, values in wanted.values()]
        for condition in keys_among(plan.dst, dest_keys, keys):
            for found in self.destination.execute(sa.select(dest_table).where(condition)).all():
                have[tuple(comparable(found._mapping[k]) for k in plan.keys)] = found._mapping
        self.destination.rollback()
        self.result.checked += len(rows)
        suspects = []
        for key, (source_key, values) in wanted.items():
            current = have.get(key)
            if current is None:
                suspects.append(("missing", key, source_key, values))
            elif any(values[n] != current[n] and comparable(values[n]) != comparable(current[n])
                     for n in plan.columns):  # values equal as they are stay equal in one form
                suspects.append(("different", key, source_key, values))
        self.settle(suspects)
        return last, True

    def settle(self, suspects: list[tuple]) -> None:
        if not suspects:
            return
        pending = self.pending_keys([source_key for _, _, source_key, _ in suspects])
        fix = []
        for kind, key, source_key, values in suspects:
            if tuple(comparable(v) for v in source_key) in pending:
                self.result.pending += 1
                continue
            setattr(self.result, kind, getattr(self.result, kind) + 1)
            self.note(kind, key)
            fix.append([values[name] for name in self.plan.columns])
        if fix and self.repair:
            self.drain.writer.apply(self.destination, fix, [])
            self.result.repaired += len(fix)

    def destination_chunk(self, last: tuple | None) -> tuple[tuple | None, bool]:
        """Look for extra destination rows after key `last`; returns the new last key and whether more follow."""
        plan = self.plan
        target = plan.write_table
        dest_keys = [target.c[k] for k in plan.keys]
        others = [target.c[n] for n in plan.columns if n not in plan.keys]
        ours = []
        if plan.on_delete == "nullify":  # a row of another source is extra only if it holds our values
            if not others:
                return last, False
            ours.append(sa.or_(*[c.isnot(None) for c in others]))
        keys = key_page(self.destination, dest_keys, last, self.chunk_size, *ours)
        if not keys:
            return last, False
        last = keys[-1]
        gone = missing_in_source(self.source, self.plan, keys, self.to_source)
        if not gone:
            return last, True
        converters = [self.to_source.get(k) for k in plan.source_keys]
        pending = self.pending_keys([tuple(f(v) if f else v for f, v in zip(converters, k)) for k in gone])
        extra = []
        for key in gone:
            if tuple(comparable(f(v) if f else v) for f, v in zip(converters, key)) in pending:
                self.result.pending += 1
            else:
                extra.append(key)
                self.note("extra", key)
        self.result.extra += len(extra)
        if extra and self.repair:
            self.result.repaired += self.drain.writer.apply(self.destination, [], extra)
        return last, True


def reconcile(
    source: Engine,
    destination: Engine,
    spec: ReflectionSpec,
    *,
    repair: bool = False,
    chunk_size: int = 5000,
) -> ReconcileResult:
    """Compare the mirror with the source; with ``repair=True`` also make it equal. With the
    spec's `deletes` false (or on_delete keep), rows the source no longer has are not differences.
    The destination table is never created here (the spec's create_table is not used)."""
    with open_drain(source, destination, dataclasses.replace(spec, create_table=False)) as (drain, sconn, dconn):
        info, table = drain.plan.channel, drain.plan.target.name
        work = Reconciler(sconn, dconn, drain, repair, chunk_size,
                          hold=lambda: drain.plan.src.channel_lock(source, info.schema, info.name, spec.lock_timeout))
        work.compare_source()
        work.compare_destination()
    result = work.result
    # DEBUG: the reconcile task logs the run's one summary (as the reflect task does)
    log.debug(
        "channel %r (%s -> %s): %d rows checked, %d differing (%d missing, %d different, %d extra), "
        "%d with pending changes, %d repaired%s", info.name, info.table, describe(table, spec.destination_schema),
        result.checked, result.differing, result.missing, result.different, result.extra, result.pending,
        result.repaired, f"; e.g. {'; '.join(result.samples)}" if result.samples else "",
    )
    return result
