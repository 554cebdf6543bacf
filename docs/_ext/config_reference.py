"""A Sphinx directive that writes the reflection config reference from the config model itself.

    ```{config-reference}
    ```

renders one table per model (a reflection, `source`/`destination`, `reconcile`, `mapping`, a field): every key with
its type, default and description, read from the pydantic fields of factory/model.py at build
time, so the reference cannot drift from what the validator accepts.
"""

from __future__ import annotations

import datetime as dt
import types
import typing

from annotated_types import Ge, Gt
from docutils import nodes
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from airflow_provider_pdr.factory.model import Endpoint, FieldConfig, MappingConfig, Reconcile, Reflection

# Each table: a title, the model, and the prefix its keys are written with in a config file.
TABLES = (
    ("A reflection", Reflection, ""),
    ("`source` and `destination`", Endpoint, ""),
    ("`reconcile`", Reconcile, ""),
    ("`mapping`", MappingConfig, ""),
    ("A field of `mapping.fields`, in its full form", FieldConfig, ""),
)
PLAIN_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "mapping",
               dt.datetime: "date or datetime"}


def _unwrap(annotation) -> tuple[object, list, bool]:
    """The bare type under Optional and Annotated, the constraints met on the way, and whether null is allowed."""
    metadata, nullable = [], False
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:  # a nested Field(...) carries its constraints in .metadata
                metadata += getattr(item, "metadata", [item])
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(options) < len(typing.get_args(annotation))
            annotation = options[0]
        else:
            return annotation, metadata, nullable


def type_text(field) -> str:
    annotation, metadata, nullable = _unwrap(field.annotation)
    metadata = [*metadata, *field.metadata]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "mapping"
    elif typing.get_origin(annotation) is list:
        item = _unwrap(typing.get_args(annotation)[0])[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            text = "list of fields"
        else:
            text = "list of " + PLAIN_TYPES.get(item, "value") + "s"
    elif typing.get_origin(annotation) is dict:
        text = "mapping"
    elif typing.get_origin(annotation) is typing.Literal:
        text = "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    else:
        text = PLAIN_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    if any(getattr(m, "pattern", None) for m in metadata):
        text = "name"
    for item in metadata:
        if isinstance(item, Ge):
            text += f" ≥ {item.ge}"
        elif isinstance(item, Gt):
            text += f" > {item.gt}"
    return text + (" or null" if nullable else "")


def default_text(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.datetime):
        return value.date().isoformat() + (" (UTC)" if value.tzinfo else "")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    return [
        (prefix + (field.alias or name), type_text(field), default_text(field), field.description or "")
        for name, field in model.model_fields.items()
    ]


class ConfigReference(SphinxDirective):
    """Parses Markdown tables made from the models, so backquotes in descriptions render as code."""

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for title, model, prefix in TABLES:
            lines += [f"**{title}** ({(model.__doc__ or '').strip()})", "",
                      "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
            for key, kind, default, meaning in rows(model, prefix):
                cells = [f"`{key}`", kind, f"`{default}`" if default != "required" else default, meaning]
                lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
            lines.append("")
        return self.parse_text_to_nodes("\n".join(lines))


def setup(app: Sphinx) -> dict:
    app.add_directive("config-reference", ConfigReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
