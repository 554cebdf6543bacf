"""How a reflection reshapes rows on their way: destination fields, key binding, row filter,
what a delete does, schema evolution and custom statements.

A `ColumnMapping` is plain data (what a YAML file holds), validated here with errors naming the
key. `plan_columns()` turns it, with the source table, into the select list of the source query and
the shape of the destination table.

- fields: destination columns, each from a source column (a rename) or from a SQL
  expression evaluated in the source query (a computed column); no fields means every
  source column under its own name, minus `exclude` (a drop).
- key: the destination columns holding the source key, in the source key's order. By
  default the fields that carry the source key columns.
- filter: a SQL condition on the source row; a row that does not (or no longer) match is
  absent from the mirror.
- on_delete: what a source delete (or a row leaving the filter) does to the destination row:
  ``delete`` it, ``nullify`` this reflection's columns only (several reflections writing
  disjoint columns of one table), or ``keep`` it.
- evolve: on schema drift, add new source columns to the destination instead of failing.
- upsert_statement / delete_statement: SQL run against the destination instead of the
  built-in upsert/delete, once per row, with the fields bound as ``:name`` parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AnyMapping
from collections.abc import Sequence
from dataclasses import dataclass, field, fields as dataclass_fields

import sqlalchemy as sa

from airflow_provider_pdr.core.errors import ConfigurationError
from airflow_provider_pdr.core.schema import describe

ON_DELETE = ("delete", "nullify", "keep")

# Type names a computed field may declare, so that a destination table can be created for it.
TYPES = {
    "integer": sa.Integer, "int": sa.Integer, "bigint": sa.BigInteger, "smallint": sa.SmallInteger,
    "text": sa.Text, "string": sa.String, "varchar": sa.String, "numeric": sa.Numeric, "decimal": sa.Numeric,
    "float": sa.Double, "double": sa.Double, "boolean": sa.Boolean, "date": sa.Date, "time": sa.Time,
    "datetime": sa.DateTime, "timestamp": sa.DateTime, "timestamptz": lambda: sa.DateTime(timezone=True),
    "json": sa.JSON, "binary": sa.LargeBinary, "uuid": sa.Uuid,
}
TYPE_SPEC = re.compile(r"^\s*([a-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$", re.IGNORECASE)


def parse_type(spec: str, where: str) -> sa.types.TypeEngine:
    match = TYPE_SPEC.match(spec) if isinstance(spec, str) else None
    if not match or match.group(1).lower() not in TYPES:
        raise ConfigurationError(
            f"{where}: type {spec!r} is not one of {', '.join(sorted(TYPES))} (optionally with (length) "
            "or (precision, scale))"
        )
    name, *args = match.groups()
    args = [int(a) for a in args if a is not None]
    try:
        return TYPES[name.lower()](*args)
    except TypeError:
        raise ConfigurationError(f"{where}: type {spec!r} takes no such arguments") from None


@dataclass(frozen=True)
class ColumnSpec:
    """One destination column: from source column `source` (default: `name`) or `expression`."""

    name: str
    source: str | None = None
    expression: str | None = None
    type: str | None = None  # needed only to create the destination column of an expression

    def check(self, where: str) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigurationError(f"{where}: 'name' must be a non-empty string, got {self.name!r}")
        if self.source is not None and self.expression is not None:
            raise ConfigurationError(f"{where} ({self.name!r}): give 'source' or 'expression', not both")
        for key in ("source", "expression"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{where} ({self.name!r}): {key!r} must be a non-empty string")
        if self.type is not None:
            parse_type(self.type, f"{where} ({self.name!r})")


@dataclass(frozen=True)
class ColumnMapping:
    fields: tuple[ColumnSpec, ...] = ()
    exclude: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    filter: str | None = None
    on_delete: str = "delete"
    evolve: bool = False
    upsert_statement: str | None = None
    delete_statement: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "key", tuple(self.key))
        self.check()

    def check(self, where: str = "mapping") -> None:
        if self.fields and self.exclude:
            raise ConfigurationError(f"{where}: 'exclude' applies only when no 'fields' are listed")
        seen = set()
        for i, item in enumerate(self.fields):
            if not isinstance(item, ColumnSpec):
                raise ConfigurationError(f"{where}.fields[{i}]: expected a field, got {item!r}")
            item.check(f"{where}.fields[{i}]")
            if item.name in seen:
                raise ConfigurationError(f"{where}.fields[{i}]: destination column {item.name!r} is listed twice")
            seen.add(item.name)
        if self.on_delete not in ON_DELETE:
            raise ConfigurationError(f"{where}.on_delete: {self.on_delete!r} is not one of {', '.join(ON_DELETE)}")
        for key in ("filter", "upsert_statement", "delete_statement"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigurationError(f"{where}.{key}: must be a non-empty SQL string")
        if not isinstance(self.evolve, bool):
            raise ConfigurationError(f"{where}.evolve: must be true or false, got {self.evolve!r}")

    @classmethod
    def from_dict(cls, data: AnyMapping | None, where: str = "mapping") -> ColumnMapping:
        """From plain data (YAML): fields as names, {name: source} pairs or full dicts."""
        if data is None:
            return cls()
        if not isinstance(data, AnyMapping):
            raise ConfigurationError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclass_fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        values["fields"] = tuple(_field(item, f"{where}.fields[{i}]") for i, item in enumerate(data.get("fields") or ()))
        for key in ("exclude", "key"):
            items = data.get(key) or ()
            if isinstance(items, str):
                items = (items,)
            if not isinstance(items, Sequence) or not all(isinstance(x, str) for x in items):
                raise ConfigurationError(f"{where}.{key}: expected a list of column names, got {items!r}")
            values[key] = tuple(items)
        try:
            return cls(**values)
        except ConfigurationError as error:  # name the key where the user wrote it
            message = str(error)
            raise ConfigurationError(
                where + message[len("mapping"):] if message.startswith("mapping") else f"{where}: {message}"
            ) from None


FIELD_KEYS = ("name", "source", "expression", "type")


def ambiguity(item: AnyMapping) -> str | None:
    """Why a one-key field such as `{name: email}` is refused, or None: it reads both as the full
    form ("copy email") and as `{destination: source}` ("write email into name")."""
    if len(item) != 1 or next(iter(item)) not in FIELD_KEYS:
        return None
    (key, value), = item.items()
    meant = f"{{name: {key}, source: {value}}} to write {value} into a column named {key}"
    if key == "name":
        return f"{{name: {value}}} is ambiguous: write {value} to copy that column as itself, or {meant}"
    return f"{{{key}: {value}}} is ambiguous: give the destination column, {{name: ..., {key}: {value}}}, or {meant}"


def _field(item, where: str) -> ColumnSpec:
    if isinstance(item, str):
        return ColumnSpec(item)
    if isinstance(item, AnyMapping):
        if problem := ambiguity(item):
            raise ConfigurationError(f"{where}: {problem}")
        if set(item) <= set(FIELD_KEYS) and "name" in item:
            return ColumnSpec(**item)
        if len(item) == 1:  # {destination: source}
            (name, source), = item.items()
            if isinstance(source, str):
                return ColumnSpec(name, source=source)
        raise ConfigurationError(
            f"{where}: expected a column name, {{destination: source}} or a dict with 'name' and "
            f"optionally 'source', 'expression', 'type'; got {dict(item)!r}"
        )
    raise ConfigurationError(f"{where}: expected a column name or a dict, got {item!r}")


@dataclass
class PlannedColumn:
    name: str  # destination column
    expression: sa.ColumnElement  # what the source query selects for it
    source: str | None  # the source column it copies, None for a computed column
    type: sa.types.TypeEngine | None  # the type to create it with
    nullable: bool = True


@dataclass
class ColumnPlan:
    columns: list[PlannedColumn]
    keys: tuple[str, ...]  # destination key columns, aligned with the source key
    condition: sa.ColumnElement | None  # the row filter, None for every row
    on_delete: str
    uses: set[str] = field(default_factory=set)  # source columns named by the fields

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def shape(self, source: sa.Table, creating: bool) -> sa.Table:
        """A table with the destination's columns typed from the source (to create or check one)."""
        columns = []
        for planned in self.columns:
            if planned.type is None:
                if creating:
                    raise ConfigurationError(
                        f"field {planned.name!r} is computed: give it a 'type' so the destination table can be "
                        "created, or create the table yourself"
                    )
                type_ = sa.types.NullType()
            else:
                type_ = planned.type
            columns.append(sa.Column(planned.name, type_, primary_key=planned.name in self.keys,
                                     nullable=planned.nullable and planned.name not in self.keys))
        return sa.Table(source.name, sa.MetaData(), *columns, schema=source.schema)


def plan_columns(mapping: ColumnMapping, source: sa.Table, source_keys: Sequence[str]) -> ColumnPlan:
    where = f"source table {describe(source.name, source.schema)!r}"
    columns: list[PlannedColumn] = []
    uses: set[str] = set()

    def column(name: str, dest: str) -> PlannedColumn:
        if name not in source.columns:
            raise ConfigurationError(
                f"field {dest!r}: {where} has no column {name!r}; it has {[c.name for c in source.columns]}"
            )
        uses.add(name)
        col = source.c[name]
        return PlannedColumn(dest, col, name, col.type, col.nullable)

    if mapping.fields:
        for item in mapping.fields:
            if item.expression is not None:
                type_ = parse_type(item.type, item.name) if item.type else None
                columns.append(PlannedColumn(item.name, sa.literal_column(f"({item.expression})", type_), None, type_))
            else:
                columns.append(column(item.source or item.name, item.name))
    else:
        for name in mapping.exclude:
            if name not in source.columns:
                raise ConfigurationError(f"exclude: {where} has no column {name!r}")
            if name in source_keys:
                raise ConfigurationError(f"exclude: {name!r} is part of the key of {where} and cannot be dropped")
        columns = [column(c.name, c.name) for c in source.columns if c.name not in mapping.exclude]

    keys = mapping.key or tuple(_default_key(columns, k, where) for k in source_keys)
    if len(keys) != len(source_keys):
        raise ConfigurationError(
            f"key: {list(keys)} must name one destination column per source key column {list(source_keys)}"
        )
    by_name = {c.name: c for c in columns}
    for dest, src in zip(keys, source_keys):
        if dest not in by_name:  # a bound key column not listed in fields is added
            columns.insert(0, column(src, dest))
            by_name[dest] = columns[0]
        elif by_name[dest].source != src:
            raise ConfigurationError(
                f"key: destination column {dest!r} must copy the source key column {src!r} unchanged "
                "(deletes know only the key)"
            )
    condition = sa.literal_column(f"({mapping.filter})", sa.Boolean) if mapping.filter else None
    return ColumnPlan(columns, tuple(keys), condition, mapping.on_delete, uses)


def _default_key(columns: list[PlannedColumn], source_key: str, where: str) -> str:
    for planned in columns:
        if planned.source == source_key:
            return planned.name
    return source_key  # added by plan_columns() as a column of its own name
