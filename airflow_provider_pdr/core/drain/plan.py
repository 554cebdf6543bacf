"""The plan of one reflection: its tables, columns, key positions, value converters and
statements, built once from tables already introspected and used for every batch. Building it
reads and writes nothing; nothing changes it once built."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence

import sqlalchemy as sa

from airflow_provider_pdr.core.engines import EngineModule
from airflow_provider_pdr.core.errors import ConfigurationError
from airflow_provider_pdr.core.registry import Channel, change_table
from airflow_provider_pdr.core.transform import ColumnMapping, ColumnPlan
from airflow_provider_pdr.core.values import convert_rows, value_converters


class DrainPlan:
    """The tables and statements of one reflect run.

    The source query selects the mapping's fields (plain or computed columns) of the rows
    that match its filter; a changed key whose row is gone or no longer matches is a delete.
    """

    def __init__(self, channel: Channel, src: EngineModule, dst: EngineModule, mapping: ColumnMapping, mapped: ColumnPlan,
                 source_table: sa.Table, target: sa.Table, deletes: bool, destination_dialect: sa.engine.Dialect):
        self.channel, self.src, self.dst, self.mapping, self.mapped = channel, src, dst, mapping, mapped
        self.source_table, self.target, self.destination_dialect = source_table, target, destination_dialect
        self.source_keys = channel.table.key_columns
        self.forms, self.extras = src.read_forms([planned.expression for planned in mapped.columns])
        self.keys = mapped.keys
        self.on_delete = mapped.on_delete if deletes else "keep"
        self.changes = change_table(src, channel, [source_table.c[k].type for k in self.source_keys])
        self.columns = mapped.names
        self.width = len(self.source_keys)
        sources = {planned.name: planned.expression.type for planned in mapped.columns}
        needed = value_converters(target, sources)
        # (position in a row, conversion) for the columns whose values need one; key positions too
        self.convert = [(i, needed[n]) for i, n in enumerate(self.columns) if n in needed]
        self.key_positions = [self.columns.index(k) for k in self.keys]
        self.key_convert = {self.key_positions.index(i): f for i, f in self.convert if i in self.key_positions}
        # Write through the destination's own column types, only the mirrored columns.
        self.write_table = sa.Table(
            target.name, sa.MetaData(),
            *[sa.Column(n, target.c[n].type, primary_key=n in self.keys) for n in self.columns],
            schema=target.schema,
        )
        self.statements = {
            kind: bound_statement(getattr(mapping, f"{kind}_statement"), self.write_table, allowed, kind)
            for kind, allowed in (("upsert", self.columns), ("delete", self.keys))
        }
        self._plan_reads()
        self._frozen = True

    def _plan_reads(self) -> None:
        changes, keys = self.changes, [self.changes.c[f"key_{i}"] for i in range(1, self.width + 1)]
        oldest = sa.select(changes.c.seq, *keys).order_by(changes.c.seq).limit(sa.bindparam("limit"))
        self.oldest = {False: oldest, True: oldest.where(changes.c.seq > sa.bindparam("after"))}
        # The current source rows of the keys asked for (keys_among), found by the source's key
        # index, where one list can hold the keys.
        self.key_columns = key_columns = [self.source_table.c[k] for k in self.source_keys]
        self.lookup = None
        if self.width == 1 or self.src.row_values:
            self.lookup = sa.select(*key_columns, *self.selected())
            if self.mapped.condition is not None:
                self.lookup = self.lookup.where(self.mapped.condition)
        self.exact_keys = all(self.src.exact_lookup(c.type) for c in key_columns)
        self.exact_lookup = self.lookup is not None and self.exact_keys
        # The current source row of each change row asked for (by seq), absent if gone or filtered
        # out: exact where the lookup above may not be (collations that ignore case or padding).
        self.current = (
            sa.select(changes.c.seq, self.present(), *self.selected())
            .select_from(changes.outerjoin(self.source_table, self.same_row(keys)))
            .where(self.src.in_list([changes.c.seq], "seqs"))
        )

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError(f"a DrainPlan does not change once built (setting {name!r})")
        super().__setattr__(name, value)

    def field_types(self) -> list[tuple] | None:
        """Each field's (source, destination) types where rows are written as read: no custom
        statement, and deletes that delete (or none); None otherwise."""
        custom = any(statement is not None for statement in self.statements.values())
        if custom or self.on_delete not in ("delete", "keep"):
            return None
        return [(planned.expression.type, self.write_table.c[planned.name].type) for planned in self.mapped.columns]

    def same_row(self, keys: Sequence[sa.ColumnElement]) -> sa.ColumnElement:
        """Joins change-row keys to their source row, as exactly as the capture trigger compares
        keys; a row that stops matching the filter reads as absent: it leaves the mirror."""
        on = [self.src.same_key(self.source_table.c[k], key) for k, key in zip(self.source_keys, keys)]
        if self.mapped.condition is not None:
            on.append(self.mapped.condition)
        return sa.and_(*on)

    def present(self) -> sa.ColumnElement:
        """The joined source row's first key column: NULL where there is no row (SQL Server selects no boolean)."""
        return self.source_table.c[self.source_keys[0]].label("pdr_present")

    @functools.cached_property
    def value_span_queries(self) -> dict[bool, sa.Select]:
        """The span reads with every field as a value: a text drain's span that its text cannot
        carry is read so (Reader.read_span)."""
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

    def source_rows(self, unprocessed: Collection[int] = (), line: sa.ColumnElement | None = None) -> sa.Select:
        """Source key and fields of every row that matches the filter (initial load, reconcile);
        the fields at positions `unprocessed` as the driver returns them (see `selected`), or with
        `line` one line of text for them all (a text route's, Route.text)."""
        query = sa.select(
            *[self.source_table.c[k].label(f"pdr_key_{i}") for i, k in enumerate(self.source_keys, 1)],
            *([line.label("pdr_line")] if line is not None else self.selected(unprocessed)),
        )
        return query if self.mapped.condition is None else query.where(self.mapped.condition)

    def as_dict(self, row: Sequence) -> dict:
        """A row (values in the order of `columns`) by destination column name."""
        return dict(zip(self.columns, row))

    def converted(self, rows: list[Sequence]) -> list[Sequence]:
        """Rows with the values the destination columns need (docs/types.md)."""
        return convert_rows(rows, self.convert)

    def destination_keys(self, keys: list[tuple]) -> list[tuple]:
        """Source key tuples as the destination's key columns take them."""
        convert = self.key_convert
        if not convert:
            return keys
        return [tuple(convert[j](v) if j in convert else v for j, v in enumerate(key)) for key in keys]


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
