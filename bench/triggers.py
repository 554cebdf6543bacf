"""2. Trigger overhead: source writes with the channel installed, against the same without."""

from __future__ import annotations

import statistics
import time

import sqlalchemy as sa

from airflow_provider_pdr.core import install_channel
from bench.databases import LABELS, Databases
from bench.workload import CHANNEL, narrow


def driver_statement(engine: sa.Engine, statement):
    """The statement as the driver receives it, and a function building its parameters."""
    compiled = statement.compile(dialect=engine.dialect)

    def parameters(values=None):
        bound = compiled.construct_params(values)
        return tuple(bound[n] for n in compiled.positiontup) if compiled.positional else bound

    return compiled.string, parameters


class Writer:
    """Source writes through the raw driver, one committed transaction per call."""

    def __init__(self, engine: sa.Engine, table: sa.Table):
        self.engine, self.table = engine, table
        key, lo, hi = sa.bindparam("key"), sa.bindparam("lo"), sa.bindparam("hi")
        self.statements = {
            "insert": driver_statement(engine, table.insert().values(id=key, qty=sa.bindparam("q"), note=sa.bindparam("n"))),
            "update": driver_statement(engine, table.update().where(table.c.id == key).values(qty=table.c.qty + 1)),
            "delete": driver_statement(engine, table.delete().where(table.c.id == key)),
            "update many": driver_statement(
                engine, table.update().where(table.c.id.between(lo, hi)).values(qty=table.c.qty + 1)),
            "delete many": driver_statement(engine, table.delete().where(table.c.id.between(lo, hi))),
        }
        self.raw = engine.raw_connection()
        self.cursor = self.raw.cursor()

    def run(self, statement, values=None) -> None:
        sql, parameters = statement
        self.cursor.execute(sql, parameters(values))
        self.raw.commit()

    def single(self, op: str, keys: range) -> float:
        statement = self.statements[op]
        began = time.perf_counter()
        for k in keys:
            self.run(statement, {"key": k, "q": k % 100, "n": f"note {k}"} if op == "insert" else {"key": k})
        return time.perf_counter() - began

    def block(self, op: str, keys: range) -> float:
        if op == "insert":  # one INSERT with a row per key, compiled before the clock starts
            statement = driver_statement(self.engine, self.table.insert().values(
                [{"id": k, "qty": k % 100, "note": f"note {k}"} for k in keys]))
        else:
            statement = self.statements[f"{op} many"]
        began = time.perf_counter()
        self.run(statement, None if op == "insert" else {"lo": keys[0], "hi": keys[-1]})
        return time.perf_counter() - began

    def close(self):
        self.cursor.close()
        self.raw.close()


def trigger_overhead(dbs: Databases, kind: str, single: int, blocks: int, chunks: int) -> list[dict]:
    """Both tables live in one database; their writes alternate in small chunks, so the load
    of a shared machine falls on both alike. Each rate comes from the median chunk: a
    checkpoint or another process's burst during a few chunks does not decide the figure."""
    engine = dbs.new(kind)
    plain, captured = narrow("plain"), narrow("captured")
    plain.create(engine)
    captured.create(engine)
    install_channel(engine, CHANNEL, captured.name)
    writers = [Writer(engine, plain), Writer(engine, captured)]
    seconds: dict[tuple[str, str], list[float]] = {}  # per chunk
    rows: dict[str, tuple[int, int]] = {}  # (rows in all, rows per chunk)
    per_chunk = max(1, single // chunks)
    try:
        for op in ("insert", "update", "delete"):
            for c in range(chunks):
                keys = range(c * per_chunk, (c + 1) * per_chunk)
                for writer in writers if c % 2 == 0 else writers[::-1]:
                    seconds.setdefault((writer.table.name, f"{op} 1 row"), []).append(writer.single(op, keys))
            rows[f"{op} 1 row"] = (chunks * per_chunk, per_chunk)
        base = chunks * per_chunk
        for op in ("insert", "update", "delete"):
            for b in range(blocks):
                keys = range(base + b * 1000, base + (b + 1) * 1000)
                for writer in writers if b % 2 == 0 else writers[::-1]:
                    seconds.setdefault((writer.table.name, f"{op} 1000 rows"), []).append(writer.block(op, keys))
            rows[f"{op} 1000 rows"] = (blocks * 1000, 1000)
    finally:
        for writer in writers:
            writer.close()
    median = {name: statistics.median(times) for name, times in seconds.items()}
    return [
        {"engine": LABELS[kind], "op": op, "rows": count,
         "without_per_s": chunk / median["plain", op], "with_per_s": chunk / median["captured", op],
         "ratio": median["plain", op] / median["captured", op]}
        for op, (count, chunk) in rows.items()
    ]
