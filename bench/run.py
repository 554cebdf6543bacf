"""One benchmark run: every figure as a ratio against a baseline measured in the same run.

1. apply throughput: draining a mixed backlog, against the fastest plain bulk upsert of the
   same final rows into the same destination with the same driver;
2. trigger overhead: source writes with the channel installed, against the same without;
3. latency: source commit to visible in the destination, with a pending-check + reflect loop;
4. memory: peak RSS of a process draining a large backlog, against a backlog ten times smaller.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_pdr.core import install_channel, pending_changes, reflect
from bench import baselines
from bench.databases import LABELS, Databases
from bench.workload import TABLES, narrow, write_backlog

PAIRS = [("postgresql", "mysql"), ("mysql", "postgresql"), ("postgresql", "postgresql"), ("sqlite", "sqlite")]
SIZES = {
    "quick": {"changes": 2000, "single": 50, "blocks": 2, "rounds": 1, "latency_s": 1.0,
              "memory": (2_000, 20_000), "latency_pairs": PAIRS[2:]},
    "full": {"changes": 200_000, "single": 1000, "blocks": 10, "rounds": 3, "latency_s": 8.0,
             "memory": (100_000, 1_000_000), "latency_pairs": PAIRS},
}
BATCH_SIZE = 5000
CHANNEL = "bench"
RESULTS = Path(__file__).parent / "results"


def label(source: str, destination: str) -> str:
    return f"{LABELS[source]} -> {LABELS[destination]}"


# -- 1. apply throughput ---------------------------------------------------------------------
def throughput(dbs: Databases, source_kind: str, destination_kind: str, width: str, changes: int) -> dict:
    source, destination = dbs.new(source_kind), dbs.new(destination_kind)
    table = TABLES[width]()
    table.create(source)
    install_channel(source, CHANNEL, table.name)
    write_backlog(source, table, changes)
    backlog = pending_changes(source, CHANNEL).count
    started = time.perf_counter()
    result = reflect(source, destination, CHANNEL, batch_size=BATCH_SIZE, create_table=True)
    seconds = time.perf_counter() - started
    rows = baselines.final_rows(source, destination, table.name)
    with destination.connect() as conn:
        mirrored = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table.name))).scalar()
    if mirrored != len(rows) or not result.drained:
        raise RuntimeError(f"{label(source_kind, destination_kind)} {width}: mirror has {mirrored} rows, "
                           f"source {len(rows)}, drained={result.drained}")
    base = baselines.fastest(destination, table.name, rows, BATCH_SIZE)
    return {
        "pair": label(source_kind, destination_kind), "width": width, "changes": backlog,
        "rows": len(rows), "seconds": seconds, "changes_per_s": backlog / seconds,
        "rows_per_s": len(rows) / seconds, "baseline": base,
        "ratio": base["seconds"] / seconds,  # = our rows/s over the baseline's, same final rows
    }


# -- 2. trigger overhead ---------------------------------------------------------------------
def driver_statement(engine: sa.Engine, statement):
    """The statement as the driver receives it, and a function building its parameters."""
    compiled = statement.compile(dialect=engine.dialect)

    def parameters(values=None):
        bound = compiled.construct_params(values)
        return tuple(bound[n] for n in compiled.positiontup) if compiled.positional else bound

    return compiled.string, parameters


def write_ops(engine: sa.Engine, table: sa.Table, start: int, single: int, blocks: int, block: int) -> dict:
    """Seconds per kind of source write, each transaction committed by the raw driver."""
    key, lo, hi = sa.bindparam("key"), sa.bindparam("lo"), sa.bindparam("hi")
    one_insert = driver_statement(engine, table.insert().values(id=key, qty=sa.bindparam("q"), note=sa.bindparam("n")))
    one_update = driver_statement(engine, table.update().where(table.c.id == key).values(qty=table.c.qty + 1))
    one_delete = driver_statement(engine, table.delete().where(table.c.id == key))
    many_update = driver_statement(engine, table.update().where(table.c.id.between(lo, hi)).values(qty=table.c.qty + 1))
    many_delete = driver_statement(engine, table.delete().where(table.c.id.between(lo, hi)))

    def run(cursor, statement, values=None):
        sql, parameters = statement
        cursor.execute(sql, parameters(values))

    timings = {}
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        keys = range(start, start + single)
        for name, statement, params in (
            ("insert 1 row", one_insert, lambda k: {"key": k, "q": k % 100, "n": f"note {k}"}),
            ("update 1 row", one_update, lambda k: {"key": k}),
            ("delete 1 row", one_delete, lambda k: {"key": k}),
        ):
            began = time.perf_counter()
            for k in keys:
                run(cursor, statement, params(k))
                raw.commit()
            timings[name] = (single, time.perf_counter() - began)
        base = start + single
        spans = [(base + b * block, base + (b + 1) * block - 1) for b in range(blocks)]
        inserts = [
            driver_statement(engine, table.insert().values(
                [{"id": k, "qty": k % 100, "note": f"note {k}"} for k in range(lo_key, hi_key + 1)]))
            for lo_key, hi_key in spans
        ]
        began = time.perf_counter()
        for statement in inserts:
            run(cursor, statement)
            raw.commit()
        timings[f"insert {block} rows"] = (blocks * block, time.perf_counter() - began)
        for name, statement in ((f"update {block} rows", many_update), (f"delete {block} rows", many_delete)):
            began = time.perf_counter()
            for lo_key, hi_key in spans:
                run(cursor, statement, {"lo": lo_key, "hi": hi_key})
                raw.commit()
            timings[name] = (blocks * block, time.perf_counter() - began)
        cursor.close()
    finally:
        raw.close()
    return timings


def trigger_overhead(dbs: Databases, kind: str, single: int, blocks: int, rounds: int) -> list[dict]:
    engine = dbs.new(kind)
    plain, captured = narrow("plain"), narrow("captured")
    plain.create(engine)
    captured.create(engine)
    install_channel(engine, CHANNEL, captured.name)
    best: dict[tuple[str, str], float] = {}
    counts: dict[str, int] = {}
    start = 0
    for r in range(rounds):
        # Alternate which table goes first, so drift on a shared machine hits both alike.
        for table in ((plain, captured) if r % 2 == 0 else (captured, plain)):
            for op, (count, seconds) in write_ops(engine, table, start, single, blocks, 1000).items():
                best[table.name, op] = min(seconds, best.get((table.name, op), float("inf")))
                counts[op] = count
            start += single + blocks * 1000
    return [
        {"engine": LABELS[kind], "op": op, "rows": counts[op],
         "without_per_s": counts[op] / best["plain", op], "with_per_s": counts[op] / best["captured", op],
         "ratio": best["plain", op] / best["captured", op]}
        for op in counts
    ]


# -- 3. latency ------------------------------------------------------------------------------
def latency(dbs: Databases, source_kind: str, destination_kind: str, seconds: float,
            write_every: float = 0.02, poll: float = 0.05) -> dict:
    source, destination = dbs.new(source_kind), dbs.new(destination_kind)
    table = narrow()
    table.create(source)
    install_channel(source, CHANNEL, table.name)
    reflect(source, destination, CHANNEL, create_table=True)
    committed: dict[int, float] = {}
    done = threading.Event()

    def writer():
        with source.connect() as conn:
            k = 0
            while not done.is_set():
                conn.execute(table.insert(), {"id": k, "qty": 1, "note": "latency"})
                conn.commit()
                committed[k] = time.perf_counter()
                k += 1
                time.sleep(write_every)

    visible: dict[int, float] = {}
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    deadline = time.perf_counter() + seconds
    ids = sa.select(sa.table(table.name, sa.column("id")).c.id)
    with destination.connect() as dconn:
        while True:
            stopping = time.perf_counter() >= deadline
            if stopping:
                done.set()
                thread.join()
            if pending_changes(source, CHANNEL).count:
                reflect(source, destination, CHANNEL, batch_size=BATCH_SIZE)
                now = time.perf_counter()
                for (k,) in dconn.execute(ids):
                    visible.setdefault(k, now)
                dconn.rollback()
            elif stopping:
                break
            else:
                time.sleep(poll)
    lags = sorted(visible[k] - committed[k] for k in committed if k in visible)
    if len(lags) != len(committed):
        raise RuntimeError(f"{label(source_kind, destination_kind)}: {len(committed) - len(lags)} rows never arrived")
    return {
        "pair": label(source_kind, destination_kind), "rows": len(lags), "poll_s": poll,
        "p50_ms": 1000 * percentile(lags, 50), "p99_ms": 1000 * percentile(lags, 99),
        "max_ms": 1000 * lags[-1],
    }


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


# -- 4. memory -------------------------------------------------------------------------------
def memory(dbs: Databases, kind: str, changes: int) -> dict:
    """Drain `changes` inserts in a child process; its own ru_maxrss is the peak RSS."""
    source_url, destination_url = dbs.url(kind), dbs.url(kind)
    source = sa.create_engine(source_url)
    table = narrow()
    table.create(source)
    install_channel(source, CHANNEL, table.name)
    with source.connect() as conn:
        for lo in range(0, changes, 50_000):
            conn.execute(table.insert(), [{"id": k, "qty": k % 100, "note": f"note {k}"}
                                          for k in range(lo, min(changes, lo + 50_000))])
            conn.commit()
    source.dispose()
    child = subprocess.run(
        [sys.executable, "-m", "bench.drain", source_url.render_as_string(hide_password=False),
         destination_url.render_as_string(hide_password=False), CHANNEL, str(BATCH_SIZE)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )
    return {"engine": LABELS[kind], "changes": changes, **json.loads(child.stdout)}


# -- report ----------------------------------------------------------------------------------
def table_text(title: str, header: list[str], rows: list[list]) -> str:
    cells = [header] + [[f"{v:,.0f}" if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) >= 100
                         else f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells[1:]]
    return "\n".join(lines)


def report(results: dict) -> str:
    parts = [table_text(
        "1. Apply throughput: draining a mixed backlog (60% inserts, 30% updates, 10% deletes); "
        "ratio = baseline time / our time for the same final rows",
        ["pair", "rows", "changes", "seconds", "changes/s", "rows/s", "baseline rows/s", "baseline", "ratio"],
        [[t["pair"], t["width"], t["changes"], t["seconds"], t["changes_per_s"], t["rows_per_s"],
          t["baseline"]["rows_per_s"], t["baseline"]["method"], t["ratio"]] for t in results["throughput"]],
    ), table_text(
        "2. Trigger overhead: source writes/s with the channel installed / without (1.00 = no slowdown)",
        ["engine", "write", "rows", "without/s", "with/s", "ratio"],
        [[t["engine"], t["op"], t["rows"], t["without_per_s"], t["with_per_s"], t["ratio"]] for t in results["triggers"]],
    ), table_text(
        "3. Latency: source commit -> visible in the destination (pending check + reflect loop)",
        ["pair", "rows", "poll s", "p50 ms", "p99 ms", "max ms"],
        [[t["pair"], t["rows"], t["poll_s"], t["p50_ms"], t["p99_ms"], t["max_ms"]] for t in results["latency"]],
    ), table_text(
        "4. Memory: peak RSS of a process draining the backlog (ratio = large / small)",
        ["engine", "changes", "seconds", "RSS at start MB", "peak RSS MB", "ratio"],
        [[t["engine"], t["changes"], t["seconds"], t["start_kb"] / 1024, t["peak_kb"] / 1024, t["ratio"]]
         for t in results["memory"]],
    )]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the benchmark works, in seconds")
    parser.add_argument("--only", choices=["throughput", "triggers", "latency", "memory"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--output", type=Path, help="results JSON (default bench/results/<time>.json)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    parts = set(args.only or ["throughput", "triggers", "latency", "memory"])
    results = {"mode": mode, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "batch_size": BATCH_SIZE, "throughput": [], "triggers": [], "latency": [], "memory": []}
    began = time.perf_counter()
    dbs = Databases()
    try:
        if "throughput" in parts:
            for source_kind, destination_kind in PAIRS:
                for width in TABLES:
                    results["throughput"].append(throughput(dbs, source_kind, destination_kind, width, size["changes"]))
                    progress(results["throughput"][-1])
        if "triggers" in parts:
            for kind in ("postgresql", "mysql"):
                results["triggers"] += trigger_overhead(dbs, kind, size["single"], size["blocks"], size["rounds"])
                progress(results["triggers"][-6:])
        if "latency" in parts:
            for source_kind, destination_kind in size["latency_pairs"]:
                results["latency"].append(latency(dbs, source_kind, destination_kind, size["latency_s"]))
                progress(results["latency"][-1])
        if "memory" in parts:
            small, large = (memory(dbs, "postgresql", n) for n in size["memory"])
            small["ratio"], large["ratio"] = 1.0, large["peak_kb"] / small["peak_kb"]
            results["memory"] += [small, large]
            progress(results["memory"])
    finally:
        dbs.close()
    results["seconds"] = time.perf_counter() - began
    print(report(results))
    print(f"\n{mode} run in {results['seconds']:.0f}s on {os.cpu_count()} CPUs")
    output = args.output or RESULTS / f"{results['started'].replace(':', '')}-{mode}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {output}")
    return 0


def progress(item) -> None:
    print(json.dumps(item, default=str), file=sys.stderr, flush=True)
