"""`pdr-lint`: every mistake of a file in one run, each at the line of the key it is about, with
the nearest valid key; YAML syntax errors at line and column; conflicting settings refused naming
both keys; the JSON Schema of a config file, generated from the model, for editors."""

from __future__ import annotations

import json
import re
import textwrap

import jsonschema
import pytest
import yaml

from airflow_provider_pdr.core.errors import ConfigurationError
from airflow_provider_pdr.core.transform import ColumnMapping, ColumnSpec
from airflow_provider_pdr.factory.__main__ import lint_main
from airflow_provider_pdr.factory.config import load_configs
from airflow_provider_pdr.factory.model import config_schema

from tests.support import REPO

HEAD = """\
reflections:
  - name: orders
    source: {conn_id: src, table: orders}
    destination: {conn_id: dst, table: orders_copy}
"""


def problems(tmp_path, text: str) -> list[str]:
    """The file's errors as `line: message` (the file name stripped), in the order reported."""
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    [result] = load_configs([path], env={})
    assert all(error.startswith(f"{path}:") for error in result.errors), result.errors
    return [error.removeprefix(str(path)).removeprefix(":").lstrip() for error in result.errors]


MISTAKES = [
    ("a misspelt key gets the nearest valid one",
     HEAD + "    batch_sise: 10\n",
     ["5: reflection 'orders': key 'batch_sise': unknown key; did you mean 'batch_size'?"]),
    ("a misspelt top-level key",
     HEAD.replace("reflections:", "reflection:") + "",
     ["1: key 'reflection': unknown key (expected ['defaults', 'reflections']); did you mean 'reflections'?",
      "key 'reflections': expected a non-empty list of reflections"]),
    ("a misspelt mapping key, at its own line",
     HEAD + "    mapping:\n      fields: [id]\n      evolv: true\n",
     ["7: reflection 'orders': key 'mapping.evolv': unknown key; did you mean 'evolve'?"]),
    ("a misspelt key of a field",
     HEAD + "    mapping:\n      fields:\n        - id\n        - name: total\n          expresion: a + b\n",
     ["9: reflection 'orders': key 'mapping.fields[1].expresion': unknown key; did you mean 'expression'?"]),
    ("{name: email} is refused",
     HEAD + "    mapping:\n      fields:\n        - id\n        - {name: email}\n",
     ["8: reflection 'orders': key 'mapping.fields[1]': {name: email} is ambiguous: write email to copy that "
      "column as itself, or {name: name, source: email} to write email into a column named name"]),
    ("{source: email} without a destination is refused",
     HEAD + "    mapping:\n      fields: [id, {source: email}]\n",
     ["6: reflection 'orders': key 'mapping.fields[1]': {source: email} is ambiguous: give the destination "
      "column, {name: ..., source: email}, or {name: source, source: email} to write email into a column "
      "named source"]),
    ("every mapping problem in one run, each at its line",
     HEAD + "    mapping:\n"
            "      fields:\n"
            '        - {name: twice, expression: "amount * 2", type: blob}\n'
            '        - {name: both, source: x, expression: "1"}\n'
            "        - 5\n"
            "      on_delete: wipe\n"
            '      filter: ""\n',
     ["7: reflection 'orders': key 'mapping.fields[0].type': type 'blob' is not one of bigint, binary, boolean, "
      "date, datetime, decimal, double, float, int, integer, json, numeric, smallint, string, text, time, "
      "timestamp, timestamptz, uuid, varchar (optionally with (length) or (precision, scale))",
      "8: reflection 'orders': key 'mapping.fields[1].expression': give 'source' or 'expression', not both",
      "9: reflection 'orders': key 'mapping.fields[2]': expected a column name, {destination: source} or "
      "{name: ..., source | expression: ...}, got 5",
      "11: reflection 'orders': key 'mapping.filter': String should have at least 1 character (got '')",
      "10: reflection 'orders': key 'mapping.on_delete': Input should be 'delete', 'nullify' or 'keep' (got 'wipe')"]),
    ("a destination column listed twice, at the second",
     HEAD + "    mapping:\n      fields:\n        - id\n        - {id: code}\n",
     ["8: reflection 'orders': key 'mapping.fields[1]': destination column 'id' is listed twice (also fields[0])"]),
    ("exclude beside fields",
     HEAD + "    mapping:\n      fields: [id]\n      exclude: [note]\n",
     ["7: reflection 'orders': key 'mapping.exclude': 'exclude' applies only when no 'fields' are listed"]),
    ("a key on a computed field",
     HEAD + "    mapping:\n      fields: [{name: id, expression: code + 1, type: integer}]\n      key: [id]\n",
     ["7: reflection 'orders': key 'mapping.key[0]': key column 'id' is a computed field (its 'expression'): "
      "a key must copy a source key column unchanged, as deletes know only the key"]),
    ("deletes: false with on_delete: delete",
     HEAD + "    deletes: false\n    mapping:\n      on_delete: delete\n",
     ["7: reflection 'orders': key 'mapping.on_delete': on_delete 'delete' contradicts deletes: false (deletes "
      "are not mirrored at all): remove one of them"]),
    ("max_wait longer than the default wait_timeout",
     HEAD + "    max_wait: 7200\n",
     ["5: reflection 'orders': key 'max_wait': must be shorter than wait_timeout (3600 s by default), or the "
      "sensor gives up before it: lower max_wait or set wait_timeout"]),
    ("max_wait from the defaults, reported there",
     "defaults:\n  max_wait: 7200\n" + HEAD,
     ["2: key 'defaults.max_wait': must be shorter than wait_timeout (3600 s by default), or the sensor gives "
      "up before it: lower max_wait or set wait_timeout"]),
    ("a tab",
     HEAD + "\tbatch_size: 10\n",
     ["5:1: not valid YAML: found character '\\t' that cannot start any token (while scanning for the next "
      "token); indent with spaces: YAML does not allow tabs"]),
    ("an unquoted ${VAR} inside {...}",
     HEAD.replace("{conn_id: dst,", "{conn_id: ${DWH},"),
     ["4:29: not valid YAML: expected ',' or '}', but got '{' (while parsing a flow mapping); quote a ${...} "
      "value inside {...} or [...], e.g. conn_id: \"${DWH_CONN}\""]),
    ("a misspelt endpoint key and a misspelt reflection key, both in one run",
     HEAD.replace("table: orders}", "tabel: orders}") + "    create_tables: true\n",
     ["3: reflection 'orders': key 'source.table': required key is missing",
      "3: reflection 'orders': key 'source.tabel': unknown key; did you mean 'table'?",
      "5: reflection 'orders': key 'create_tables': unknown key; did you mean 'create_table'?"]),
]


@pytest.mark.parametrize("text, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_at_its_line(tmp_path, text, expected):
    assert problems(tmp_path, text) == expected


def test_the_unambiguous_forms_of_a_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(HEAD + "    mapping:\n      fields:\n        - id\n        - {label: note}\n"
                    "        - {name: name, source: email}\n"
                    "        - {name: gross, expression: a * 2, type: integer}\n")
    [result] = load_configs([path], env={})
    assert result.ok, result.errors
    [reflection] = result.reflections
    assert [(f.name, f.source, f.expression) for f in reflection.column_mapping.fields] == [
        ("id", None, None), ("label", "note", None), ("name", "email", None), ("gross", None, "a * 2")]


def test_the_core_refuses_the_ambiguous_field_too():
    with pytest.raises(ConfigurationError, match=r"^mapping.fields\[1\]: \{name: email\} is ambiguous: write email "):
        ColumnMapping.from_dict({"fields": ["id", {"name": "email"}]})
    assert ColumnMapping.from_dict({"fields": [{"name": "name", "source": "email"}]}).fields == (
        ColumnSpec("name", source="email"),)


def test_problems_and_summary_go_to_stderr(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(HEAD + "    batch_sise: 10\n")
    (tmp_path / "good.yaml").write_text(HEAD.replace("orders", "other"))
    assert lint_main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"ok    {tmp_path / 'good.yaml'}: 1 reflection(s): pdr_other\n"
    assert err == (f"{tmp_path / 'bad.yaml'}:5: reflection 'orders': key 'batch_sise': unknown key; "
                   "did you mean 'batch_size'?\n1 of 2 file(s) invalid\n")


# -- the JSON Schema ---------------------------------------------------------------------------
def test_the_schema_is_printed_by_pdr_lint(capsys):
    assert lint_main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()


def test_the_schema_accepts_the_example_config_and_the_documented_forms():
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((REPO / "dags" / "reflections" / "example.yaml").read_text())
    jsonschema.validate(example, schema)
    documented = HEAD + (
        '    batch_size: "${BATCH}"\n'
        '    start_date: "2025-06-01"\n'
        "    mapping:\n"
        '      fields: [id, {label: note}, {name: gross, expression: a * 2, type: "numeric(14, 2)"}]\n'
        "      key: id\n"
        "      on_delete: nullify\n"
        '    reconcile: {schedule: "@daily", repair: true}\n')
    jsonschema.validate(yaml.safe_load(documented), schema)


@pytest.mark.parametrize("text, complaint", [
    (HEAD + "    batch_sise: 10\n", "Additional properties are not allowed ('batch_sise'"),
    (HEAD + "    batch_size: 0\n", "0 is less than the minimum of 1"),
    (HEAD + "    mapping: {on_delete: wipe}\n", "'wipe' is not one of ['delete', 'nullify', 'keep']"),
    ("defaults: {name: x}\n" + HEAD, "Additional properties are not allowed ('name'"),
])
def test_the_schema_refuses_what_lint_refuses(text, complaint):
    with pytest.raises(jsonschema.ValidationError, match=f"^{re.escape(complaint)}"):
        jsonschema.validate(yaml.safe_load(text), config_schema())
