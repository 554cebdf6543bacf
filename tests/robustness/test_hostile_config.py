"""Hostile reflection configs: YAML that tries to run code or explode, names shaped like SQL
injection, environment references that try to smuggle values. Each is refused with an error
naming the file (and key), or kept verbatim to be quoted later; nothing is executed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_provider_pdr.factory import load_configs
from airflow_provider_pdr.factory.config import parse_config

HOSTILE_TABLE = 'x"; DROP TABLE victim; --'


def errors(text: str, env=None) -> list[str]:
    return parse_config(text, Path("hostile.yaml"), env or {}).errors


def test_yaml_tags_that_would_run_code_are_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system"):
        found = errors(f'reflections:\n  - name: {tag} ["touch {marker}"]\n')
        assert found and "hostile.yaml" in found[0] and "not valid YAML" in found[0], found
    assert not marker.exists()


@pytest.mark.parametrize("levels", [9, 20])
def test_an_alias_bomb_is_refused_at_once(levels):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    text = "defaults:\n  tags:\n" + "".join(f"    {line}\n" for line in lines) + "reflections: [{name: r}]\n"
    started = time.monotonic()
    found = errors(text)
    assert found == ["hostile.yaml: too large: its anchors and aliases expand to more than 200000 values"]
    assert time.monotonic() - started < 30, "walking the expansion would take hours"


@pytest.mark.parametrize("channel", ["a'; DROP TABLE victim; --", "x y", "`x`", "[x]", "x/*", "é"])
def test_injection_shaped_channel_and_reflection_names_are_refused_naming_the_key(channel):
    text = (f"reflections:\n  - name: ok\n    channel: {channel!r}\n"
            "    source: {conn_id: src, table: t}\n    destination: {conn_id: dst, table: t}\n"
            f"  - name: {channel!r}\n"
            "    source: {conn_id: src, table: u}\n    destination: {conn_id: dst, table: u}\n")
    found = errors(text)
    assert any("hostile.yaml:3" in e and "'channel'" in e for e in found), found
    assert any("hostile.yaml:6" in e and "'name'" in e for e in found), found


def test_injection_shaped_table_names_are_kept_verbatim_to_be_quoted(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "reflections:\n  - name: orders\n"
        f"    source: {{conn_id: src, table: '{HOSTILE_TABLE}', schema: 'public; --'}}\n"
        "    destination: {conn_id: dst, table: '${TABLE}'}\n"
    )
    [result] = load_configs([path], env={"TABLE": "t`; DROP TABLE victim; #"})
    assert result.errors == []
    [reflection] = result.reflections
    assert reflection.source.table == HOSTILE_TABLE and reflection.source.schema_ == "public; --"
    # An environment value is data: it is substituted once, never expanded again or parsed as YAML.
    assert reflection.destination.table == "t`; DROP TABLE victim; #"
    [result] = load_configs([path], env={"TABLE": "${HOME}"})
    assert result.reflections[0].destination.table == "${HOME}"
