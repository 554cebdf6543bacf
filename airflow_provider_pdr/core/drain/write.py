"""Writing into the destination: upserts and deletes of a batch in transactions of a size, and,
after a rejected batch, the row the destination refuses alone."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.drain.batch import Batch, RowWriter, parts
from airflow_provider_pdr.core.drain.connections import brief_key, committing
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.keys import keys_among


class _Undo(Exception):
    """Raised to roll back a trial write."""


class Writer:
    """Applies batches to the destination table of a plan."""

    def __init__(self, plan: DrainPlan):
        self.plan = plan
        self.values = RowWriter(plan.converted, self.upsert_rows)  # rows of values, the plainest way

    @functools.cached_property
    def write(self) -> Callable[[Connection, list], None]:
        """Upserts rows of values (EngineModule.upserter), prepared at the first write for every
        later one: a drain whose rows travel as text may never write values."""
        plan = self.plan
        return plan.dst.upserter(plan.destination_dialect, plan.write_table, plan.keys)

    def upsert_rows(self, destination: Connection, rows: list[Sequence]) -> None:
        upsert = self.plan.statements["upsert"]
        if upsert is not None:
            destination.execute(upsert, [self.plan.as_dict(row) for row in rows])
        else:
            self.write(destination, rows)

    def apply(self, destination: Connection, upserts: list[Sequence], deletes: list[tuple],
              row_writer: RowWriter | None = None) -> int:
        """Write rows (values in the order of `columns`, or as `row_writer` has them) and apply deletes
        (source key tuples) in one transaction; returns rows deleted or, with on_delete=nullify, cleared."""
        row_writer = row_writer or self.values
        upserts = row_writer.rows(upserts)
        deletes = self.plan.destination_keys(deletes)
        removed = 0
        with committing(destination):
            # Deletes first: in a case-insensitive destination, the old key of a case-only key
            # change names the same row as the new key.
            if deletes and self.plan.on_delete != "keep":
                removed = self.remove(destination, deletes)
            if upserts:
                row_writer.write(destination, upserts)
        return removed

    def remove(self, destination: Connection, keys: list[tuple]) -> int:
        plan = self.plan
        if plan.statements["delete"] is not None:
            return destination.execute(plan.statements["delete"], [dict(zip(plan.keys, k)) for k in keys]).rowcount
        if plan.on_delete == "delete":
            return plan.dst.delete_keys(destination, plan.write_table, plan.keys, keys)
        # nullify: clear only this reflection's columns, other sources' columns stay
        columns = [plan.write_table.c[k] for k in plan.keys]
        cleared = {name: None for name in plan.columns if name not in plan.keys}
        if not cleared:
            return 0
        return sum(
            destination.execute(sa.update(plan.write_table).where(condition).values(cleared)).rowcount
            for condition in keys_among(plan.dst, columns, keys)
        )

    def apply_batch(self, destination: Connection, batch: Batch, size: int) -> tuple[int, int]:
        """The batch in destination transactions of at most `size` rows; returns (rows removed, transactions)."""
        removed = transactions = 0
        for upserts, deletes in parts(batch, size):
            removed += self.apply(destination, upserts, deletes, batch.row_writer)
            transactions += 1
        return removed, transactions

    def refusal(self, destination: Connection, batch: Batch, error: sa.exc.DBAPIError) -> str:
        """Why the destination refused the batch: the first row it refuses alone, else its error."""
        return self.rejected_row(destination, batch) or str(error.orig).strip()

    def rejected_row(self, destination: Connection, batch: Batch) -> str | None:
        """After a rejected batch: apply its rows, then its deletes, one at a time and rolled back,
        to name the first the destination refuses (by key) and why. None if none fails alone."""
        plan = self.plan
        row_writer = batch.row_writer or self.values
        upserts = row_writer.rows(batch.upserts)
        if batch.row_writer is None:
            named = [[row[i] for i in plan.key_positions] for row in upserts]
        else:  # lines of text, or values as the driver takes them: named by their source keys
            named = plan.destination_keys(list(batch.keys))
        for row, key in zip(upserts, named):
            error = self.trial(destination, lambda row=row: row_writer.write(destination, [row]))
            if error is not None:
                return f"the row {brief_key(plan.keys, key)} was rejected: {error}"
        if plan.on_delete != "keep":
            for key in plan.destination_keys(batch.deletes):
                error = self.trial(destination, lambda key=key: self.remove(destination, [key]))
                if error is not None:
                    return f"the delete of the row {brief_key(plan.keys, key)} was rejected: {error}"
        return None

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
