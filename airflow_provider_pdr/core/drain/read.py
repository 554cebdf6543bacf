"""Reading changes from the source: spans of change rows grouped by key in the source, or the
exact window of (seq, key) change rows whose keys are looked up; either way, batches."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.drain.batch import Batch, Span
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.drain.route import Route
from airflow_provider_pdr.core.errors import ChannelChangedError
from airflow_provider_pdr.core.keys import chunks, keys_among
from airflow_provider_pdr.core.values import comparable

# How many batches of change rows a drain reads ahead: the reach within which repeated changes
# of a key are applied once.
WINDOW_BATCHES = 4

# A span row's count of change rows, first seq and last seq (DrainPlan.span_rows).
change_count, first_seq, last_seq = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def lines_made(lines: Iterable) -> bool:
    """Whether the source made every line of text read: MariaDB makes none longer than its
    max_allowed_packet (NULL instead), and a span or chunk holding one is read again as values."""
    return None not in lines


class Reader:
    """Reads batches of changes with their current source rows, as the route says."""

    def __init__(self, plan: DrainPlan, route: Route):
        self.plan, self.route = plan, route

    def changes_after(self, source: Connection, after: int | None, limit: int) -> list:
        """Up to `limit` change rows (seq, key...) in seq order, from the oldest or after seq `after`."""
        return source.execute(self.plan.oldest[after is not None], {"limit": limit, "after": after}).all()

    def read_span(self, source: Connection, after: int | None, limit: int, as_values: bool = False) -> Batch:
        """Up to `limit` change rows from the oldest or after seq `after`, read by the source as
        one row per key with its current state, in one statement: no key's state is read before
        its change rows, so a later change of it leaves a change row after `last`, or in the span
        (which the range delete's count then shows). With `as_values`, a text route's span is
        read as values."""
        plan, route = self.plan, self.route
        text, queries, writer, start = route.text, route.span_queries, route.span_writer, 4 + plan.width
        if as_values:
            text, queries, writer = None, plan.value_span_queries, None
        if text is not None:
            text.prepare(source)
        plan.src.prepare_join(source, plan.source_table, limit)
        rows = source.execute(queries[after is not None], {"limit": limit, "after": after}).all()
        source.rollback()  # end the read transaction: the next read must see new commits
        rows.sort(key=first_seq)  # keys land in the order they first changed
        if not rows:
            return Batch([], [], [])
        present = [row for row in rows if row[3] is not None]
        if text is not None:
            lines = [row[start] for row in present]
            if not lines_made(lines):
                return self.read_span(source, after, limit, as_values=True)
            upserts = lines
        else:
            upserts = plan.merged([row[start:] for row in present])
        deletes = [tuple(row[4:start]) for row in rows if row[3] is None]
        span = Span(rows[0][1], max(map(last_seq, rows)), sum(map(change_count, rows)))
        return Batch(upserts, deletes, [], span, [tuple(row[4:start]) for row in present], writer)

    def read_batch(self, source: Connection, window: Window, batch_size: int) -> Batch:
        """The next batch: the oldest keys of the window, up to `batch_size` change rows with every
        change of theirs the window holds, and the current state of each key.

        Keys are looked up in the source table directly. Where that lookup is exact (integer
        keys, and others the engine vouches for), a key it does not find is gone; otherwise a key
        it does not return as such (gone, filtered out, or stored differently in the source, such
        as 'A' for 'a' under a collation that ignores case) is resolved by joining its change row
        to the source, as exactly as the capture trigger compares keys."""
        plan = self.plan
        window.fill(source)
        taken = window.take(batch_size)
        width, found = plan.width, {}
        if plan.lookup is not None:
            for condition in keys_among(plan.src, plan.key_columns, list(taken)):
                rows = source.execute(plan.lookup.where(condition)).all()
                found.update(zip((row[:width] for row in rows), plan.merged([row[width:] for row in rows])))
        upserts = [found[key] for key in taken if key in found]
        missing = {seqs[0]: key for key, seqs in taken.items() if key not in found}
        if plan.exact_lookup:
            deletes = list(missing.values())
        else:
            deletes = self.resolve_unsure_keys(source, missing, upserts)
        source.rollback()  # end the read transaction: the next batch must see new commits
        return Batch(upserts, deletes, [seq for seqs in taken.values() for seq in seqs])

    def resolve_unsure_keys(self, source: Connection, unsure: dict[int, tuple], upserts: list) -> list[tuple]:
        """Keys (by the seq of one of their change rows) joined to their source rows: the rows found
        are added to `upserts`; returns the keys that are gone."""
        plan, resolved = self.plan, {}
        plan.src.prepare_join(source, plan.source_table, len(unsure))
        for part in chunks(list(unsure), plan.src.max_parameters):
            resolved.update((row[0], row) for row in source.execute(plan.current, {"seqs": list(part)}).all())
        if len(resolved) != len(unsure):  # only this run deletes change rows, under the channel lock
            source.rollback()
            lost = sorted(set(unsure) - set(resolved))[:5]
            raise ChannelChangedError(
                f"channel {plan.channel.name!r}: change rows {lost} vanished during the drain (was the channel "
                "reinstalled or its change table emptied?); nothing of this batch was acknowledged, run again"
            )
        upserts += plan.merged([row[2:] for row in resolved.values() if row[1] is not None])
        return [unsure[seq] for seq, row in resolved.items() if row[1] is None]


class Window:
    """Change rows read ahead of the batches, (seq, key) only, grouped by key in the order keys
    first appear. A batch takes the oldest keys with all their changes the window holds, so a
    key changed many times within a backlog is read and written once. Each change row is read
    once: the window continues after the highest seq it has read, and starts again from the
    oldest change when it runs dry (a change that commits late, below that seq, is read then)."""

    def __init__(self, reader: Reader, size: int):
        self.reader, self.size = reader, size
        self.keys: OrderedDict[tuple, list[int]] = OrderedDict()  # its oldest key removed in O(1)
        self.held = 0  # change rows in the window
        self.top: int | None = None  # highest seq read; None: the next fill starts from the oldest
        self.fresh = True  # the last fill started from the oldest change

    def fill(self, source: Connection) -> None:
        if self.held >= self.size:
            return
        self.fresh = self.top is None
        rows = self.reader.changes_after(source, self.top, self.size - self.held)
        group = self.keys.setdefault
        for row in rows:
            group(row[1:], []).append(row[0])
        if rows:
            self.top = rows[-1][0]
            self.held += len(rows)

    def next(self, source: Connection, batch_size: int, batches_left: int | None) -> Batch:
        return self.reader.read_batch(source, self, batch_size)

    def take(self, limit: int) -> dict[tuple, list[int]]:
        """The oldest keys and their seqs: up to `limit` change rows, or one key's, if it has more."""
        taken, count = {}, 0
        for key, seqs in self.keys.items():
            if taken and count + len(seqs) > limit:
                break
            taken[key] = seqs
            count += len(seqs)
        for _ in taken:
            self.keys.popitem(last=False)
        self.held -= count
        return taken

    def restart(self) -> None:
        self.keys.clear()
        self.held, self.top = 0, None


class Spans:
    """Reads spans of change rows, each after the last (see Reader.read_span); starts again from
    the oldest change when one comes back empty (a change that commits late is read then)."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.last: int | None = None
        self.fresh = True  # the last read started from the oldest change

    def next(self, source: Connection, batch_size: int, batches_left: int | None) -> Batch:
        self.fresh = self.last is None
        reach = WINDOW_BATCHES if batches_left is None else max(1, min(WINDOW_BATCHES, batches_left))
        batch = self.reader.read_span(source, self.last, reach * batch_size)
        if batch.span:
            self.last = batch.span.last
        return batch

    def restart(self) -> None:
        self.last = None


def missing_in_source(source: Connection, plan: DrainPlan, keys: list[tuple], to_source: dict) -> list[tuple]:
    """The destination keys whose row the source no longer has (or that no longer match the filter).
    Where keys compare exactly (DrainPlan.exact_lookup), the source counts them first: mostly none
    is gone, and then no key travels back."""
    converters = [to_source.get(k) for k in plan.source_keys]
    columns = [plan.source_table.c[k] for k in plan.source_keys]
    asked = [tuple(f(v) if f else v for f, v in zip(converters, key)) for key in keys] if any(converters) else keys

    def matching(*selected: sa.ColumnElement) -> Iterator[sa.Select]:
        for condition in keys_among(plan.src, columns, asked):
            query = sa.select(*selected).select_from(plan.source_table).where(condition)
            yield query if plan.mapped.condition is None else query.where(plan.mapped.condition)

    try:
        if plan.exact_lookup and sum(source.scalar(query) for query in matching(sa.func.count())) == len(asked):
            return []
        found = {tuple(comparable(v) for v in row) for query in matching(*columns) for row in source.execute(query)}
    finally:
        source.rollback()
    return [key for key in keys if tuple(comparable(v) for v in key) not in found]
