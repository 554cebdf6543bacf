"""The benchmark's tables and the mixed backlog of changes written into them."""

from __future__ import annotations

import datetime as dt
import decimal

import sqlalchemy as sa

CHANNEL = "bench"  # the channel every measured drain reads
BATCH_SIZE = 5000
BLOCK = 1000  # rows per insert statement; updates and deletes touch one block per statement


def narrow(name: str = "narrow") -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("qty", sa.Integer),
        sa.Column("note", sa.String(40)),
    )


def wide(name: str = "wide") -> sa.Table:
    """Twenty columns of the usual kinds: integers, decimals, strings, text, timestamps."""
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        *[sa.Column(f"i{n}", sa.Integer) for n in range(4)],
        *[sa.Column(f"d{n}", sa.Numeric(18, 4)) for n in range(4)],
        *[sa.Column(f"s{n}", sa.String(64)) for n in range(4)],
        *[sa.Column(f"t{n}", sa.Text) for n in range(2)],
        *[sa.Column(f"ts{n}", sa.DateTime) for n in range(2)],
        sa.Column("flag", sa.Boolean),
        sa.Column("ratio", sa.Float),
    )


TABLES = {"narrow": narrow, "wide": wide}
EPOCH = dt.datetime(2026, 1, 1)


def row(table: sa.Table, key: int, version: int = 0) -> dict:
    """A deterministic row: `version` changes every non-key value (what an update writes)."""
    n = key + version * 7919
    values = {"id": key}
    for column in table.columns:
        name, type_ = column.name, column.type
        if name == "id":
            continue
        if isinstance(type_, sa.Boolean):
            values[name] = n % 2 == 0
        elif isinstance(type_, sa.Float):
            values[name] = n / 7.0
        elif isinstance(type_, sa.Integer):
            values[name] = n % 100_000
        elif isinstance(type_, sa.Numeric):
            values[name] = decimal.Decimal(n) / 10_000 + 12345
        elif isinstance(type_, sa.DateTime):
            values[name] = EPOCH + dt.timedelta(seconds=n, microseconds=n % 1_000_000)
        elif isinstance(type_, sa.Text):
            values[name] = f"text {n} " * 20
        else:
            values[name] = f"{name} {n}"
    return values


def write_backlog(engine: sa.Engine, table: sa.Table, changes: int) -> int:
    """Mixed inserts, updates and deletes producing about `changes` change rows; returns the
    number of blocks inserted. Block k inserts 1000 new keys, updates the even keys of block
    k-3 and deletes every sixth key of block k-6 (60% / 30% / 10% of the change rows), so
    every batch mixes all three and some updates and deletes reach rows applied earlier."""
    per_block = BLOCK + BLOCK // 2 + BLOCK // 6
    blocks = max(1, round(changes / per_block))
    others = [c for c in table.columns if c.name != "id"]
    lo, hi = sa.bindparam("lo"), sa.bindparam("hi")
    in_block = table.c.id.between(lo, hi)
    update = table.update().where(in_block, table.c.id % 2 == 0).values(
        {c.name: c + 1 for c in others if isinstance(c.type, (sa.Integer, sa.Numeric))}
    )
    delete = table.delete().where(in_block, table.c.id % 6 == 1)
    insert = table.insert()
    with engine.connect() as conn:
        for k in range(blocks + 6):
            if k < blocks:
                conn.execute(insert, [row(table, key) for key in range(k * BLOCK, (k + 1) * BLOCK)])
            if 3 <= k < blocks + 3:
                conn.execute(update, {"lo": (k - 3) * BLOCK, "hi": (k - 2) * BLOCK - 1})
            if 6 <= k < blocks + 6:
                conn.execute(delete, {"lo": (k - 6) * BLOCK, "hi": (k - 5) * BLOCK - 1})
            conn.commit()
    return blocks


def analyze(engine: sa.Engine, table: sa.Table, change_table: str) -> None:
    """Refresh the planner's statistics of the source and its change table, as autovacuum (or an
    operator) keeps them on a production database: a backlog drains from analyzed tables."""
    if engine.dialect.name == "firebird":
        return  # Firebird keeps index statistics by itself
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("ANALYZE")
            return
        statement = "ANALYZE TABLE {}" if engine.dialect.name == "mysql" else "ANALYZE {}"
        for name in (table.name, change_table):
            conn.exec_driver_sql(statement.format(quote(name)))


def fill(engine: sa.Engine, table: sa.Table, rows: int) -> None:
    """`rows` rows that the backlog never touches (keys -1 down to -rows), the database copying
    them onto themselves, doubling each time."""
    if not rows:
        return
    others = [c for c in table.columns if c.name != "id"]
    with engine.begin() as conn:
        conn.execute(table.insert(), {**row(table, 1), "id": -1})
        made = 1
        while made < rows:
            more = min(made, rows - made)
            conn.execute(table.insert().from_select(
                ["id", *[c.name for c in others]],
                sa.select(table.c.id - made, *others).where(table.c.id.between(-more, -1)),
            ))
            made += more
