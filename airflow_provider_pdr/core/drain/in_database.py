"""Draining inside the source database, where its connection also reaches the destination table
(a SQLite destination file is attached to the source's connection): each span of change rows is
applied by statements the database runs itself, and no row is read into Python. A value the row
path would convert (a decimal, a timestamp) passes through the very Python function the row path
would apply to it, which the statements call (in_database_converters), so both paths write the same.

A span is the oldest `batch_size` change rows. One destination transaction deletes the keys
whose source row is gone (or no longer matches the filter), upserts the current rows of the
others, and reads the span's bounds, all in the source's one snapshot. After its commit the
span is acknowledged as the row path acknowledges one (Acknowledger.acknowledge). Anything that
path would handle differently (a late commit in a span's gap) hands the rest of the drain to it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.drain.route import Route
from airflow_provider_pdr.core.engines.base import declared_alike
from airflow_provider_pdr.core.keys import next_page
from airflow_provider_pdr.core.values import exact_path

log = logging.getLogger(__name__)


def unchanged(types: tuple[sa.types.TypeEngine, sa.types.TypeEngine], dialect: sa.engine.Dialect) -> bool:
    """Whether the row path carries a field's values as they are, the drain converting nothing: its
    source and destination column types are declared alike and processed by neither side."""
    return declared_alike(types, dialect) and not any(
        type_._cached_bind_processor(dialect) or type_._cached_result_processor(dialect, None) for type_ in types
    )


def in_database_converters(plan: DrainPlan, route: Route, source_dialect: sa.engine.Dialect,
                           destination_dialect: sa.engine.Dialect) -> dict[int, Callable] | None:
    """For each field whose values the row path converts, by position: the function that takes a
    value as the source's driver returns it to the one the row path writes (the field's shortcut,
    else its exact path). None where the route's policy forbids the in-database path, a key field
    is converted (the keys of a span's deletes are compared as stored) or rows are not written as
    read (DrainPlan.field_types)."""
    pairs = plan.field_types()
    if pairs is None or not route.policy.in_database:
        return None
    conversions, converters = dict(plan.convert), {}
    for i, (form, pair) in enumerate(zip(plan.forms, pairs)):
        if i in conversions or not unchanged(pair, source_dialect):
            if i in plan.key_positions:
                return None
            converters[i] = route.shortcuts.get(i) or exact_path(form.type, conversions.get(i), pair[1],
                                                                 source_dialect, destination_dialect)
    return converters


class InDatabaseApply:
    """The statements that apply one span inside the source database, the destination table
    reached under `schema`; `converters` maps a field's position to the function its values pass
    through (in_database_converters), which the statements call by the name `functions` gives it."""

    def __init__(self, plan: DrainPlan, schema: str, converters: dict[int, Callable]):
        changes = plan.changes
        keys = [changes.c[f"key_{i}"] for i in range(1, plan.width + 1)]
        oldest = sa.select(changes.c.seq, *keys).order_by(changes.c.seq).limit(sa.bindparam("limit"))
        span = oldest.subquery("pdr_span")
        changed_keys = [span.c[key.name] for key in keys]
        target = plan.write_table.to_metadata(sa.MetaData(), schema=schema)
        # Both statements take the span's keys through IN, which drops repeated keys by itself, so
        # the span needs no DISTINCT pass; spans exist only for keys IN finds exactly (exact_lookup).
        self.delete = None
        if plan.on_delete == "delete":
            gone = (sa.select(*changed_keys)
                    .select_from(span.outerjoin(plan.source_table, plan.same_row(changed_keys)))
                    .where(plan.present().is_(None)))
            self.delete = sa.delete(target).where(sa.tuple_(*[target.c[k] for k in plan.keys]).in_(gone))
        self.plan, self.target = plan, target
        called = {i: f"{names.PREFIX}field_{i}" for i in converters}
        self.functions = {called[i]: convert for i, convert in converters.items()}
        self.fields = [getattr(sa.func, called[i])(planned.expression) if i in called
                       else planned.expression for i, planned in enumerate(plan.mapped.columns)]
        self.upsert = self.upsert_of(sa.select(*changed_keys))
        self.bounds = sa.select(sa.func.min(span.c.seq), sa.func.max(span.c.seq), sa.func.count())

    def upsert_of(self, keys: sa.Select) -> sa.Insert:
        """The upsert of the current source rows of `keys` (those the filter keeps)."""
        plan = self.plan
        rows = sa.select(*self.fields).select_from(plan.source_table).where(sa.tuple_(*plan.key_columns).in_(keys))
        if plan.mapped.condition is not None:
            rows = rows.where(plan.mapped.condition)
        return plan.dst.upsert_statement(self.target, plan.keys, rows)

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
        plan = self.plan
        chunk = sa.select(*plan.key_columns)
        if plan.mapped.condition is not None:
            chunk = chunk.where(plan.mapped.condition)
        chunk = next_page(chunk, plan.key_columns, last, limit)

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


@contextlib.contextmanager
def applying_in_database(plan: DrainPlan, route: Route, source: Connection, destination: Engine
                         ) -> Iterator[InDatabaseApply | None]:
    """The statements that apply changes inside the source database, for the block, where its
    connection reaches the destination table; None where it cannot."""
    with plan.src.sharing(source, destination) as schema:
        converters = None if schema is None else in_database_converters(plan, route, source.dialect,
                                                                        destination.dialect)
        if converters is None:
            yield None
            return
        in_database = InDatabaseApply(plan, schema, converters)
        plan.src.define_functions(source, in_database.functions)
        yield in_database
