"""The one place where an Airflow connection id becomes a SQLAlchemy engine and its engine module.

Each connection type's own hook builds the SQLAlchemy URL (postgres, mysql, mssql and sqlite
from the official providers, firebird from ours), so extras such as the PostgreSQL
``sqlalchemy_scheme`` or the MySQL ``client`` behave as users know them.
"""

from __future__ import annotations

from functools import cached_property

import sqlalchemy as sa
from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import BaseHook

from airflow_provider_pdr.core.engines import EngineModule, engine_module
from airflow_provider_pdr.core.errors import ConfigurationError

# Row values stay out of error messages and logs (a failed batch would print thousands of rows).
ENGINE_OPTIONS = {"pool_pre_ping": True, "hide_parameters": True}


class PdrHook(BaseHook):
    """A connection id as a SQLAlchemy engine plus the engine module that knows its SQL.

    Works with ``postgres``, ``mysql``, ``mssql``, ``sqlite`` and ``firebird`` connections: the
    connection type's own hook builds the URL, so its usual extras apply. Use as a context
    manager, or call :meth:`dispose` when done, to close pooled connections.

    :param conn_id: the Airflow connection id.
    :param connection: an Airflow ``Connection`` object to use instead of looking ``conn_id`` up
        (default None).
    """

    hook_name = "PDR"

    def __init__(self, conn_id: str, *, connection=None, **kwargs):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self._connection = connection

    @cached_property
    def connection(self):
        return self._connection or self.get_connection(self.conn_id)

    def get_db_hook(self) -> DbApiHook:
        conn = self.connection
        try:
            hook = conn.get_hook(hook_params={"connection": conn})
        except Exception as error:
            raise ConfigurationError(
                f"connection {self.conn_id!r} of type {conn.conn_type!r} has no usable hook ({error}); "
                "use a postgres, mysql, mssql, sqlite or firebird connection"
            ) from None
        if not isinstance(hook, DbApiHook):
            raise ConfigurationError(
                f"connection {self.conn_id!r} of type {conn.conn_type!r} is not a SQL database connection"
            )
        return hook

    def get_sqlalchemy_url(self) -> sa.URL:
        hook = self.get_db_hook()
        try:
            return hook.sqlalchemy_url
        except NotImplementedError:
            pass
        try:
            return sa.make_url(hook.get_uri())
        except Exception:
            # The URI holds the password: name the connection, never echo the string.
            raise ConfigurationError(
                f"connection {self.conn_id!r} does not give a valid SQLAlchemy URL; check its host, "
                "schema and extras"
            ) from None

    @cached_property
    def engine(self) -> sa.Engine:
        """The connection's SQLAlchemy engine, made at first use (pre-ping on, row values hidden from errors)."""
        url = self.get_sqlalchemy_url()
        try:
            return sa.create_engine(url, **ENGINE_OPTIONS)
        except (ImportError, sa.exc.NoSuchModuleError) as error:
            raise ConfigurationError(
                f"connection {self.conn_id!r}: no SQLAlchemy driver for {url.drivername!r} ({error})"
            ) from None

    def get_sqlalchemy_engine(self) -> sa.Engine:
        return self.engine

    @cached_property
    def module(self) -> EngineModule:
        return engine_module(self.engine)

    def describe(self) -> str:
        """Where the connection points, for log lines; never the login or password."""
        url = self.engine.url
        where = f"{url.host}:{url.port}/{url.database}" if url.host else str(url.database)
        return f"connection {self.conn_id!r} ({url.get_backend_name()} {where})"

    def dispose(self) -> None:
        """Close the engine's pooled connections, if the engine was made."""
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> PdrHook:
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()
