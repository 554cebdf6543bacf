"""The reflection config model and `pdr-lint`: no Airflow needed, milliseconds each."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_provider_pdr.factory import ConfigError, check, load_configs
from airflow_provider_pdr.factory.__main__ import lint_main

from tests.support import REPO

GOOD = """
defaults:
  source: {conn_id: src}
  destination: {conn_id: dst, schema: mirror}
  batch_size: 200
reflections:
  - name: orders
    source: {table: orders}
    destination: {table: orders_copy}
  - name: customers
    source: {table: customers, schema: sales}
    destination: {table: customers, conn_id: other}
    channel: customers_v2
    batch_size: 10
    deletes: false
    schedule: null
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path, text, env=None, name="r.yaml") -> list[str]:
    path = write(tmp_path, name, text)
    [result] = load_configs([path], env=env or {})
    assert result.reflections == [] or result.ok
    return result.errors


def one(tmp_path, reflection_yaml: str, env=None) -> str:
    """The single error of a file whose defaults are valid and whose one reflection is given."""
    errors = errors_of(tmp_path, "reflections:\n" + textwrap.indent(textwrap.dedent(reflection_yaml), "  "), env)
    assert len(errors) == 1, errors
    return errors[0]


BASE = """\
- name: orders
  source: {conn_id: src, table: orders}
  destination: {conn_id: dst, table: orders_copy}
"""


def test_defaults_merge_into_each_reflection(tmp_path):
    orders, customers = check([write(tmp_path, "a.yaml", GOOD)], env={})
    assert orders.dag_id == "pdr_orders" and orders.channel == "orders"
    assert (orders.source.conn_id, orders.source.table, orders.source.schema_) == ("src", "orders", None)
    assert (orders.destination.conn_id, orders.destination.schema_) == ("dst", "mirror")
    assert orders.batch_size == 200 and orders.deletes is True and orders.schedule == "@continuous"
    assert customers.destination.conn_id == "other" and customers.destination.schema_ == "mirror"
    assert customers.source.schema_ == "sales" and customers.channel == "customers_v2"
    assert (customers.batch_size, customers.deletes, customers.schedule) == (10, False, None)


def test_environment_variables_in_values(tmp_path):
    text = """
    reflections:
      - name: orders
        source: {conn_id: "${SRC}", table: "${TABLE:-orders}"}
        destination: {conn_id: "pre_${SRC}_$${literal}", table: t}
        batch_size: "${BATCH}"
    """
    [r] = check([write(tmp_path, "a.yaml", text)], env={"SRC": "warehouse", "BATCH": "70"})
    assert (r.source.conn_id, r.source.table) == ("warehouse", "orders")
    assert r.destination.conn_id == "pre_warehouse_${literal}"
    assert r.batch_size == 70
    errors = errors_of(tmp_path, text, env={"BATCH": "70"})
    assert errors == [f"{tmp_path / 'r.yaml'}:{line}: reflection 'orders': key '{key}': environment variable 'SRC' "
                      "is not set" for line, key in ((4, "source.conn_id"), (5, "destination.conn_id"))]


@pytest.mark.parametrize("extra, expected", [
    ("  colour: blue", "reflection 'orders': key 'colour': unknown key"),
    ("  batch_size: lots", "reflection 'orders': key 'batch_size': Input should be a valid integer"),
    ("  batch_size: true", "reflection 'orders': key 'batch_size': expected a number, not a boolean"),
    ("  batch_size: 0", "reflection 'orders': key 'batch_size': Input should be greater than or equal to 1"),
    ("  max_wait: -5", "reflection 'orders': key 'max_wait': Input should be greater than 0"),
    ("  max_wait: 600\n  wait_timeout: 60",
     "reflection 'orders': key 'wait_timeout': must be longer than max_wait (600 s), or the sensor gives up before it"),
    ("  deletes: maybe", "reflection 'orders': key 'deletes': Input should be a valid boolean"),
    ("  tags: demo", "reflection 'orders': key 'tags': Input should be a valid list"),
    ("  channel: 'has space'", "reflection 'orders': key 'channel': 'has space' is not a valid name"),
    ("  schedule: every day", "reflection 'orders': key 'schedule': 'every day' is not a cron expression"),
    ("  on_failure_callback: no_such_module.alert",
     "reflection 'orders': key 'on_failure_callback': cannot import 'no_such_module.alert': ModuleNotFoundError"),
    ("  on_retry_callback: os.path.no_such_function",
     "reflection 'orders': key 'on_retry_callback': cannot import 'os.path.no_such_function': AttributeError"),
    ("  on_success_callback: os.sep", "reflection 'orders': key 'on_success_callback': 'os.sep' is not callable"),
])
def test_invalid_values_name_file_reflection_and_key(tmp_path, extra, expected):
    error = one(tmp_path, BASE + extra + "\n")
    key = expected.split("key '")[1].split("'")[0]
    line = 1 + ("reflections:\n" + BASE + extra).splitlines().index(next(
        text for text in (BASE + extra).splitlines() if text.startswith(f"  {key}:")))
    assert error.startswith(f"{tmp_path / 'r.yaml'}:{line}: {expected}"), error


def test_missing_and_nested_unknown_keys(tmp_path):
    errors = errors_of(tmp_path, """
    reflections:
      - name: orders
        source: {conn_id: src, tabel: orders}
    """)
    assert [e.split(": ", 1)[1] for e in errors] == [
        "reflection 'orders': key 'source.table': required key is missing",
        "reflection 'orders': key 'source.tabel': unknown key; did you mean 'table'?",
        "reflection 'orders': key 'destination': required key is missing",
    ]


def test_reflection_without_name_is_named_by_position(tmp_path):
    [error] = errors_of(tmp_path, "reflections:\n" + textwrap.indent(BASE, "  ") +
                        "  - {source: {conn_id: s, table: t}, destination: {conn_id: d, table: t}}\n")
    assert error.endswith("reflection #2 (reflections[1]): key 'name': required key is missing")


def test_defaults_errors_are_reported_once_as_defaults(tmp_path):
    errors = errors_of(tmp_path, """
    defaults: {batch_size: many, colour: red, name: x}
    reflections:
      - {name: a, source: {conn_id: s, table: a}, destination: {conn_id: d, table: a}}
      - {name: b, source: {conn_id: s, table: b}, destination: {conn_id: d, table: b}}
    """)
    assert sorted(e.split(": ", 1)[1] for e in errors) == [
        "key 'defaults.batch_size': Input should be a valid integer, unable to parse string as an integer (got 'many')",
        "key 'defaults.colour': unknown key",
        "key 'defaults.name': cannot be a default; set it on each reflection",
    ]


@pytest.mark.parametrize("text, expected", [
    ("reflections: []", "key 'reflections': expected a non-empty list"),
    ("- just a list", "expected a mapping with the keys ['defaults', 'reflections']"),
    ("reflection: []", "key 'reflection': unknown key"),
    ("reflections: [{name: a, name: b}]", "key 'name' appears twice in one mapping"),
    ("reflections: [{name: a", "not valid YAML"),
])
def test_file_structure_errors(tmp_path, text, expected):
    errors = errors_of(tmp_path, text)
    assert any(expected in e for e in errors), errors
    assert all(e.startswith(str(tmp_path / "r.yaml")) for e in errors)


def test_yaml_anchors_and_merge_keys_may_be_overridden(tmp_path):
    [r] = check([write(tmp_path, "a.yaml", """
    defaults: &common {source: {conn_id: s, table: t}, destination: {conn_id: d, table: t}, batch_size: 10}
    reflections:
      - <<: *common
        name: orders
        batch_size: 20
    """)], env={})
    assert (r.name, r.batch_size, r.source.table) == ("orders", 20, "t")


def test_duplicate_names_in_one_file(tmp_path):
    [error] = errors_of(tmp_path, "reflections:\n" + textwrap.indent(BASE + BASE, "  "))
    assert error.endswith("reflection 'orders': key 'name': duplicate reflection name (also reflections[0])")


def test_duplicates_across_files_invalidate_only_the_later_file(tmp_path):
    first = write(tmp_path, "a.yaml", "reflections:\n" + textwrap.indent(BASE, "  "))
    second = write(tmp_path, "b.yaml", "reflections:\n" + textwrap.indent(
        BASE + "- {name: other, source: {conn_id: src, table: t}, destination: {conn_id: dst, table: t}}\n", "  "))
    a, b = load_configs([tmp_path], env={})
    assert a.ok and [r.name for r in a.reflections] == ["orders"]
    assert b.reflections == []
    assert b.errors == [
        f"{second}:2: reflection 'orders': key 'name': duplicate reflection name (already defined in {first}:2)"]
    with pytest.raises(ConfigError, match="duplicate reflection name"):
        check([tmp_path], env={})


def test_two_reflections_cannot_share_a_channel_of_one_source(tmp_path):
    errors = errors_of(tmp_path, """
    reflections:
      - {name: a, source: {conn_id: s, table: t}, destination: {conn_id: d, table: a}}
      - {name: b, channel: a, source: {conn_id: s, table: t}, destination: {conn_id: d, table: b}}
      - {name: c, channel: a, source: {conn_id: elsewhere, table: t}, destination: {conn_id: d, table: c}}
    """)
    assert [e.split(": ", 1)[1] for e in errors] == [
        f"reflection 'b': key 'channel': channel 'a' on connection 's' is already used by reflection 'a' "
        f"({tmp_path / 'r.yaml'}:3); each reflection needs its own channel"
    ]


def test_one_broken_file_leaves_the_others_valid(tmp_path):
    write(tmp_path, "good.yaml", GOOD)
    write(tmp_path, "bad.yml", "reflections:\n" + textwrap.indent(BASE + "  batch_size: x\n", "  "))
    write(tmp_path, "notes.txt", "not a config file")
    bad, good = load_configs([tmp_path], env={})
    assert (bad.path.name, good.path.name) == ("bad.yml", "good.yaml")
    assert not bad.ok and bad.reflections == []
    assert good.ok and [r.name for r in good.reflections] == ["orders", "customers"]


def test_callbacks_resolve_to_functions(tmp_path):
    [r] = check([write(tmp_path, "a.yaml", "reflections:\n" + textwrap.indent(
        BASE + "  on_failure_callback: os.path.join\n", "  "))], env={})
    import os.path

    assert r.callback("on_failure_callback") is os.path.join and r.callback("on_retry_callback") is None


def test_lint_exit_codes_and_messages(tmp_path, capsys):
    good = write(tmp_path, "good.yaml", GOOD)
    assert lint_main([str(good)]) == 0
    assert "ok    " in capsys.readouterr().out
    bad = write(tmp_path, "bad.yaml", "reflections:\n" + textwrap.indent(BASE + "  colour: x\n", "  "))
    assert lint_main([str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert f"{bad}:5: reflection 'orders': key 'colour': unknown key\n" in out.err  # problems go to stderr
    assert "1 of 2 file(s) invalid" in out.err
    assert lint_main([str(tmp_path / "empty_dir_does_not_exist.yaml")]) == 1


def test_lint_module_command_checks_the_example_config():
    command = [sys.executable, "-m", "airflow_provider_pdr.factory", "lint", str(REPO / "dags" / "reflections")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pdr_demo_orders" in done.stdout


def test_lint_never_imports_airflow(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    code = ("import sys; from airflow_provider_pdr.factory.__main__ import lint_main; "
            f"assert lint_main([{str(tmp_path)!r}]) == 0; print(sorted(m for m in sys.modules if m.startswith('airflow.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
