"""The engine interface itself, without a database: what every engine must give, which driver an
engine module takes, and that each module's public names import."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest
import sqlalchemy as sa

import airflow_provider_pdr.core
import airflow_provider_pdr.dialects
from airflow_provider_pdr.core.engines import MODULES, EngineModule, engine_module
from airflow_provider_pdr.core.engines.drivers import CopyDriver, Driver

PACKAGES = (airflow_provider_pdr.core, airflow_provider_pdr.dialects)
MODULE_NAMES = [info.name for package in PACKAGES
                for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_every_public_name_imports(name):
    """`from module import *` raises for a name in __all__ that the module does not define."""
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    module = importlib.import_module(name)
    if name.startswith(("airflow_provider_pdr.core.engines", "airflow_provider_pdr.dialects")):
        assert hasattr(module, "__all__"), f"{name} does not say which of its names are public"
    listed = getattr(module, "__all__", [])
    assert sorted(listed) == sorted(set(listed)), f"{name}.__all__ repeats a name"


def test_the_required_methods_are_abstract():
    assert inspect.isabstract(EngineModule)
    assert EngineModule.__abstractmethods__ == {
        "changed_at_column", "age_seconds", "capture_ddl", "drop_capture_ddl", "capture_objects", "upsert",
        "channel_lock", "ddl_type",
    }


@pytest.mark.parametrize("entry", sorted(set(MODULES.values())))
def test_every_engine_gives_every_required_method(entry):
    module_name, class_name = entry.split(":")
    engine_class = getattr(importlib.import_module(f"airflow_provider_pdr.core.engines.{module_name}"), class_name)
    assert not inspect.isabstract(engine_class)
    assert isinstance(engine_class.name, str)


@pytest.mark.parametrize(("url", "driver", "copies"), [
    ("postgresql+psycopg2://", "Psycopg2", True),
    ("postgresql+psycopg://", "Psycopg", True),
    ("mysql+mysqldb://", "Mysqldb", False),
    ("mariadb+mysqldb://", "Mysqldb", False),
    ("mysql+pymysql://", "Driver", False),
    ("sqlite://", "Pysqlite", False),
    ("firebird+fdb://", "Driver", False),
])
def test_the_driver_is_chosen_by_its_name(url, driver, copies):
    pytest.importorskip({"mysql+pymysql://": "pymysql"}.get(url, "sqlalchemy"))
    module = engine_module(sa.create_engine(url))
    assert type(module.driver).__name__ == driver
    assert module.driver.copies == copies == isinstance(module.driver, CopyDriver)
    assert isinstance(module.driver, Driver)


def test_the_core_names_no_engine():
    """Engine differences live in engine modules: the rest of the core asks them, never tests a name."""
    core = pathlib.Path(airflow_provider_pdr.core.__file__).parent
    named = re.compile(r"""["'](postgresql|mysql|mariadb|sqlite|firebird|mssql)["']""")
    found = [f"{path.relative_to(core)}:{number}: {line.strip()}"
             for path in sorted(core.rglob("*.py")) if "engines" not in path.relative_to(core).parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if named.search(line)]
    assert found == []
