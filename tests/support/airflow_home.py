"""A throwaway Airflow for the Airflow tests: a temporary AIRFLOW_HOME with a migrated SQLite
metadata database, shared by the whole session, and Airflow connections for test databases.

Import this module before anything imports Airflow: Airflow reads its home at import time
(tests/conftest.py imports it first).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile

import sqlalchemy as sa

if "airflow" in sys.modules and not os.environ.get("PDR_TEST_AIRFLOW_HOME"):
    raise RuntimeError("airflow was imported before tests/support/airflow_home.py could give it a temporary home")

OWN_HOME = "PDR_TEST_AIRFLOW_HOME" not in os.environ  # else kept: whoever set it owns it
HOME = os.environ.setdefault("PDR_TEST_AIRFLOW_HOME", tempfile.mkdtemp(prefix="pdr_airflow_home_"))
os.environ.update({
    "AIRFLOW_HOME": HOME,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME}/airflow.db",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(HOME, "dags"),
})
os.makedirs(os.path.join(HOME, "dags"), exist_ok=True)
if OWN_HOME:
    atexit.register(shutil.rmtree, HOME, ignore_errors=True)

CONN_TYPES = {
    "postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite", "firebird": "firebird",
}


def connection_json(engine: sa.Engine, **extra) -> str:
    """An AIRFLOW_CONN_* value (JSON form) pointing where `engine` points."""
    url = engine.url
    conn_type = CONN_TYPES[url.get_backend_name()]
    if conn_type == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": url.database})
    extras = {key: value for key, value in url.query.items()} | extra
    return json.dumps({
        "conn_type": conn_type, "host": url.host, "port": url.port, "login": url.username,
        "password": url.password, "schema": url.database, "extra": extras,
    })

