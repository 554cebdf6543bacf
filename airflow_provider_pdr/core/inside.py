"""Draining inside the source database, where its connection also reaches the destination table
(a SQLite destination file is attached to the source's connection): each span of change rows is
applied by statements the database runs itself, and no row is read into Python. A value the row
path would convert (a decimal, a timestamp) passes through the very Python function the row path
would apply to it, which the statements call (Drain.carriers), so both paths write the same.

A span is the oldest `batch_size` change rows. One destination transaction deletes the keys
whose source row is gone (or no longer matches the filter), upserts the current rows of the
others, and reads the span's bounds, all in the source's one snapshot. After its commit the
span is acknowledged as the row path acknowledges one (Drain.acknowledge). Anything that path
would handle differently (a late commit in a span's gap) hands the rest of the drain to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import declared_alike
from airflow_provider_pdr.core.keys import next_page

log = logging.getLogger(__name__)


def unchanged(types: tuple[sa.types.TypeEngine, sa.types.TypeEngine], dialect: sa.engine.Dialect) -> bool:
    """Whether the row path carries a field's values as they are, the drain converting nothing: its
    source and destination column types are declared alike and processed by neither side."""
    return declared_alike(types, dialect) and not any(
        type_._cached_bind_processor(dialect) or type_._cached_result_processor(dialect, None) for type_ in types
    )


class Inside:
    """The statements that apply one span inside the source database, the destination table
    reached under `schema`; `carried` maps a field's position to the function its values pass
    through (Drain.carriers), which the statements call by the name `functions` gives it."""

    def __init__(self, drain, schema: str, carried: dict[int, Callable]):
        changes = drain.changes
        keys = [changes.c[f"key_{i}"] for i in range(1, drain.width + 1)]
        oldest = sa.select(changes.c.seq, *keys).order_by(changes.c.seq).limit(sa.bindparam("limit"))
        span = oldest.subquery("pdr_span")
        changed_keys = [span.c[key.name] for key in keys]
        target = drain.write_table.to_metadata(sa.MetaData(), schema=schema)
        # Both statements take the span's keys through IN, which drops repeated keys by itself, so
        # the span needs no DISTINCT pass; spans exist only for keys IN finds exactly (exact_lookup).
        self.delete = None
        if drain.on_delete == "delete":
            gone = (sa.select(*changed_keys)
                    .select_from(span.outerjoin(drain.source_table, drain.same_row(changed_keys)))
                    .where(drain.present().is_(None)))
            self.delete = sa.delete(target).where(sa.tuple_(*[target.c[k] for k in drain.keys]).in_(gone))
        self.drain, self.target = drain, target
        called = {i: f"{names.PREFIX}field_{i}" for i in carried}
        self.functions = {called[i]: carry for i, carry in carried.items()}
        self.fields = [getattr(sa.func, called[i])(planned.expression) if i in called
                       else planned.expression for i, planned in enumerate(drain.plan.columns)]
        self.upsert = self.upsert_of(sa.select(*changed_keys))
        self.bounds = sa.select(sa.func.min(span.c.seq), sa.func.max(span.c.seq), sa.func.count())

    def upsert_of(self, keys: sa.Select) -> sa.Insert:
        """The upsert of the current source rows of `keys` (those the filter keeps)."""
        drain = self.drain
        rows = sa.select(*self.fields).select_from(drain.source_table).where(sa.tuple_(*drain.key_columns).in_(keys))
        if drain.plan.condition is not None:
            rows = rows.where(drain.plan.condition)
        return drain.dst.upsert_statement(self.target, drain.keys, rows)

    def apply(self, source: Connection, limit: int) -> tuple[int, int, int, int, int] | None:
        """Apply the oldest `limit` change rows in one transaction; returns their (first seq, last seq,
        count, rows upserted, rows deleted), count 0 when there are none; None, with nothing
        written, if the destination refused a row (the row path then names it)."""
        values = {"limit": limit}

        def statements():
            deleted = source.execute(self.delete, values).rowcount if self.delete is not None else 0
            upserted = source.execute(self.upsert, values).rowcount
            return (*source.execute(self.bounds, values).one(), upserted, deleted)

        applied = self.attempt(source, statements, "a span")
        if applied is not None:
            source.commit()
        return applied

    def copy(self, source: Connection, last: tuple | None, limit: int) -> list[tuple] | None:
        """An initial load's chunk: upsert the `limit` source rows after key `last`, in key order,
        among those the filter keeps, and leave the transaction open (the copy's progress commits
        with it); returns their keys, in order ([] past the last row); None, with nothing
        written, if the destination refused a row."""
        drain = self.drain
        chunk = sa.select(*drain.key_columns)
        if drain.plan.condition is not None:
            chunk = chunk.where(drain.plan.condition)
        chunk = next_page(chunk, drain.key_columns, last, limit)

        def statements():
            source.execute(self.upsert_of(chunk))  # written first: its keys are read in the same snapshot
            return [tuple(key) for key in source.execute(chunk)]

        return self.attempt(source, statements, "a chunk")

    @staticmethod
    def attempt(source: Connection, statements: Callable, what: str):
        """What `statements()` returns; None, all of it rolled back, if the database refused one."""
        try:
            return statements()
        except sa.exc.DBAPIError as error:
            source.rollback()
            if error.connection_invalidated:
                raise
            log.info("%s applied inside the source database was refused (%s); applying it row by row",
                     what, str(error.orig).strip())
            return None
