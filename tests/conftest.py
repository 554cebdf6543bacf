"""Fixtures for the whole suite; the helpers behind them live in tests/support/."""

from __future__ import annotations

from tests.support import airflow_home  # first: gives Airflow its temporary home before anything imports it

import pytest

from tests.support.databases import DESTINATIONS, LIVE_ENGINES, Databases


@pytest.fixture
def databases(tmp_path):
    dbs = Databases(tmp_path)
    yield dbs
    dbs.close()


@pytest.fixture(params=LIVE_ENGINES)
def source(request, databases):
    """A fresh source database on each live engine."""
    return databases.new(request.param)


@pytest.fixture(params=DESTINATIONS)
def destination(request, databases):
    """A fresh destination database on each live engine."""
    return databases.new(request.param)


@pytest.fixture(params=LIVE_ENGINES)
def engine(request, databases):
    return databases.new(request.param)


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's migrated metadata database (migrated once per session)."""
    from airflow.utils import db

    db.initdb()
    yield airflow_home.HOME


@pytest.fixture
def connect(monkeypatch):
    """connect(conn_id, engine): make `engine` reachable as Airflow connection `conn_id`."""

    def add(conn_id: str, engine, **extra) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", airflow_home.connection_json(engine, **extra))
        return conn_id

    return add
