"""One module per database engine, chosen from a SQLAlchemy engine's dialect."""

from __future__ import annotations

import importlib

from sqlalchemy.engine import Engine

from airflow_provider_pdr import dialects
from airflow_provider_pdr.core.engines.base import CaptureTarget, EngineModule, SourceTable
from airflow_provider_pdr.core.errors import ConfigurationError

dialects.register()  # firebird+fdb URLs work even where the package's entry points are not installed

# dialect name -> "module:class"; new engines are added here and nowhere else.
MODULES = {
    "postgresql": "postgresql:PostgresEngine",
    "mysql": "mysql:MysqlEngine",
    "mariadb": "mysql:MysqlEngine",
    "sqlite": "sqlite:SqliteEngine",
    "firebird": "firebird:FirebirdEngine",
    "mssql": "mssql:MssqlEngine",
}


def engine_module(engine: Engine) -> EngineModule:
    dialect = engine.dialect
    try:
        module_name, class_name = MODULES[dialect.name].split(":")
    except KeyError:
        raise ConfigurationError(
            f"database engine {dialect.name!r} is not supported; supported: {', '.join(sorted(MODULES))}"
        ) from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)(dialect)


__all__ = ["CaptureTarget", "EngineModule", "SourceTable", "engine_module"]
