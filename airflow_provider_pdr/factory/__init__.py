"""The DAG factory: reflection config files (YAML) -> validated reflections -> one DAG per reflection.

`config` validates without Airflow (used by `pdr-lint`); `dags` builds the DAGs. The DAG files in
`dags/` call `register_dags` and `raise_config_errors` below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, MutableMapping

from airflow_provider_pdr.factory.config import ConfigError, ConfigFile, Endpoint, Reflection, check, load_configs

CONFIG_DIR_ENV = "PDR_CONFIG_DIR"

__all__ = [
    "CONFIG_DIR_ENV", "ConfigError", "ConfigFile", "Endpoint", "Reflection", "check", "config_dir",
    "load_configs", "raise_config_errors", "register_dags",
]


def config_dir(default: str | Path) -> Path:
    """The folder of config files: $PDR_CONFIG_DIR if set, else `default`."""
    return Path(os.environ.get(CONFIG_DIR_ENV) or default)


def register_dags(namespace: MutableMapping[str, Any], default_dir: str | Path) -> list[str]:
    """Put one DAG per reflection of the valid config files into `namespace` (a DAG file's globals()).

    Invalid files are only logged here: `raise_config_errors`, called from a DAG file of its own,
    turns them into an Airflow import error that never hides the DAGs of the valid files.
    """
    from airflow_provider_pdr.factory.dags import build_dags

    dags, _ = build_dags(load_configs([config_dir(default_dir)]))
    namespace.update(dags)
    return list(dags)


def raise_config_errors(default_dir: str | Path) -> None:
    """Raise ConfigError naming every invalid file, reflection and key: Airflow shows it as an import error."""
    from airflow_provider_pdr.factory.dags import build_dags

    folder = config_dir(default_dir)
    if not folder.is_dir():
        raise ConfigError([f"{folder}: the reflection config folder does not exist (set {CONFIG_DIR_ENV})"])
    _, errors = build_dags(load_configs([folder]))
    if errors:
        raise ConfigError(errors)
