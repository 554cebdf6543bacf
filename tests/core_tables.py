"""Portable test tables, created through SQLAlchemy so every engine quotes them its own way."""

from __future__ import annotations

import sqlalchemy as sa


def create(engine: sa.Engine, name: str, *columns: sa.Column) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), *columns)
    with engine.begin() as conn:
        table.create(conn)
    return table


def orders(engine: sa.Engine, name: str = "orders") -> sa.Table:
    """A simple keyed table: id, note, amount."""
    return create(
        engine, name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("note", sa.String(100)),
        sa.Column("amount", sa.Numeric(12, 2)),
    )


def write(engine: sa.Engine, statement, params=None) -> None:
    with engine.begin() as conn:
        conn.execute(statement, params) if params is not None else conn.execute(statement)


def table_rows(engine: sa.Engine, name: str) -> list[tuple]:
    with engine.connect() as conn:
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
