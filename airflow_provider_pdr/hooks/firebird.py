"""Firebird connections (Airflow has no Firebird provider), through the `fdb` driver.

Connection fields: host and port of the server (leave host empty for an embedded database
on a local path), login, password, and in *Schema* the database path or alias. Extras:
``charset`` (default UTF8) and ``role``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from airflow.providers.common.sql.hooks.sql import DbApiHook

DEFAULT_PORT = 3050


class FirebirdHook(DbApiHook):
    """Firebird 3.0 and later through ``fdb``: a ``DbApiHook`` for SQL and a SQLAlchemy URL.

    It backs the ``firebird`` connection type. Fields: host and port (3050) of the server, or an
    empty host for an embedded database on a local path; login and password; *Schema* holds the
    database path or alias. Extras: ``charset`` (default ``UTF8``) and ``role``.

    :param firebird_conn_id: the Airflow connection id (default ``firebird_default``); may also
        be given as the first positional argument.

    Other arguments are those of Airflow's ``DbApiHook``.
    """

    conn_name_attr = "firebird_conn_id"
    default_conn_name = "firebird_default"
    conn_type = "firebird"
    hook_name = "Firebird"
    supports_autocommit = False

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database (path on the server, or alias)"},
            "placeholders": {
                "host": "empty for an embedded database on a local path",
                "port": str(DEFAULT_PORT),
                "schema": "/var/lib/firebird/3.0/data/app.fdb",
                "extra": '{"charset": "UTF8", "role": null}',
            },
        }

    def _database(self) -> str:
        database = self.connection.schema
        if not database:
            raise ValueError(
                f"Firebird connection {self.get_conn_id()!r} names no database: "
                "put the database path or alias in the connection's Schema field"
            )
        return database

    def _extra(self, key: str, default: Any = None) -> Any:
        return self.connection.extra_dejson.get(key, default)

    @property
    def sqlalchemy_url(self) -> sa.URL:
        conn = self.connection
        query = {"charset": str(self._extra("charset", "UTF8"))}
        if self._extra("role"):
            query["role"] = str(self._extra("role"))
        return sa.URL.create(
            "firebird+fdb",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=(conn.port or DEFAULT_PORT) if conn.host else None,
            database=self._database(),
            query=query,
        )

    def get_uri(self) -> str:
        return self.sqlalchemy_url.render_as_string(hide_password=False)

    def get_conn(self):
        import fdb

        conn = self.connection
        database = self._database()
        dsn = f"{conn.host}/{conn.port or DEFAULT_PORT}:{database}" if conn.host else database
        return fdb.connect(
            dsn=dsn, user=conn.login or None, password=conn.password or None,
            charset=self._extra("charset", "UTF8"), role=self._extra("role"),
        )

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.get_first("SELECT 1 FROM RDB$DATABASE")
        except Exception as error:  # the UI shows the message
            return False, str(error)
        return True, "Connection successfully tested"
