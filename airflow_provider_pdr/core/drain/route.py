"""The route a reflection's rows take, chosen once per run: how changes are read (spans grouped
by the source, or the exact key-by-key window), how upserts are written (the source's own text,
driver shortcuts, or values), and whether the in-database path may apply them
(core/drain/in_database.py). Callers and tests narrow the choice with a RoutePolicy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.drain.batch import RowWriter
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.values import convert_rows, exact_path


@dataclass(frozen=True)
class RoutePolicy:
    """Which routes a run may take: each is allowed by default, and one the tables at hand cannot
    take is never taken."""

    spans: bool = True  # False: every change is read by the exact key-by-key window
    in_database: bool = True  # False: rows are always read into Python (core/drain/in_database.py)
    text: bool = True  # False: rows never travel as the source's own text
    shortcuts: bool = True  # False: fields never skip their Python values


ANY_ROUTE = RoutePolicy()
ROW_PATH = RoutePolicy(in_database=False)  # rows read into Python, by every read path and write form
EXACT_PATH = RoutePolicy(spans=False)  # every change read by the exact key-by-key window


@dataclass(frozen=True)
class Route:
    """The route chosen for one run: `span_queries` None reads every change exactly; `text` the
    source's text copy (EngineModule.text_copy) where rows travel as text; `shortcuts` the fields
    read as the driver returns them, by position, and how they are written."""

    policy: RoutePolicy
    span_queries: dict[bool, sa.Select] | None = None  # by whether they read after a seq
    text: object | None = None
    shortcuts: dict[int, Callable] = field(default_factory=dict)
    span_writer: RowWriter | None = None  # how a span's rows travel, where not as values
    shortcut_writer: RowWriter | None = None  # how rows read with shortcuts travel

    def describe(self) -> str:
        read = "spans" if self.span_queries is not None else "the exact window"
        written = "the source's text" if self.text is not None else "shortcuts" if self.shortcuts else "values"
        return f"changes read as {read}, rows written as {written}"


def choose_route(plan: DrainPlan, source: Connection, destination: Connection, policy: RoutePolicy = ANY_ROUTE
                 ) -> Route:
    """The route `policy` allows that costs least. Spans group change rows by key in the source:
    only keys that compare exactly can be grouped so (a collation that ignores case would take 'a'
    and 'A' for one key), and only a driver that counts deleted rows exactly can check the range
    delete."""
    spans = policy.spans and plan.exact_keys and source.dialect.supports_sane_rowcount
    # Where the destination takes lines of text that the source can write for every field, the
    # rows of spans and initial loads travel as that text, never parsed in Python (PostgreSQL
    # from PostgreSQL or MariaDB); else fields may skip their Python values (SQLite to SQLite
    # decimals, datetimes, booleans).
    pairs = plan.field_types()
    text = None
    if policy.text and spans and pairs and not plan.extras:
        text = plan.dst.text_copy(destination, plan.src, plan.forms, [target for _, target in pairs])
    if text is not None:
        writer = RowWriter(lambda lines: lines, text.upserter(destination.dialect, plan.write_table, plan.keys))
        return Route(policy, plan.spans_of([text.line]), text, span_writer=writer)
    shortcuts, writer = {}, None
    if pairs is not None and policy.shortcuts:
        shortcuts, writer = take_shortcuts(plan, source.dialect, destination.dialect)
    # the fields taking shortcuts read as the driver returns them
    span_queries = plan.spans_of(plan.selected(shortcuts)) if spans else None
    return Route(policy, span_queries, None, shortcuts, writer, writer)


def take_shortcuts(plan: DrainPlan, source_dialect: sa.engine.Dialect, destination_dialect: sa.engine.Dialect
                   ) -> tuple[dict[int, Callable], RowWriter | None]:
    """Where the source engine knows a cheaper way from its driver's value of a field to the value
    the destination's driver takes (EngineModule.shortcut), span reads and copies leave that
    field's values as the driver returns them, and their rows take those ways to the destination."""
    conversions = dict(plan.convert)
    extended = {i for i, _ in plan.extras}
    shortcuts = {}
    for i, (form, name) in enumerate(zip(plan.forms, plan.columns)):
        target = plan.write_table.c[name].type
        shortcut = None if i in extended else plan.src.shortcut(form.type, target, destination_dialect)
        if shortcut is not None:
            shortcuts[i] = shortcut(exact_path(form.type, conversions.get(i), target, source_dialect,
                                               destination_dialect))
    if not shortcuts:
        return {}, None
    unprocessed = sa.Table(plan.write_table.name, sa.MetaData(), *[
        sa.Column(c.name, sa.types.NullType() if i in shortcuts else c.type, primary_key=c.primary_key)
        for i, c in enumerate(plan.write_table.columns)
    ], schema=plan.write_table.schema)
    ways = sorted({**conversions, **shortcuts}.items())
    return shortcuts, RowWriter(lambda rows: convert_rows(rows, ways),
                                plan.dst.upserter(destination_dialect, unprocessed, plan.keys))
