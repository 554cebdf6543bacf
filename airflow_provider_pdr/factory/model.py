"""The reflection config model: every key a config file may hold, its type, default and meaning.

Validation here reports every problem at the key where it is written: pydantic collects the errors
of each key, and settings that are valid alone but contradict each other are refused at the key
that contradicts (`_conflict`), naming both keys. The JSON Schema of a config file, for editors,
is generated from these models (`config_schema`).

To add a key: add a field to `Reflection` (or `Endpoint`) and pass it on in `factory/dags.py`.
"""

from __future__ import annotations

import datetime as dt
import typing
from typing import Annotated, Any, Callable, Literal

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, WithJsonSchema, field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from airflow_provider_pdr.core.errors import ConfigurationError
from airflow_provider_pdr.core.names import CHANNEL_NAME
from airflow_provider_pdr.core.transform import FIELD_KEYS, ColumnMapping, ColumnSpec, ambiguity, parse_type

SCHEDULE_PRESETS = ("@continuous", "@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
# Keys that identify one reflection and so cannot come from `defaults`.
OWN_KEYS = ("name", "channel")
ENV_VALUE = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"  # a whole `${NAME}` value, substituted before validation


def _not_bool(value: Any) -> Any:
    # YAML `true` is a bool, and Python would happily take it as the number 1.
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def _import_callback(path: str) -> Callable:
    from importlib import import_module

    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{path!r} is not a dotted path such as 'package.module.function'")
    try:
        target = getattr(import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import {path!r}: {type(error).__name__}: {error}") from None
    if not callable(target):
        raise ValueError(f"{path!r} is not callable")
    return target


def _schedule(schedule: str | None) -> str | None:
    from croniter import croniter  # Airflow's own cron parser

    if schedule is None or schedule in SCHEDULE_PRESETS or croniter.is_valid(schedule):
        return schedule
    raise ValueError(f"{schedule!r} is not a cron expression nor one of {', '.join(SCHEDULE_PRESETS)} (or null)")


def _column_type(spec: str) -> str:
    try:
        parse_type(spec, "type")
    except ConfigurationError as error:
        raise ValueError(str(error).removeprefix("type: ")) from None
    return spec


def _names(value: Any) -> Any:
    return [value] if isinstance(value, str) else value  # `key: id` is `key: [id]`


def _field_entry(item: Any) -> Any:
    """A column name or `{destination: source}` as the full form `{name, source}`; refuses `{name: email}`."""
    if isinstance(item, str):
        return {"name": item}
    if isinstance(item, dict):
        if problem := ambiguity(item):
            raise ValueError(problem)
        if len(item) == 1 and next(iter(item)) not in FIELD_KEYS:
            (name, source), = item.items()
            return {"name": name, "source": source}
        return item
    raise ValueError(f"expected a column name, {{destination: source}} or {{name: ..., source | expression: ...}}, "
                     f"got {item!r}")


def _conflict(*problems: tuple[tuple, str, Any]) -> ValidationError:
    """Settings valid alone that contradict each other, each reported at its key as (key, message, value)."""
    return ValidationError.from_exception_data("conflict", [
        InitErrorDetails(type=PydanticCustomError("conflict", message), loc=key, input=value)
        for key, message, value in problems
    ])


Text = Annotated[str, Field(min_length=1, strict=True)]
Name = Annotated[str, Field(pattern=CHANNEL_NAME.pattern, strict=True)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_not_bool)]
Seconds = Annotated[float, Field(gt=0), BeforeValidator(_not_bool)]
CallbackPath = Annotated[str, Field(strict=True)]
ColumnNames = Annotated[list[Text], BeforeValidator(_names, json_schema_input_type=str | list[str])]
# YAML reads `2025-06-01` as a date; an editor sees a string.
StartDate = Annotated[dt.datetime, WithJsonSchema({"type": "string", "anyOf": [{"format": "date"},
                                                                                {"format": "date-time"}]})]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FieldConfig(Model):
    """One destination column: copied from a source column, or computed by a SQL expression."""

    name: Text = Field(description="the destination column")
    source: Text | None = Field(None, description="the source column it copies, by default `name`")
    expression: Text | None = Field(None, description="a SQL expression of the source engine, instead of `source`")
    type: Annotated[str, BeforeValidator(_column_type)] | None = Field(None, description=(
        "the type of a computed column, to create it: `integer`, `text`, `numeric(p, s)`, ..."))

    @model_validator(mode="after")
    def _source_or_expression(self) -> FieldConfig:
        if self.source is not None and self.expression is not None:
            raise _conflict((("expression",), "give 'source' or 'expression', not both", self.expression))
        return self


Rename = Annotated[dict[str, str], Field(min_length=1, max_length=1)]  # {destination: source}
FieldEntry = Annotated[FieldConfig, BeforeValidator(_field_entry, json_schema_input_type=str | Rename | FieldConfig)]


class MappingConfig(Model):
    """How rows are reshaped on their way (see Transforms): `core.transform.ColumnMapping` as YAML writes it."""

    fields: list[FieldEntry] = Field([], description=(
        "destination columns, in order: a column name, `{destination: source}`, or `{name, source}` / "
        "`{name, expression, type}`; none means every source column"))
    exclude: ColumnNames = Field([], description="source columns left out (only without `fields`)")
    key: ColumnNames = Field([], description="destination columns holding the source key, in its order")
    filter: Text | None = Field(None, description="SQL condition on the source row")
    on_delete: Literal["delete", "nullify", "keep"] = Field("delete", description=(
        "what a source delete does to the destination row"))
    evolve: StrictBool = Field(False, description="on schema drift, add new source columns to the destination")
    upsert_statement: Text | None = Field(None, description="SQL run instead of the built-in upsert, per row")
    delete_statement: Text | None = Field(None, description="SQL run instead of the built-in delete, per row")

    @model_validator(mode="after")
    def _consistent(self) -> MappingConfig:
        problems = []
        if self.fields and self.exclude:
            problems.append((("exclude",), "'exclude' applies only when no 'fields' are listed", self.exclude))
        first: dict[str, int] = {}
        for index, item in enumerate(self.fields):
            if item.name in first:
                problems.append((("fields", index), f"destination column {item.name!r} is listed twice "
                                 f"(also fields[{first[item.name]}])", item.name))
            first.setdefault(item.name, index)
        computed = {item.name for item in self.fields if item.expression is not None}
        for index, name in enumerate(self.key):
            if name in computed:
                problems.append((("key", index), f"key column {name!r} is a computed field (its 'expression'): "
                                 "a key must copy a source key column unchanged, as deletes know only the key", name))
        if problems:
            raise _conflict(*problems)
        self.column_mapping()  # the core's own check has the last word
        return self

    def column_mapping(self) -> ColumnMapping:
        values = self.model_dump(exclude={"fields"})
        return ColumnMapping(fields=tuple(ColumnSpec(**f.model_dump()) for f in self.fields), **values)


class Endpoint(Model):
    """A table behind an Airflow connection."""

    conn_id: Text = Field(description="Airflow connection id of the database")
    table: Text = Field(description="the table; a source table needs a primary key")
    schema_: Text | None = Field(None, alias="schema", description=(
        "schema (PostgreSQL, SQL Server) or database (MySQL/MariaDB) of the table; "
        "null means the connection's default"))


class Reconcile(Model):
    """A second DAG, `pdr_<name>_reconcile`, that compares the mirror with its source (and repairs it)."""

    schedule: str | None = Field("@daily", description="when it runs: a cron expression, a preset or null")
    repair: bool = Field(False, description="write the source's rows where the mirror differs, delete extra rows")
    chunk_size: Count = Field(5000, description="rows compared per chunk, each under the channel's lock")

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, schedule: str | None) -> str | None:
        return _schedule(schedule)


class Reflection(Model):
    """One reflection: becomes the DAG `pdr_<name>` (install triggers -> wait for changes -> reflect)."""

    name: Name = Field(description="the DAG id is `pdr_<name>`; unique across all files; not allowed in `defaults`")
    source: Endpoint = Field(description="the source table: `conn_id`, `table`, `schema`")
    destination: Endpoint = Field(description="the mirror table: `conn_id`, `table`, `schema`")
    channel: Name | None = Field(None, description=(  # None means: the reflection's name
        "channel in the source database, by default the reflection's `name`; unique per source connection; "
        "not allowed in `defaults`"))
    schedule: str | None = Field("@continuous", description=(
        "`@continuous` (a new run as soon as one ends), a cron expression, `@hourly`, `@daily`, ... `@once`, "
        "or null (manual runs only)"))
    start_date: StartDate = Field(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc), description=(
        "first possible run; naive values are UTC"))
    batch_size: Count = Field(5000, description=(
        "rows per destination transaction (and change rows per batch read one at a time); a span reads up to "
        "4 × this many change rows"))
    min_changes: Count = Field(1, description="the sensor waits until this many changes are pending...")
    max_wait: Seconds | None = Field(None, description=(
        "...or until the oldest pending change is this old (seconds); shorter than `wait_timeout`"))
    poke_interval: Seconds = Field(30.0, description=(
        "seconds between two checks of the sensor (on PostgreSQL and Firebird a notification also wakes it)"))
    wait_timeout: Seconds = Field(3600.0, description=(  # then the run ends, skipped, and the next one waits again
        "seconds, more than `max_wait`: a sensor that saw too few changes by then is skipped, with `reflect`; "
        "the run ends and the next waits again"))
    deferrable: bool = Field(True, description="wait in the triggerer instead of a worker slot")
    time_budget: Seconds = Field(300.0, description="seconds `reflect` keeps draining while changes arrive")
    deletes: bool = Field(True, description=(
        "mirror deletes (with false, rows deleted in the source stay, and `mapping.on_delete` cannot be set)"))
    create_table: bool = Field(False, description="create the mirror table from the source's columns if missing")
    initial_load: bool = Field(True, description=(  # copy the rows the source table had before its channel, once
        "copy the rows the source table had before its channel, once, before the first drain"))
    mapping: MappingConfig | None = Field(None, description=(
        "reshape rows: `fields`, `exclude`, `key`, `filter`, `on_delete`, `evolve`, `upsert_statement`, "
        "`delete_statement` (see Transforms)"))
    reconcile: Reconcile | None = Field(None, description=(
        "adds a DAG `pdr_<name>_reconcile` that compares the mirror with its source: `schedule`, `repair`, "
        "`chunk_size`"))
    tags: list[Text] = Field([], description="DAG tags, besides `pdr`")
    owner: Text = Field("airflow", description="owner of the tasks")
    retries: Annotated[int, Field(ge=0), BeforeValidator(_not_bool)] = Field(2, description="retries of each task")
    retry_delay: Seconds = Field(60.0, description="seconds between retries")
    on_failure_callback: CallbackPath | None = Field(None, description=(
        "dotted path `package.module.function` of an Airflow callback set on every task, called with the task's "
        "context; imported when the file is loaded, so a typo is a config error"))
    on_success_callback: CallbackPath | None = Field(None, description="as `on_failure_callback`, on success")
    on_retry_callback: CallbackPath | None = Field(None, description="as `on_failure_callback`, on retry")

    @field_validator("on_failure_callback", "on_success_callback", "on_retry_callback")
    @classmethod
    def _importable(cls, path: str | None) -> str | None:
        if path is not None:
            _import_callback(path)
        return path

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, schedule: str | None) -> str | None:
        return _schedule(schedule)

    @field_validator("start_date", mode="after")
    @classmethod
    def _utc_if_naive(cls, value: dt.datetime) -> dt.datetime:
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)

    @model_validator(mode="after")
    def _consistent(self) -> Reflection:
        problems = []
        if self.max_wait is not None and self.max_wait >= self.wait_timeout:
            if "wait_timeout" in self.model_fields_set:
                problems.append((("wait_timeout",), f"must be longer than max_wait ({self.max_wait:g} s), "
                                 "or the sensor gives up before it", self.wait_timeout))
            else:
                problems.append((("max_wait",), f"must be shorter than wait_timeout ({self.wait_timeout:g} s by "
                                 "default), or the sensor gives up before it: lower max_wait or set wait_timeout",
                                 self.max_wait))
        mapping = self.mapping
        if not self.deletes and mapping and "on_delete" in mapping.model_fields_set and mapping.on_delete != "keep":
            problems.append((("mapping", "on_delete"), f"on_delete {mapping.on_delete!r} contradicts deletes: false "
                             "(deletes are not mirrored at all): remove one of them", mapping.on_delete))
        if problems:
            raise _conflict(*problems)
        if self.channel is None:
            object.__setattr__(self, "channel", self.name)
        return self

    @property
    def dag_id(self) -> str:
        return f"pdr_{self.name}"

    @property
    def column_mapping(self) -> ColumnMapping | None:
        return self.mapping.column_mapping() if self.mapping else None

    def callback(self, key: str) -> Callable | None:
        path = getattr(self, key)
        return _import_callback(path) if path else None


def model_at(path: tuple) -> type[BaseModel] | None:
    """The model whose keys are valid at `path` in a reflection, e.g. ("source",) -> Endpoint."""
    model: type[BaseModel] | None = Reflection
    for part in path:
        if isinstance(part, int):
            continue  # the items of a list share its model
        fields = {field.alias or name: field for name, field in model.model_fields.items()}
        model = _model_in(fields[part].annotation) if part in fields else None
        if model is None:
            return None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, map(_model_in, typing.get_args(annotation))), None)


def valid_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _or_reference(node: Any) -> Any:
    """The schema with every number and boolean also allowed as a `${NAME}` string, substituted before validation."""
    if isinstance(node, list):
        return [_or_reference(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _or_reference(value) for key, value in node.items()}
    if node.get("type") not in ("integer", "number", "boolean"):
        return node
    notes = {key: node.pop(key) for key in ("title", "description", "default") if key in node}
    return {**notes, "anyOf": [node, {"type": "string", "pattern": f"^{ENV_VALUE}$"}]}


def config_schema() -> dict:
    """The JSON Schema of a config file, for editors: `defaults` (any reflection key but `name` and
    `channel`) and `reflections`. As either may give `source` and `destination` or their keys, a
    reflection requires only its `name` here; lint checks the merged result."""
    reflection = Reflection.model_json_schema(by_alias=True)
    defs = reflection.pop("$defs")
    defs["Endpoint"].pop("required")
    defs["Reflection"] = {**reflection, "required": ["name"]}
    defaults = {key: value for key, value in reflection["properties"].items() if key not in OWN_KEYS}
    return _or_reference({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "PDR reflection config file",
        "type": "object",
        "additionalProperties": False,
        "required": ["reflections"],
        "properties": {
            "defaults": {"type": ["object", "null"], "additionalProperties": False, "properties": defaults,
                         "description": "applied to every reflection that does not set the key"},
            "reflections": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Reflection"}},
        },
        "$defs": defs,
    })
