"""Acknowledging: deleting from the change table exactly the change rows a batch read, once it
is applied. Never "everything up to N" unchecked: a late commit's change row must still be
there for the next batch."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.drain.batch import Batch
from airflow_provider_pdr.core.drain.connections import committing
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.errors import ChannelChangedError


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive numbers: acknowledging a run by BETWEEN touches exactly those rows."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        elif not ranges or seq != ranges[-1][1]:
            ranges.append((seq, seq))
    return ranges


class Acknowledger:
    """Deletes the change rows of applied batches from the plan's change table."""

    def __init__(self, plan: DrainPlan):
        self.plan = plan

    def acknowledge(self, source: Connection, batch: Batch) -> bool:
        """Delete the batch's change rows; False (and nothing deleted) if a span's range now holds
        a change that committed after the span was read: it is read again, one change row at a time."""
        span = batch.span
        if span is None:
            with committing(source):
                self.delete_runs(source, seq_ranges(batch.seqs))
            return True
        seq = self.plan.changes.c.seq
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
                f"channel {self.plan.channel.name!r}: {span.count - removed} of the {span.count} change rows read "
                "vanished during the drain (was the channel reinstalled or its change table emptied?); "
                "nothing of this batch was acknowledged, run again"
            )
        source.commit()
        return True

    def delete_runs(self, source: Connection, runs: list[tuple[int, int]]) -> int:
        """Delete the change rows of runs of consecutive seqs (first, last); returns how many. A run
        goes as [first, last) and then last: a range scan that ends past its last row locks the
        next row in MySQL, which may be another transaction's uncommitted change row, and waits."""
        changes = self.plan.changes
        seq, removed = changes.c.seq, 0
        for start in range(0, len(runs), 200):
            part = runs[start : start + 200]
            below = [sa.and_(seq >= first, seq < last) for first, last in part if first < last]
            if below:
                removed += source.execute(sa.delete(changes).where(sa.or_(*below))).rowcount
            removed += source.execute(sa.delete(changes).where(seq.in_([last for _, last in part]))).rowcount
        return removed
