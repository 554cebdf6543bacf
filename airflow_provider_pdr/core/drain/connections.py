"""Transactions on the drain's long-lived connections, and connection errors that say a retry is safe."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from airflow_provider_pdr.core.errors import UnreachableError
from airflow_provider_pdr.core.schema import describe


@contextlib.contextmanager
def committing(conn: Connection):
    """One transaction on a long-lived connection: commit on success, roll back on error."""
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


@contextlib.contextmanager
def reaching(where: str, side: str):
    """A refused or dropped connection becomes an error that names the database and says a retry is safe."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        if not (error.connection_invalidated or (isinstance(error, sa.exc.OperationalError) and error.statement is None)):
            raise
        raise UnreachableError(
            f"{where}: the {side} database is unreachable or dropped the connection "
            f"({str(error.orig).strip().splitlines()[0]}); nothing unapplied was acknowledged, "
            "a retry resumes where this run stopped"
        ) from error


def reflection(channel: str, source_table, table: str, schema: str | None) -> str:
    """A reflection as log lines and errors name it: its channel, source and destination tables."""
    return f"channel {channel!r} ({source_table} -> {describe(table, schema)})"


def brief_key(names, values) -> str:
    """id=7, line='a': long values cut short, so that one huge key cannot flood a log."""
    def brief(value) -> str:
        text = repr(value)
        return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"
    return ", ".join(f"{name}={brief(value)}" for name, value in zip(names, values))
