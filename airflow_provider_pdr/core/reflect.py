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
import functools
import gc
import logging
import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core import drift
from airflow_provider_pdr.core.channel import Channel, change_table, count_pending, install_channel, load_channel
from airflow_provider_pdr.core.engines import EngineModule, engine_module
from airflow_provider_pdr.core.inside import Inside, unchanged
from airflow_provider_pdr.core.errors import (
    ApplyError, ChannelChangedError, ConfigurationError, SchemaError, UnreachableError,
)
from airflow_provider_pdr.core.keys import chunks, keys_among
from airflow_provider_pdr.core.schema import (
    check_destination, create_destination_table, describe, generic_type, reflect_table, value_converters,
)
from airflow_provider_pdr.core.transform import Mapping, plan

log = logging.getLogger(__name__)


@dataclass
class Timed:
    """Where a run's time went. Reading and writing run side by side (Pace), so the larger of the
    two sets the pace: the side to look at when a run is slow."""

    seconds: float = 0.0  # the whole run
    reading_seconds: float = 0.0  # reading changes and rows from the source, acknowledging them
    writing_seconds: float = 0.0  # writing them into the destination

    def add_sides(self, other: Timed) -> None:
        """Count another run's reading and writing (a copy within a reflect, a reflect within a task)."""
        self.reading_seconds += other.reading_seconds
        self.writing_seconds += other.writing_seconds

    def timing(self) -> str:
        """Where the time went, for a log line."""
        return (f"in {self.seconds:.2f}s (reading the source {self.reading_seconds:.2f}s, "
                f"writing the destination {self.writing_seconds:.2f}s)")


@dataclass
class ReflectResult(Timed):
    upserted: int = 0
    deleted: int = 0  # destination rows removed
    batches: int = 0
    changes: int = 0  # change rows acknowledged
    copied: int = 0  # source rows copied by an initial load, a resync or a schema evolution
    drained: bool = False  # True when the channel was empty at the end
    lag_seconds: float = 0.0  # age of the oldest change still pending afterwards

    def as_dict(self) -> dict:
        return asdict(self)


# How many batches of change rows a drain reads ahead: the reach within which repeated changes
# of a key are applied once.
WINDOW_BATCHES = 4


class Window:
    """Change rows read ahead of the batches, (seq, key) only, grouped by key in the order keys
    first appear. A batch takes the oldest keys with all their changes the window holds, so a
    key changed many times within a backlog is read and written once. Each change row is read
    once: the window continues after the highest seq it has read, and starts again from the
    oldest change when it runs dry (a change that commits late, below that seq, is read then)."""

    def __init__(self, drain: Drain, size: int):
        self.drain, self.size = drain, size
        self.keys: OrderedDict[tuple, list[int]] = OrderedDict()  # its oldest key removed in O(1)
        self.held = 0  # change rows in the window
        self.top: int | None = None  # highest seq read; None: the next fill starts from the oldest
        self.fresh = True  # the last fill started from the oldest change

    def fill(self, source: Connection) -> None:
        if self.held >= self.size:
            return
        self.fresh = self.top is None
        rows = self.drain.changes_after(source, self.top, self.size - self.held)
        group = self.keys.setdefault
        for row in rows:
            group(row[1:], []).append(row[0])
        if rows:
            self.top = rows[-1][0]
            self.held += len(rows)

    def next(self, source: Connection, batch_size: int, batches_left: int | None) -> Batch:
        return self.drain.read_batch(source, self, batch_size)

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


class Span(NamedTuple):
    """Change rows read as a range: `count` rows with seqs from `first` to `last`."""

    first: int
    last: int
    count: int

    @property
    def gapless(self) -> bool:
        """Every number from first to last was read: no other transaction can hold one of them."""
        return self.count == self.last - self.first + 1


class Form(NamedTuple):
    """How upserts travel: `rows` makes the rows a read returned into the rows `write` takes."""

    rows: Callable[[list], list]
    write: Callable[[Connection, list], None]


class Batch(NamedTuple):
    upserts: list[tuple]  # current rows of the keys that exist, values in the order of Drain.columns
    deletes: list[tuple]  # source keys whose row is gone (or no longer matches the filter)
    seqs: list[int]  # exact path: the change rows read, to acknowledge once applied
    span: Span | None = None  # span path: the change rows read, as a range
    keys: Sequence[tuple] = ()  # span path: the source key of each upsert
    form: Form | None = None  # how its upserts travel when not as values (Drain.values)

    @property
    def changes(self) -> int:
        return self.span.count if self.span else len(self.seqs)

    def without(self, later: Batch | None) -> Batch:
        """This span without the keys that `later`, read after it, writes again with a newer state:
        their change rows there are still pending until `later` is applied."""
        if later is None or not later.keys and not later.deletes:
            return self
        again = {*later.keys, *later.deletes}
        kept = [(key, row) for key, row in zip(self.keys, self.upserts) if key not in again]
        return self._replace(upserts=[row for _, row in kept], keys=[key for key, _ in kept],
                             deletes=[key for key in self.deletes if key not in again])


class Spans:
    """Reads spans of change rows, each after the last (see Drain.read_span); starts again from
    the oldest change when one comes back empty (a change that commits late is read then)."""

    def __init__(self, drain: Drain):
        self.drain = drain
        self.last: int | None = None
        self.fresh = True  # the last read started from the oldest change

    def next(self, source: Connection, batch_size: int, batches_left: int | None) -> Batch:
        self.fresh = self.last is None
        reach = WINDOW_BATCHES if batches_left is None else max(1, min(WINDOW_BATCHES, batches_left))
        batch = self.drain.read_span(source, self.last, reach * batch_size)
        if batch.span:
            self.last = batch.span.last
        return batch

    def restart(self) -> None:
        self.last = None


def parts(batch: Batch, size: int):
    """The batch's rows as (upserts, deletes) of at most `size` rows together, deletes first."""
    upserts, deletes = batch.upserts, batch.deletes
    first = len(deletes)
    for start in range(0, first + len(upserts), size):
        yield upserts[max(start - first, 0) : max(start + size - first, 0)], deletes[start : start + size]


@contextlib.contextmanager
def committing(conn: Connection):
    """One transaction on a long-lived connection: commit on success, roll back on error."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive numbers: acknowledging a run by BETWEEN touches exactly those rows."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        elif not ranges or seq != ranges[-1][1]:
            ranges.append((seq, seq))
    return ranges


@contextlib.contextmanager
def reaching(where: str, side: str):
    """A refused or dropped connection becomes an error that names the database and says a retry is safe."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        if not (error.connection_invalidated or (isinstance(error, sa.exc.OperationalError) and error.statement is None)):
            raise
        raise UnreachableError(
            f"{where}: the {side} database is unreachable or dropped the connection "
            f"({str(error.orig).strip().splitlines()[0]}); nothing unapplied was acknowledged, "
            "a retry resumes where this run stopped"
        ) from error


class Drain:
    """The tables and statements of one reflect run, built once and used for every batch.

    The source query selects the mapping's fields (plain or computed columns) of the rows
    that match its filter; a changed key whose row is gone or no longer matches is a delete.
    """

    read_spans = True  # where keys compare exactly; False: every drain takes the exact path

    def __init__(self, source: Connection, destination: Connection, src: EngineModule, dst: EngineModule,
                 channel: Channel, table: str, schema: str | None, create_table: bool, deletes: bool,
                 mapping: Mapping | None = None):
        self.channel, self.src, self.dst = channel, src, dst
        self.mapping = mapping = mapping or Mapping()
        self.source_keys = channel.table.key_columns
        self.source_table = source_table = reflect_table(source, src, channel.table.name, channel.table.schema)
        missing_keys = [k for k in self.source_keys if k not in source_table.columns]
        if missing_keys:
            raise SchemaError(
                f"source table {str(channel.table)!r} no longer has the key columns {missing_keys} "
                f"of channel {channel.name!r}; reinstall the channel"
            )
        src.decode_faster(source)
        self.drift = drift.detect(channel, source_table, source.dialect,
                                  bool(src.capture_objects(source, channel.table)))
        if self.drift and not (mapping.evolve and self.drift.evolvable):
            raise drift.refuse(channel, self.drift, mapping.evolve)
        self.plan = plan(mapping, source_table, self.source_keys)
        self.forms, self.extras = src.read_forms([planned.expression for planned in self.plan.columns])
        self.keys = self.plan.keys
        self.on_delete = self.plan.on_delete if deletes else "keep"
        self.changes = change_table(src, channel, [source_table.c[k].type for k in self.source_keys])
        if create_table and not sa.inspect(destination).has_table(table, schema=schema):
            create_destination_table(destination, dst, self.plan.shape(source_table, creating=True), self.keys,
                                     table, schema)
            destination.commit()
        self.target = reflect_table(destination, dst, table, schema)
        if create_table or mapping.evolve:  # new source columns, or another source's columns of a shared table
            self.target = add_columns(destination, dst, self.plan.shape(source_table, creating=False), self.target)
        check_destination(destination, self.plan.shape(source_table, creating=False), self.target, self.keys)
        self.columns = self.plan.names
        self.width = len(self.source_keys)
        sources = {planned.name: planned.expression.type for planned in self.plan.columns}
        needed = value_converters(self.target, sources)
        # (position in a row, conversion) for the columns whose values need one; key positions too
        self.convert = [(i, needed[n]) for i, n in enumerate(self.columns) if n in needed]
        self.key_positions = [self.columns.index(k) for k in self.keys]
        self.key_convert = {self.key_positions.index(i): f for i, f in self.convert if i in self.key_positions}
        # Write through the destination's own column types, only the mirrored columns.
        self.write_table = sa.Table(
            self.target.name, sa.MetaData(),
            *[sa.Column(n, self.target.c[n].type, primary_key=n in self.keys) for n in self.columns],
            schema=self.target.schema,
        )
        self.destination_dialect = destination.dialect
        self.statements = {
            kind: bound_statement(getattr(mapping, f"{kind}_statement"), self.write_table, allowed, kind)
            for kind, allowed in (("upsert", self.columns), ("delete", self.keys))
        }

        changes, keys = self.changes, [self.changes.c[f"key_{i}"] for i in range(1, self.width + 1)]
        oldest = sa.select(changes.c.seq, *keys).order_by(changes.c.seq).limit(sa.bindparam("limit"))
        self.oldest = {False: oldest, True: oldest.where(changes.c.seq > sa.bindparam("after"))}
        # The current source rows of the keys asked for (keys_among), found by the source's key
        # index, where one list can hold the keys.
        self.key_columns = key_columns = [source_table.c[k] for k in self.source_keys]
        self.lookup = None
        if self.width == 1 or src.row_values:
            self.lookup = sa.select(*key_columns, *self.selected())
            if self.plan.condition is not None:
                self.lookup = self.lookup.where(self.plan.condition)
        exact_keys = all(src.exact_lookup(c.type) for c in key_columns)
        self.exact_lookup = self.lookup is not None and exact_keys
        # Spans group change rows by key in the source: only keys that compare exactly can be
        # grouped so (a collation that ignores case would take 'a' and 'A' for one key), and only
        # a driver that counts deleted rows exactly can check the range delete.
        spans = self.read_spans and exact_keys and source.dialect.supports_sane_rowcount
        self.span_queries: dict[bool, sa.Select] | None = None  # by whether they read after a seq
        self.values = Form(self.converted, self.upsert_rows)
        self.span_form: Form | None = None  # how a span's rows travel, where not as values
        self.shortcuts: dict[int, Callable] = {}  # fields read as the driver returns them (take_shortcuts)
        self.shortcut_form: Form | None = None  # how rows read so travel
        # Where the destination takes lines of text that the source can write for every field, the
        # rows of spans and initial loads travel as that text, never parsed in Python (PostgreSQL
        # from PostgreSQL or MariaDB); else fields may skip their Python values (SQLite to SQLite
        # decimals, datetimes, booleans).
        pairs = self.field_types()
        self.text = None
        if spans and pairs and not self.extras:
            self.text = dst.text_copy(destination, src, self.forms, [target for _, target in pairs])
        if self.text is not None:
            self.span_queries = self.spans_of([self.text.line])
            self.span_form = Form(lambda lines: lines,
                                  self.text.upserter(destination.dialect, self.write_table, self.keys))
        else:
            if pairs is not None:
                self.take_shortcuts(source.dialect, destination.dialect)
            if spans:  # the fields taking shortcuts read as the driver returns them
                self.span_queries = self.spans_of(self.selected(self.shortcuts))
        # The current source row of each change row asked for (by seq), absent if gone or filtered
        # out: exact where the lookup above may not be (collations that ignore case or padding).
        self.current = (
            sa.select(changes.c.seq, self.present(), *self.selected())
            .select_from(changes.outerjoin(source_table, self.same_row(keys)))
            .where(src.in_list([changes.c.seq], "seqs"))
        )
        source.rollback()
        destination.rollback()

    @functools.cached_property
    def write(self) -> Callable[[Connection, list], None]:
        """Upserts rows of values (EngineModule.upserter), prepared at the first write for every
        later one: a drain whose rows travel as text may never write values."""
        return self.dst.upserter(self.destination_dialect, self.write_table, self.keys)

    def take_shortcuts(self, source_dialect: sa.engine.Dialect, destination_dialect: sa.engine.Dialect) -> None:
        """Where the source engine knows a cheaper way from its driver's value of a field to the value
        the destination's driver takes (EngineModule.shortcut), span reads and copies leave that
        field's values as the driver returns them, and their rows take those ways to the destination."""
        conversions = dict(self.convert)
        extended = {i for i, _ in self.extras}
        shortcuts = {}
        for i, (form, name) in enumerate(zip(self.forms, self.columns)):
            target = self.write_table.c[name].type
            shortcut = None if i in extended else self.src.shortcut(form.type, target, destination_dialect)
            if shortcut is not None:
                shortcuts[i] = shortcut(exact_path(form.type, conversions.get(i), target, source_dialect,
                                                   destination_dialect))
        if not shortcuts:
            return
        self.shortcuts = shortcuts
        unprocessed = sa.Table(self.write_table.name, sa.MetaData(), *[
            sa.Column(c.name, sa.types.NullType() if i in shortcuts else c.type, primary_key=c.primary_key)
            for i, c in enumerate(self.write_table.columns)
        ], schema=self.write_table.schema)
        ways = sorted({**conversions, **shortcuts}.items())
        self.span_form = self.shortcut_form = Form(lambda rows: convert_rows(rows, ways),
                                                   self.dst.upserter(destination_dialect, unprocessed, self.keys))

    def carriers(self, source_dialect: sa.engine.Dialect, destination_dialect: sa.engine.Dialect
                 ) -> dict[int, Callable] | None:
        """For each field whose values the row path converts, by position: the function that takes a
        value as the source's driver returns it to the one the row path writes (the field's shortcut,
        else its exact path). None where a key field is converted (the keys of a span's deletes are
        compared as stored) or rows are not written as read (field_types)."""
        pairs = self.field_types()
        if pairs is None:
            return None
        conversions, carried = dict(self.convert), {}
        for i, (form, pair) in enumerate(zip(self.forms, pairs)):
            if i in conversions or not unchanged(pair, source_dialect):
                if i in self.key_positions:
                    return None
                carried[i] = self.shortcuts.get(i) or exact_path(form.type, conversions.get(i), pair[1],
                                                                 source_dialect, destination_dialect)
        return carried

    def field_types(self) -> list[tuple] | None:
        """Each field's (source, destination) types where rows are written as read: no custom
        statement, and deletes that delete (or none); None otherwise."""
        custom = any(statement is not None for statement in self.statements.values())
        if custom or self.on_delete not in ("delete", "keep"):
            return None
        return [(planned.expression.type, self.write_table.c[planned.name].type) for planned in self.plan.columns]

    def same_row(self, keys: Sequence[sa.ColumnElement]) -> sa.ColumnElement:
        """Joins change-row keys to their source row, as exactly as the capture trigger compares
        keys; a row that stops matching the filter reads as absent: it leaves the mirror."""
        on = [self.src.same_key(self.source_table.c[k], key) for k, key in zip(self.source_keys, keys)]
        if self.plan.condition is not None:
            on.append(self.plan.condition)
        return sa.and_(*on)

    def present(self) -> sa.ColumnElement:
        """The joined source row's first key column: NULL where there is no row (SQL Server selects no boolean)."""
        return self.source_table.c[self.source_keys[0]].label("pdr_present")

    @functools.cached_property
    def value_span_queries(self) -> dict[bool, sa.Select]:
        """The span reads with every field as a value: a text drain's span that its text cannot
        carry is read so (read_span)."""
        return self.spans_of()

    def spans_of(self, fields: list[sa.ColumnElement] | None = None) -> dict[bool, sa.Select]:
        """The span reads (span_rows) from the oldest change and after a seq, with these fields."""
        return {after: self.span_rows(query, fields) for after, query in self.oldest.items()}

    def span_rows(self, oldest: sa.Select, fields: list[sa.ColumnElement] | None = None) -> sa.Select:
        """One row per key of a span of change rows: how many change rows it has there, their lowest
        and highest seq, whether its source row is present (and matches the filter), its key and fields."""
        span = oldest.subquery("pdr_span")
        keys = [span.c[f"key_{i}"] for i in range(1, self.width + 1)]
        grouped = self.src.grouping(
            sa.select(*keys, sa.func.count().label("pdr_changes"), sa.func.min(span.c.seq).label("pdr_first"),
                      sa.func.max(span.c.seq).label("pdr_last"))
            .group_by(*keys)
        ).subquery("pdr_keys")
        grouped_keys = [grouped.c[key.name] for key in keys]
        return (
            sa.select(grouped.c.pdr_changes, grouped.c.pdr_first, grouped.c.pdr_last, self.present(),
                      *grouped_keys, *(fields or self.selected()))
            .select_from(grouped.outerjoin(self.source_table, self.same_row(grouped_keys)))
        )  # unordered: read_span sorts the rows, a source would sort them with their wide fields

    def read_span(self, source: Connection, after: int | None, limit: int, as_values: bool = False) -> Batch:
        """Up to `limit` change rows from the oldest or after seq `after`, read by the source as
        one row per key with its current state, in one statement: no key's state is read before
        its change rows, so a later change of it leaves a change row after `last`, or in the span
        (which the range delete's count then shows). With `as_values`, a text drain's span is
        read as values."""
        text, queries, form, start = self.text, self.span_queries, self.span_form, 4 + self.width
        if as_values:
            text, queries, form = None, self.value_span_queries, None
        if text is not None:
            text.prepare(source)
        self.src.prepare_join(source, self.source_table, limit)
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
            upserts = self.merged([row[start:] for row in present])
        deletes = [tuple(row[4:start]) for row in rows if row[3] is None]
        span = Span(rows[0][1], max(map(last_seq, rows)), sum(map(change_count, rows)))
        return Batch(upserts, deletes, [], span, [tuple(row[4:start]) for row in present], form)

    def selected(self, unprocessed: Collection[int] = ()) -> list[sa.ColumnElement]:
        """The fields as the source reads them, one each, then the extras that `merged` folds in;
        those at positions `unprocessed` as the driver returns them."""
        def field(i: int, form: sa.ColumnElement) -> sa.ColumnElement:
            return sa.type_coerce(form, sa.types.NullType()) if i in unprocessed else form

        return ([field(i, form).label(f"col_{i}") for i, form in enumerate(self.forms)]
                + [form.label(f"col_{i}_more") for i, form in self.extras])

    def merged(self, rows: list[Sequence]) -> list[Sequence]:
        """Rows read by `selected` (from its first field on) as one value per field: an extra's
        value, where there is one, replaces its field's (EngineModule.read_forms)."""
        if not self.extras:
            return rows
        count, out = len(self.forms), []
        for row in rows:
            values = list(row[:count])
            for (i, _), extra in zip(self.extras, row[count:]):
                if extra is not None:
                    values[i] = extra
            out.append(values)
        return out

    def source_rows(self, unprocessed: Collection[int] = (), as_text: bool = False) -> sa.Select:
        """Source key and fields of every row that matches the filter (initial load, reconcile);
        the fields at positions `unprocessed` as the driver returns them (see `selected`), or with
        `as_text` one line of text for them all (a text drain's, see `text`)."""
        query = sa.select(
            *[self.source_table.c[k].label(f"pdr_key_{i}") for i, k in enumerate(self.source_keys, 1)],
            *([self.text.line.label("pdr_line")] if as_text else self.selected(unprocessed)),
        )
        return query if self.plan.condition is None else query.where(self.plan.condition)

    def as_dict(self, row: Sequence) -> dict:
        """A row (values in the order of `columns`) by destination column name."""
        return dict(zip(self.columns, row))

    def changes_after(self, source: Connection, after: int | None, limit: int) -> list:
        """Up to `limit` change rows (seq, key...) in seq order, from the oldest or after seq `after`."""
        return source.execute(self.oldest[after is not None], {"limit": limit, "after": after}).all()

    def read_batch(self, source: Connection, window: Window, batch_size: int) -> Batch:
        """The next batch: the oldest keys of the window, up to `batch_size` change rows with every
        change of theirs the window holds, and the current state of each key.

        Keys are looked up in the source table directly. Where that lookup is exact (integer
        keys, and others the engine vouches for), a key it does not find is gone; otherwise a key
        it does not return as such (gone, filtered out, or stored differently in the source, such
        as 'A' for 'a' under a collation that ignores case) is decided by joining its change row
        to the source, as exactly as the capture trigger compares keys."""
        window.fill(source)
        taken = window.take(batch_size)
        width, found = self.width, {}
        if self.lookup is not None:
            for condition in keys_among(self.src, self.key_columns, list(taken)):
                rows = source.execute(self.lookup.where(condition)).all()
                found.update(zip((row[:width] for row in rows), self.merged([row[width:] for row in rows])))
        upserts = [found[key] for key in taken if key in found]
        missing = {seqs[0]: key for key, seqs in taken.items() if key not in found}
        if self.exact_lookup:
            deletes = list(missing.values())
        else:
            deletes = self.decide(source, missing, upserts)
        source.rollback()  # end the read transaction: the next batch must see new commits
        return Batch(upserts, deletes, [seq for seqs in taken.values() for seq in seqs])

    def decide(self, source: Connection, unsure: dict[int, tuple], upserts: list) -> list[tuple]:
        """Keys (by the seq of one of their change rows) joined to their source rows: the rows found
        are added to `upserts`; returns the keys that are gone."""
        decided = {}
        self.src.prepare_join(source, self.source_table, len(unsure))
        for part in chunks(list(unsure), self.src.max_parameters):
            decided.update((row[0], row) for row in source.execute(self.current, {"seqs": list(part)}).all())
        if len(decided) != len(unsure):  # only this run deletes change rows, under the channel lock
            source.rollback()
            lost = sorted(set(unsure) - set(decided))[:5]
            raise ChannelChangedError(
                f"channel {self.channel.name!r}: change rows {lost} vanished during the drain (was the channel "
                "reinstalled or its change table emptied?); nothing of this batch was acknowledged, run again"
            )
        upserts += self.merged([row[2:] for row in decided.values() if row[1] is not None])
        return [unsure[seq] for seq, row in decided.items() if row[1] is None]

    def converted(self, rows: list[Sequence]) -> list[Sequence]:
        """Rows with the values the destination columns need (README: how types travel)."""
        return convert_rows(rows, self.convert)

    def destination_keys(self, keys: list[tuple]) -> list[tuple]:
        """Source key tuples as the destination's key columns take them."""
        convert = self.key_convert
        if not convert:
            return keys
        return [tuple(convert[j](v) if j in convert else v for j, v in enumerate(key)) for key in keys]

    def apply(self, destination: Connection, upserts: list[Sequence], deletes: list[tuple],
              form: Form | None = None) -> int:
        """Write rows (values in the order of `columns`, or as `form` has them) and apply deletes
        (source key tuples) in one transaction; returns rows deleted or, with on_delete=nullify, cleared."""
        form = form or self.values
        upserts = form.rows(upserts)
        deletes = self.destination_keys(deletes)
        removed = 0
        with committing(destination):
            # Deletes first: in a case-insensitive destination, the old key of a case-only key
            # change names the same row as the new key.
            if deletes and self.on_delete != "keep":
                removed = self.remove(destination, deletes)
            if upserts:
                form.write(destination, upserts)
        return removed

    def remove(self, destination: Connection, keys: list[tuple]) -> int:
        if self.statements["delete"] is not None:
            return destination.execute(self.statements["delete"], [dict(zip(self.keys, k)) for k in keys]).rowcount
        if self.on_delete == "delete":
            return self.dst.delete_keys(destination, self.write_table, self.keys, keys)
        # nullify: clear only this reflection's columns, other sources' columns stay
        columns = [self.write_table.c[k] for k in self.keys]
        cleared = {name: None for name in self.columns if name not in self.keys}
        if not cleared:
            return 0
        return sum(
            destination.execute(sa.update(self.write_table).where(condition).values(cleared)).rowcount
            for condition in keys_among(self.dst, columns, keys)
        )

    def refusal(self, destination: Connection, batch: Batch, error: sa.exc.DBAPIError) -> str:
        """Why the destination refused the batch: the first row it refuses alone, else its error."""
        return self.rejected_row(destination, batch) or str(error.orig).strip()

    def rejected_row(self, destination: Connection, batch: Batch) -> str | None:
        """After a rejected batch: apply its rows, then its deletes, one at a time and rolled back,
        to name the first the destination refuses (by key) and why. None if none fails alone."""
        form = batch.form or self.values
        upserts = form.rows(batch.upserts)
        if batch.form is None:
            named = [[row[i] for i in self.key_positions] for row in upserts]
        else:  # lines of text, or values as the driver takes them: named by their source keys
            named = self.destination_keys(list(batch.keys))
        for row, key in zip(upserts, named):
            error = self.trial(destination, lambda row=row: form.write(destination, [row]))
            if error is not None:
                return f"the row {brief_key(self.keys, key)} was rejected: {error}"
        if self.on_delete != "keep":
            for key in self.destination_keys(batch.deletes):
                error = self.trial(destination, lambda key=key: self.remove(destination, [key]))
                if error is not None:
                    return f"the delete of the row {brief_key(self.keys, key)} was rejected: {error}"
        return None

    def upsert_rows(self, destination: Connection, rows: list[Sequence]) -> None:
        if self.statements["upsert"] is not None:
            destination.execute(self.statements["upsert"], [self.as_dict(row) for row in rows])
        else:
            self.write(destination, rows)

    @staticmethod
    def trial(destination: Connection, write) -> str | None:
        """Run `write` and roll it back; the destination's reason if it refused."""
        try:
            with destination.begin_nested() if destination.in_transaction() else destination.begin():
                write()
                raise _Undo
        except _Undo:
            return None
        except sa.exc.DBAPIError as error:
            if error.connection_invalidated:
                raise
            return str(error.orig).strip()
        finally:
            if destination.in_transaction():
                destination.rollback()

    def apply_batch(self, destination: Connection, batch: Batch, size: int) -> tuple[int, int]:
        """The batch in destination transactions of at most `size` rows; returns (rows removed, transactions)."""
        removed = transactions = 0
        for upserts, deletes in parts(batch, size):
            removed += self.apply(destination, upserts, deletes, batch.form)
            transactions += 1
        return removed, transactions

    def acknowledge(self, source: Connection, batch: Batch) -> bool:
        """Delete the batch's change rows; False (and nothing deleted) if a span's range now holds
        a change that committed after the span was read: it is read again, one change row at a time."""
        span = batch.span
        if span is None:
            with committing(source):
                self.delete_runs(source, seq_ranges(batch.seqs))
            return True
        seq = self.changes.c.seq
        try:
            runs = [(span.first, span.last)]
            if not span.gapless:
                # Another transaction may hold a number in a gap. Read the numbers again: one that
                # committed since shows here; one still open does not, and no delete touches it.
                now = source.scalars(sa.select(seq).where(seq.between(span.first, span.last))).all()
                if len(now) > span.count:
                    source.rollback()
                    return False
                runs = seq_ranges(now)
            removed = self.delete_runs(source, runs)
        except BaseException:
            source.rollback()
            raise
        if removed != span.count:  # only this run deletes change rows, under the channel lock
            source.rollback()
            raise ChannelChangedError(
                f"channel {self.channel.name!r}: {span.count - removed} of the {span.count} change rows read "
                "vanished during the drain (was the channel reinstalled or its change table emptied?); "
                "nothing of this batch was acknowledged, run again"
            )
        source.commit()
        return True

    def delete_runs(self, source: Connection, runs: list[tuple[int, int]]) -> int:
        """Delete the change rows of runs of consecutive seqs (first, last); returns how many. A run
        goes as [first, last) and then last: a range scan that ends past its last row locks the
        next row in MySQL, which may be another transaction's uncommitted change row, and waits."""
        seq, removed = self.changes.c.seq, 0
        for start in range(0, len(runs), 200):
            part = runs[start : start + 200]
            below = [sa.and_(seq >= first, seq < last) for first, last in part if first < last]
            if below:
                removed += source.execute(sa.delete(self.changes).where(sa.or_(*below))).rowcount
            removed += source.execute(sa.delete(self.changes).where(seq.in_([last for _, last in part]))).rowcount
        return removed


@contextlib.contextmanager
def open_drain(source: Engine, destination: Engine, channel: str, destination_table: str | None,
               destination_schema: str | None, *, create_table: bool, deletes: bool, mapping: Mapping | None):
    """A Drain on one source and one destination connection, for work beside the reflect loop
    (snapshot, reconcile); its channel is `drain.channel`, its destination table `drain.target`."""
    src, dst = engine_module(source), engine_module(destination)
    with source.connect() as sconn, destination.connect() as dconn:
        info = load_channel(sconn, src, channel)
        sconn.rollback()
        table = destination_table or info.table.name
        yield Drain(sconn, dconn, src, dst, info, table, destination_schema, create_table, deletes, mapping), sconn, dconn


def add_columns(conn: Connection, module: EngineModule, shape: sa.Table, target: sa.Table) -> sa.Table:
    """Add the shape's columns the destination lacks, as nullable columns; returns the table reflected anew."""
    missing = [c for c in shape.columns if c.name not in target.columns]
    if not missing:
        return target
    where = describe(target.name, target.schema)
    untyped = [c.name for c in missing if isinstance(c.type, sa.types.NullType)]
    if untyped:
        raise ConfigurationError(f"fields {untyped} are computed and missing from {where!r}: give them a 'type'")
    spare = sa.Table(target.name, sa.MetaData(), *[
        sa.Column(c.name, module.ddl_type(generic_type(c, f"{where}.{c.name}"), f"{where}.{c.name}"), nullable=True)
        for c in missing
    ], schema=target.schema)
    for column in spare.columns:
        spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {module.qualified(target.name, target.schema)} ADD {spec}")
    conn.commit()
    log.warning("destination table %r: added columns %s", where, [c.name for c in missing])
    return reflect_table(conn, module, target.name, target.schema)


def bound_statement(sql: str | None, table: sa.Table, allowed: list[str], kind: str):
    """A user statement with its :name parameters bound through the destination column types."""
    if sql is None:
        return None
    statement = sa.text(sql)
    params = list(statement._bindparams)
    unknown = [p for p in params if p not in allowed]
    if unknown:
        raise ConfigurationError(
            f"{kind}_statement: parameters {unknown} are not destination fields; available: {allowed}"
        )
    return statement.bindparams(*[sa.bindparam(p, type_=table.c[p].type) for p in params])


def reflect(
    source: Engine,
    destination: Engine,
    channel: str,
    destination_table: str | None = None,
    destination_schema: str | None = None,
    *,
    batch_size: int = 5000,
    max_batches: int | None = None,
    time_budget: float | None = None,
    deletes: bool = True,
    create_table: bool = False,
    lock_timeout: float = 60.0,
    mapping: Mapping | None = None,
    initial_load: bool = False,
) -> ReflectResult:
    """Apply the channel's pending changes to the destination until drained or a limit is hit.

    `mapping` reshapes rows (core/transform.py). With `initial_load`, rows that existed before
    the channel are copied first, once (core/snapshot.py); an interrupted copy always resumes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    src, dst = engine_module(source), engine_module(destination)
    result = ReflectResult()
    started = time.monotonic()
    with reaching(f"channel {channel!r}", "source"), source.connect() as sconn:
        info = load_channel(sconn, src, channel)
        sconn.rollback()
    table = destination_table or info.table.name
    where = reflection(channel, info.table, table, destination_schema)
    with contextlib.ExitStack() as connections:
        with reaching(where, "source"):
            asked = time.monotonic()
            connections.enter_context(src.channel_lock(source, info.schema, channel, lock_timeout))
            if time.monotonic() - asked > 0.5:
                log.info("%s: waited %.1fs for another run to finish draining this channel", where,
                         time.monotonic() - asked)
            sconn = connections.enter_context(source.connect())
        with reaching(where, "destination"):
            dconn = connections.enter_context(destination.connect())
            dconn.scalar(sa.select(1))  # a pooled connection the server dropped fails here, clearly
            dconn.rollback()
        drain = Drain(sconn, dconn, src, dst, info, table, destination_schema, create_table, deletes, mapping)
        if drain.drift:  # the mapping evolves (Drain refused any other drift): refresh the channel
            log.warning("%s: the source table changed (%s); evolving the reflection", where, drain.drift)
            install_channel(source, channel, info.table.name, info.table.schema)
        from airflow_provider_pdr.core.snapshot import run_snapshot, unfinished  # snapshot builds on Drain

        ready = True  # False while a copy is unfinished: changes apply after it, on the next run
        # Rows written before new columns existed lack their values; without triggers, changes were lost.
        refill = bool(drain.drift.added or drain.drift.triggers_missing)
        deadline = None if time_budget is None else started + time_budget
        if initial_load or refill or unfinished(sconn, info.schema, channel):
            loaded = run_snapshot(sconn, dconn, drain, resync=drain.drift.triggers_missing, restart=refill,
                                  chunk_size=batch_size, deadline=deadline, schema=info.schema)
            result.copied = loaded.copied
            result.add_sides(loaded)
            ready = loaded.done
        if ready:
            pace = Pace()
            if not drain_inside(drain, sconn, destination, where, result, pace, batch_size, max_batches, deadline):
                left = None if max_batches is None else max_batches - result.batches
                if drain.text is not None:
                    log.info("%s: rows travel as the source's own text, never parsed in Python", where)
                with young_collections_only():
                    Pipeline(drain, sconn, dconn, where, result, pace).run(batch_size, left, deadline)
            pace.add_to(result)
        with reaching(where, "source"):
            pending = count_pending(sconn, src, info)
        result.lag_seconds = pending.oldest_age_seconds or 0.0
        result.drained = pending.count == 0
    result.seconds = time.monotonic() - started
    log.info("%s: %d upserted, %d deleted in %d batches, lag %.1fs, %s", where, result.upserted,
             result.deleted, result.batches, result.lag_seconds, result.timing())
    return result


@contextlib.contextmanager
def applying_inside(drain: Drain, source: Connection, destination: Engine) -> Iterator[Inside | None]:
    """The statements that apply changes inside the source database, for the block, where its
    connection reaches the destination table (core/inside.py); None where it cannot."""
    with drain.src.sharing(source, destination) as schema:
        carried = None if schema is None else drain.carriers(source.dialect, destination.dialect)
        if carried is None:
            yield None
            return
        inside = Inside(drain, schema, carried)
        drain.src.define_functions(source, inside.functions)
        yield inside


def drain_inside(drain: Drain, source: Connection, destination: Engine, where: str, result: ReflectResult,
                 pace: Pace, batch_size: int, max_batches: int | None, deadline: float | None) -> bool:
    """Apply spans of `batch_size` changes inside the source database while it can (core/inside.py);
    True when that ended the drain (dry, or at a limit), False when the row path takes the rest."""
    if drain.span_queries is None:
        return False
    with reaching(where, "source"), applying_inside(drain, source, destination) as inside:
        if inside is None:
            return False
        log.info("%s: applying changes inside the source database, which reaches the destination table", where)
        spans = 0
        while spans == 0 or ((max_batches is None or spans < max_batches)
                             and (deadline is None or time.monotonic() < deadline)):
            applied = pace.inline(inside.apply, source, batch_size)
            if applied is None:  # the destination refused a row: the row path names it
                return False
            first, last, count, upserted, deleted = applied
            if not count:
                return True
            spans += 1
            result.upserted += upserted
            result.deleted += deleted
            result.batches += 1
            if not drain.acknowledge(source, Batch([], [], [], Span(first, last, count))):
                log.info("%s: another transaction committed late inside the span of changes just applied; "
                         "the rest of this run goes row by row", where)
                return False
            result.changes += count
        return True


@contextlib.contextmanager
def young_collections_only():
    """Pause the garbage collector's automatic runs while batches are drained; the drain runs a
    young-generation collection after each batch instead. Every row read is a new object, and
    the automatic runs that so many new objects set off include full ones, which walk every
    object of the process (an Airflow task holds millions): a sixth of a narrow drain's time."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def writing_thread(drain: Drain) -> ThreadPoolExecutor | InPlace:
    """The thread that writes into the destination while the source is read. SQLite's driver
    gives up the interpreter lock for every row, so it crawls beside a busy thread: with it on
    either side, each write runs in the reading thread, in turn."""
    if drain.src.overlaps and drain.dst.overlaps:
        return ThreadPoolExecutor(1, thread_name_prefix="pdr-apply")
    return InPlace()


class InPlace:
    """An executor that runs what it is given in the calling thread, when its result is asked
    for: a batch is written after the one before it was acknowledged, as in a plain loop."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def submit(function, *args) -> Later:
        return Later(function, args)


class Later:
    """A call made the first time its result is asked for."""

    def __init__(self, function, args):
        self.call = functools.partial(function, *args)

    def result(self):
        if self.call is not None:
            self.value, self.call = self.call(), None
        return self.value


class Pace:
    """Where a drain's or a copy's time goes: `writing` in the writer (destination writes), and
    `reading` in the reader, less its waits for the writer (source reads, acknowledgements)."""

    def __init__(self):
        self.began, self.writing, self.waiting = time.perf_counter(), 0.0, 0.0

    def writer(self, function: Callable) -> Callable:
        """`function`, its run time counted as writing (only the writer adds to it)."""
        def timed(*args):
            began = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.writing += time.perf_counter() - began

        return timed

    def wait(self, applying: Future | Later):
        """The writer's result, the wait for it not counted as reading."""
        began = time.perf_counter()
        try:
            return applying.result()
        finally:
            self.waiting += time.perf_counter() - began

    def inline(self, function: Callable, *args):
        """`function` run here, in the reader, counted as writing."""
        return self.wait(InPlace.submit(self.writer(function), *args))

    def add_to(self, result: Timed) -> None:
        result.reading_seconds += time.perf_counter() - self.began - self.waiting
        result.writing_seconds += self.writing


# A batch in the writer: the batch, the one read after it (Batch.without), and its result.
Flight = tuple[Batch, Batch | None, Future | Later]


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
        drain = self.drain
        reader: Spans | Window = Spans(drain) if drain.span_queries else Window(drain, WINDOW_BATCHES * batch_size)
        planned = 0  # destination transactions of the batches read

        def more() -> bool:  # the limits stop a drain after a batch, never before the first
            return planned == 0 or ((max_batches is None or planned < max_batches)
                                    and (deadline is None or time.monotonic() < deadline))

        def batches_left() -> int | None:  # how many batches a span may hold: one, past the deadline
            if deadline is not None and time.monotonic() >= deadline:
                return 1
            return None if max_batches is None else max_batches - planned

        with writing_thread(drain) as writer:

            def apply(batch: Batch, later: Batch | None = None) -> Flight:
                return batch, later, writer.submit(self.pace.writer(self.write), batch, later, batch_size)

            def exactly() -> Window:
                log.info("%s: another transaction committed late, or is still open, inside the span of "
                         "changes just applied; reading the rest of this run's changes one by one", self.where)
                return Window(drain, WINDOW_BATCHES * batch_size)  # from the oldest: nothing is in flight

            flight: Flight | None = None
            held: Batch | None = None  # a span read, applied once the next read tells which keys come again
            while True:
                batch = None
                if more():
                    with reaching(self.where, "source"):
                        batch = reader.next(self.source, batch_size, batches_left())
                landed = self.land(*flight) if flight is not None else None
                flight = None
                if held is not None:  # written while the batch that landed is acknowledged
                    flight, held = apply(held, batch), None
                if landed is not None and not self.acknowledge(landed):
                    if flight is not None:  # written, not acknowledged: read again with the rest
                        self.land(*flight)
                        flight = None
                    reader = exactly()
                    continue
                if batch is None or not batch.changes:
                    if flight is not None:  # it lands before the drain stops or reads from the oldest again
                        landed, flight = self.land(*flight), None
                        if not self.acknowledge(landed):
                            reader = exactly()
                            continue
                    if batch is None or reader.fresh:
                        return
                    reader.restart()  # dry: look again from the oldest change
                    continue
                planned += -(-(len(batch.upserts) + len(batch.deletes)) // batch_size)
                if batch.span is not None:
                    held = batch
                else:
                    flight = apply(batch)

    def write(self, batch: Batch, later: Batch | None, size: int) -> tuple[Batch, int, int]:
        """In the writer: the batch without the keys `later` writes again, applied; returns it, the rows
        removed and the transactions. The cycles of the batches read so far are collected first
        (young_collections_only), here beside the reads rather than between them."""
        gc.collect(1)
        batch = batch.without(later)
        return (batch, *self.drain.apply_batch(self.destination, batch, size))

    def land(self, batch: Batch, later: Batch | None, applying: Future | Later) -> Batch:
        """Wait for the batch's destination commits (Pipeline.write); returns the batch as applied;
        ApplyError, naming the row, if refused."""
        where, drain = self.where, self.drain
        try:
            with reaching(where, "destination"):
                batch, removed, transactions = self.pace.wait(applying)
        except sa.exc.DBAPIError as error:
            batch = batch.without(later)
            with reaching(where, "destination"):
                why = drain.refusal(self.destination, batch, error)
            raise ApplyError(
                f"{where}: the destination rejected a batch of {len(batch.upserts)} upserts and "
                f"{len(batch.deletes)} deletes, nothing of it was acknowledged: {why}"
            ) from error
        self.result.deleted += removed
        self.result.upserted += len(batch.upserts)
        self.result.batches += transactions
        return batch

    def acknowledge(self, batch: Batch) -> bool:
        """Acknowledge exactly the change rows of a batch that landed; False if they could not be
        (Drain.acknowledge)."""
        with reaching(self.where, "source"):
            if not self.drain.acknowledge(self.source, batch):
                return False
        self.result.changes += batch.changes
        return True


# A span row's count of change rows, first seq and last seq (Drain.span_rows).
change_count, first_seq, last_seq = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def lines_made(lines: Iterable) -> bool:
    """Whether the source made every line of text read: MariaDB makes none longer than its
    max_allowed_packet (NULL instead), and a span or chunk holding one is read again as values."""
    return None not in lines


def convert_rows(rows: list[Sequence], conversions: list[tuple[int, Callable]]) -> list[Sequence]:
    """Rows with the value at each position `i` of `conversions` passed through its function."""
    if not conversions:
        return rows
    out = []
    for row in rows:
        row = list(row)
        for i, convert in conversions:
            row[i] = convert(row[i])
        out.append(row)
    return out


def exact_path(source: sa.types.TypeEngine, convert: Callable | None, destination: sa.types.TypeEngine,
               source_dialect: sa.engine.Dialect, destination_dialect: sa.engine.Dialect) -> Callable:
    """The way a value the source's driver returns for a `source` field goes to the destination's
    driver: SQLAlchemy's result processing, the drain's conversion, then the bind processing.
    The result processor is the one for no reported column type, as SQLite's driver reports none."""
    steps = [step for step in (source._cached_result_processor(source_dialect, None), convert,
                               destination._cached_bind_processor(destination_dialect)) if step is not None]

    def exact(value):
        for step in steps:
            value = step(value)
        return value

    return exact


def reflection(channel: str, source_table, table: str, schema: str | None) -> str:
    """A reflection as log lines and errors name it: its channel, source and destination tables."""
    return f"channel {channel!r} ({source_table} -> {describe(table, schema)})"


def brief_key(names, values) -> str:
    """id=7, line='a': long values cut short, so that one huge key cannot flood a log."""
    def brief(value) -> str:
        text = repr(value)
        return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
    return ", ".join(f"{name}={brief(value)}" for name, value in zip(names, values))


class _Undo(Exception):
    """Raised to roll back a trial write."""
