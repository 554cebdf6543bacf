"""What travels from a read to a write and an acknowledgement: a batch of rows, the change rows
it answers for (seqs, or a span), and how its upserts are written."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from sqlalchemy.engine import Connection


class Span(NamedTuple):
    """Change rows read as a range: `count` rows with seqs from `first` to `last`."""

    first: int
    last: int
    count: int

    @property
    def gapless(self) -> bool:
        """Every number from first to last was read: no other transaction can hold one of them."""
        return self.count == self.last - self.first + 1


class RowWriter(NamedTuple):
    """How upserts travel: `rows` makes the rows a read returned into the rows `write` takes."""

    rows: Callable[[list], list]
    write: Callable[[Connection, list], None]


class Batch(NamedTuple):
    upserts: list[tuple]  # current rows of the keys that exist, values in the order of DrainPlan.columns
    deletes: list[tuple]  # source keys whose row is gone (or no longer matches the filter)
    seqs: list[int]  # exact path: the change rows read, to acknowledge once applied
    span: Span | None = None  # span path: the change rows read, as a range
    keys: Sequence[tuple] = ()  # span path: the source key of each upsert
    row_writer: RowWriter | None = None  # how its upserts travel when not as values (Writer.values)

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


def parts(batch: Batch, size: int):
    """The batch's rows as (upserts, deletes) of at most `size` rows together, deletes first."""
    upserts, deletes = batch.upserts, batch.deletes
    first = len(deletes)
    for start in range(0, first + len(upserts), size):
        yield upserts[max(start - first, 0) : max(start + size - first, 0)], deletes[start : start + size]
