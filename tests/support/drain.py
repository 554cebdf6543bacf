"""Running a drain as the tests need it: into a mirror made on first use, or by the row path."""

from __future__ import annotations

from airflow_provider_pdr.core import reflect
from airflow_provider_pdr.core.reflect import Drain


def use_row_path(monkeypatch) -> None:
    """Every drain and copy reads its rows into Python, as on a pair that cannot apply changes
    inside the source: a SQLite pair would otherwise work inside SQLite
    (tests/integration/drain/test_inside.py)."""
    monkeypatch.setattr(Drain, "carriers", lambda drain, source_dialect, destination_dialect: None)


def mirror(source, destination, channel="orders", table="mirror", **kwargs):
    """Reflect `channel` into `table`, created on the first run."""
    kwargs.setdefault("create_table", True)
    return reflect(source, destination, channel, table, **kwargs)
