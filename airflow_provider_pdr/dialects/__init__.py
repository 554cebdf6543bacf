"""SQLAlchemy dialects this package provides (registered under the ``sqlalchemy.dialects``
entry point group, and at import of :mod:`airflow_provider_pdr.core.engines`)."""

from __future__ import annotations

from sqlalchemy.dialects import registry


def register() -> None:
    """Make ``firebird+fdb://`` URLs work without reinstalling the package."""
    registry.register("firebird.fdb", "airflow_provider_pdr.dialects.firebird", "FirebirdDialect_fdb")
    registry.register("firebird", "airflow_provider_pdr.dialects.firebird", "FirebirdDialect_fdb")


__all__ = ["register"]
