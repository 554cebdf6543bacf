"""Reflection config files: YAML in, validated reflections out, errors that name file, reflection and key.

A config file holds optional `defaults` and a list of `reflections`; every reflection gets the
defaults it does not override (`source` and `destination` are merged key by key). Values may
reference environment variables as `${NAME}` or `${NAME:-fallback}` (`$$` is a literal `$`).

Nothing here imports Airflow, so files can be checked where Airflow does not run (`pdr-lint`).
The keys and their validation are the model's (`factory/model.py`); here each error is placed at the
line of the key it is about.
"""

from __future__ import annotations

import difflib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import ValidationError

from airflow_provider_pdr.factory.model import (  # noqa: F401 (Endpoint, Reconcile: imported from here too)
    OWN_KEYS, Endpoint, Reconcile, Reflection, model_at, valid_keys,
)

CONFIG_SUFFIXES = (".yaml", ".yml")
TOP_LEVEL_KEYS = ("defaults", "reflections")
# Values a config file may hold once its YAML aliases are expanded (thousands of reflections).
MAX_VALUES = 200_000
ENV_REFERENCE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


class ConfigError(ValueError):
    """One or more config files are invalid; the message lists every problem, one per line."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid reflection config:\n" + "\n".join(f"  {e}" for e in errors))


Key = tuple  # a path into a config file: ("reflections", 0, "source", "table")


@dataclass
class ConfigFile:
    """What one file yielded: its valid reflections, or the errors that make it invalid."""

    path: Path
    reflections: list[Reflection] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lines: dict[Key, int] = field(default_factory=dict)  # where each key is written
    positions: dict[str, int] = field(default_factory=dict)  # reflection name -> index in `reflections:`

    @property
    def ok(self) -> bool:
        return not self.errors

    def locate(self, key: Key) -> str:
        """`file:line` of the key, or of the nearest enclosing key that is written in the file."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.lines:
                return f"{self.path}:{self.lines[key[:end]]}"
        return str(self.path)

    def error(self, key: Key, message: str) -> None:
        self.errors.append(f"{self.locate(key)}: {message}")


# --- YAML -----------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:  # the mapping's own keys: a `<<` merge may still be overridden
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark,
            )
        seen[key] = True
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _expands_beyond(node: yaml.Node, limit: int) -> bool:
    """True if the document, every alias expanded, holds more than `limit` values: a few lines
    of nested aliases (a "billion laughs") would otherwise take hours to walk."""
    stack, count = [node], 0
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(node, yaml.MappingNode):
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    return False


def _key_lines(node: yaml.Node, key: Key = (), lines: dict | None = None) -> dict[Key, int]:
    """The line (1-based) where every key and list item of a composed YAML document is written."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        children = [(k.value, k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
    elif isinstance(node, yaml.SequenceNode):
        children = [(i, v, v) for i, v in enumerate(node.value)]
    else:
        return lines
    for part, written, child in children:
        lines.setdefault(key + (part,), written.start_mark.line + 1)
        _key_lines(child, key + (part,), lines)
    return lines


def _substitute(value: Any, env: Mapping[str, str], key: Key, missing: list[tuple[Key, str]]) -> Any:
    """Replace `${NAME}` / `${NAME:-fallback}` in every string value (never in keys)."""
    if isinstance(value, dict):
        return {k: _substitute(v, env, key + (k,), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, key + (i,), missing) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        name, fallback = match.group(1), match.group(2)
        if name is None:
            return "$"
        if name in env:
            return env[name]
        if fallback is not None:
            return fallback
        missing.append((key, name))
        return match.group(0)

    return ENV_REFERENCE.sub(replace, value)


def _merge(defaults: dict, own: dict) -> dict:
    merged = dict(defaults)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _has_key(data: Any, loc: tuple) -> bool:
    for part in loc:
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _dotted(key: Key) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in key).lstrip(".")


def _suggestion(key: Any, valid: Iterable[str]) -> str:
    nearest = difflib.get_close_matches(str(key), list(valid), n=1)
    return f"; did you mean {nearest[0]!r}?" if nearest else ""


def _describe(error: dict) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        model = model_at(error["loc"][:-1])
        return "unknown key" + (_suggestion(error["loc"][-1], valid_keys(model)) if model else "")
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] == "string_pattern_mismatch":
        return (f"{error['input']!r} is not a valid name: use 1 to 63 letters, digits, '_' or '-', "
                "starting with a letter or digit")
    if "input" in error and error["type"] not in ("value_error", "conflict"):
        return f"{message} (got {error['input']!r})"
    return message


def _yaml_problem(error: yaml.YAMLError, text: str) -> tuple[str, str]:
    """`line:col` and the parser's message, with a hint for the two usual causes."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return "", f"not valid YAML: {error}".replace("\n", " ")
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"not valid YAML: {problem}" + (f" ({context})" if context else "")
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    if "\t" in line:
        message += "; indent with spaces: YAML does not allow tabs"
    elif "${" in line and "flow" in (context or ""):
        message += '; quote a ${...} value inside {...} or [...], e.g. conn_id: "${DWH_CONN}"'
    return f":{mark.line + 1}:{mark.column + 1}", message


def _validate(result: ConfigFile, index: int, label: str, own: dict, defaults: dict) -> Reflection | None:
    try:
        return Reflection.model_validate(_merge(defaults, own))
    except ValidationError as invalid:
        for error in invalid.errors():
            loc = error["loc"]
            if loc and not _has_key(own, loc) and _has_key(defaults, loc):
                result.error(("defaults", *loc), f"key 'defaults.{_dotted(loc)}': {_describe(error)}")
            else:
                result.error(("reflections", index, *loc),
                             f"reflection {label}: key {_dotted(loc)!r}: {_describe(error)}")
        return None


def parse_config(text: str, path: Path, env: Mapping[str, str]) -> ConfigFile:
    """Validate one file's text; never raises for bad content, returns its errors instead."""
    result = ConfigFile(path)
    stream = io.StringIO(text)
    stream.name = str(path)  # YAML's messages then name the file, not "<unicode string>"
    try:
        composed = yaml.compose(text, Loader=yaml.SafeLoader) or yaml.ScalarNode("", "")
        if _expands_beyond(composed, MAX_VALUES):  # before anything walks it
            result.error((), f"too large: its anchors and aliases expand to more than {MAX_VALUES} values")
            return result
        data = yaml.load(stream, Loader=_StrictLoader)
        result.lines = _key_lines(composed)
    except yaml.YAMLError as error:
        where, message = _yaml_problem(error, text)
        result.errors.append(f"{path}{where}: {message}")
        return result
    if not isinstance(data, dict):
        result.error((), f"expected a mapping with the keys {list(TOP_LEVEL_KEYS)}")
        return result
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            result.error((key,), f"key {key!r}: unknown key (expected {list(TOP_LEVEL_KEYS)})"
                                 + _suggestion(key, TOP_LEVEL_KEYS))

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        result.error(("defaults",), "key 'defaults': expected a mapping")
        defaults = {}
    for key in OWN_KEYS:
        if key in defaults:
            result.error(("defaults", key), f"key 'defaults.{key}': cannot be a default; set it on each reflection")
    missing: list[tuple[Key, str]] = []
    defaults = _substitute({k: v for k, v in defaults.items() if k not in OWN_KEYS}, env, ("defaults",), missing)
    for key, name in missing:
        result.error(key, f"key {_dotted(key)!r}: environment variable {name!r} is not set")

    items = data.get("reflections")
    if not isinstance(items, list) or not items:
        result.error(("reflections",), "key 'reflections': expected a non-empty list of reflections")
        items = []

    reflections = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            result.error(("reflections", index), f"reflections[{index}]: expected a mapping, got {item!r}")
            continue
        name = item.get("name")
        label = repr(name) if isinstance(name, str) else f"#{index + 1} (reflections[{index}])"
        missing = []
        own = _substitute(item, env, (), missing)
        for key, variable in missing:
            result.error(("reflections", index, *key),
                         f"reflection {label}: key {_dotted(key)!r}: environment variable {variable!r} is not set")
        reflection = _validate(result, index, label, own, defaults)
        if reflection is None:
            continue
        if reflection.name in result.positions:
            result.error(("reflections", index, "name"), f"reflection {label}: key 'name': duplicate reflection "
                         f"name (also reflections[{result.positions[reflection.name]}])")
            continue
        result.positions[reflection.name] = index
        reflections.append(reflection)

    result.errors = list(dict.fromkeys(result.errors))
    result.reflections = [] if result.errors else reflections
    return result


def config_files(paths: Iterable[str | Path]) -> list[Path]:
    """The config files named, with directories expanded to their *.yaml / *.yml files (sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def load_configs(paths: Iterable[str | Path], env: Mapping[str, str] | None = None) -> list[ConfigFile]:
    """Load and validate config files together; names and channels must be unique across all of them.

    A file with any error yields no reflection, so that it never half-applies; the other files
    are unaffected. On a clash between files, the file read first (sorted by path) keeps its
    reflection and the later one is invalid.
    """
    import os

    env = os.environ if env is None else env
    results = []
    for path in config_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            results.append(ConfigFile(path, errors=[f"{path}: cannot read: {error}"]))
            continue
        results.append(parse_config(text, path, env))

    names: dict[str, str] = {}
    channels: dict[tuple[str, str], tuple[str, str]] = {}
    for result in results:
        file_names, file_channels = dict(names), dict(channels)
        for r in result.reflections:
            here = ("reflections", result.positions[r.name])
            if r.name in file_names:
                result.error(here + ("name",), f"reflection {r.name!r}: key 'name': duplicate reflection name "
                                               f"(already defined in {file_names[r.name]})")
            # Two consumers of one channel would each take the other's changes.
            elif owner := file_channels.get((r.source.conn_id, r.channel)):
                result.error(here + ("channel",), f"reflection {r.name!r}: key 'channel': channel {r.channel!r} "
                             f"on connection {r.source.conn_id!r} is already used by reflection {owner[0]!r} "
                             f"({owner[1]}); each reflection needs its own channel")
            file_names[r.name] = result.locate(here + ("name",))
            file_channels[(r.source.conn_id, r.channel)] = (r.name, result.locate(here))
        if result.errors:
            result.reflections = []
        else:
            names, channels = file_names, file_channels
    return results


def check(paths: Iterable[str | Path], env: Mapping[str, str] | None = None) -> list[Reflection]:
    """All reflections of the files, or ConfigError listing every problem in every file."""
    results = load_configs(paths, env)
    errors = [e for r in results for e in r.errors]
    if errors:
        raise ConfigError(errors)
    return [reflection for r in results for reflection in r.reflections]
