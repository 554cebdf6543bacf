"""One benchmark run: every figure as a ratio against a baseline measured in the same run.

1. apply throughput: draining a mixed backlog, against the fastest plain bulk upsert of the
   same final rows into the same destination with the same driver; and an initial load of
   those rows into an empty table, then a resync of that copy, against the same baseline;
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
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, pending_changes, reflect, snapshot
from bench import baselines, cpu, verdict
from bench.databases import LABELS, Databases
from bench.workload import TABLES, analyze, fill, narrow, write_backlog

PAIRS = [("postgresql", "mysql"), ("mysql", "postgresql"), ("postgresql", "postgresql"), ("psycopg", "psycopg"),
         ("sqlite", "sqlite")]
# Firebird writes and reads a row per round trip (fdb): its pairs drain a smaller backlog.
FIREBIRD_PAIRS = [("postgresql", "firebird"), ("firebird", "postgresql")]
# A source engine's planner decides how a span finds its rows: one pair per source engine.
TABLE_SIZE_PAIRS = [("postgresql", "postgresql"), ("mysql", "postgresql"), ("sqlite", "sqlite")]
SIZES = {
    "quick": {"changes": 2000, "firebird_changes": 2000, "repeats": 1, "single": 40, "blocks": 2, "chunks": 4,
              "latency_s": 1.0, "memory": (2_000, 20_000), "latency_pairs": PAIRS[2:], "airflow_runs": 1,
              "untouched_rows": 20_000},
    "full": {"changes": 200_000, "firebird_changes": 20_000, "repeats": 3, "single": 6000, "blocks": 20, "chunks": 60,
             "latency_s": 6.0, "memory": (100_000, 1_000_000), "latency_pairs": PAIRS, "airflow_runs": 5,
             "untouched_rows": 2_000_000},
}
BATCH_SIZE = 5000
CHANNEL = "bench"
RESULTS = Path(__file__).parent / "results"


def label(source: str, destination: str) -> str:
    return f"{LABELS[source]} -> {LABELS[destination]}"


def backlog_size(size: dict, source: str, destination: str) -> int:
    """The changes a pair drains: fewer with Firebird on either side (fdb, a round trip per row)."""
    return size["firebird_changes" if "firebird" in (source, destination) else "changes"]


# -- 1. apply throughput ---------------------------------------------------------------------
def with_backlog(dbs: Databases, source_kind: str, destination_kind: str, table: sa.Table, changes: int,
                 untouched: int = 0) -> tuple[sa.Engine, sa.Engine]:
    """New source and destination databases; in the source, `table` with `untouched` rows the
    backlog never changes, the channel, and an analyzed backlog of about `changes` change rows."""
    source, destination = dbs.new(source_kind), dbs.new(destination_kind)
    table.create(source)
    fill(source, table, untouched)
    channel = install_channel(source, CHANNEL, table.name)
    write_backlog(source, table, changes)
    analyze(source, table, channel.change_table)
    return source, destination


def throughput(dbs: Databases, source_kind: str, destination_kind: str, width: str, changes: int) -> dict:
    """Drain a backlog of about `changes` change rows; the baseline upserts the final rows."""
    table = TABLES[width]()
    source, destination = with_backlog(dbs, source_kind, destination_kind, table, changes)
    backlog = pending_changes(source, CHANNEL).count
    started = time.perf_counter()
    with cpu.measured(source=source, destination=destination) as work:
        result = reflect(source, destination, ReflectionSpec(CHANNEL, create_table=True), batch_size=BATCH_SIZE)
    seconds = time.perf_counter() - started
    rows = baselines.final_rows(source, destination, table.name)
    with destination.connect() as conn:
        mirrored = conn.execute(sa.select(sa.func.count()).select_from(sa.table(table.name))).scalar()
    if mirrored != len(rows) or not result.drained:
        raise RuntimeError(f"{label(source_kind, destination_kind)} {width}: mirror has {mirrored} rows, "
                           f"source {len(rows)}, drained={result.drained}")
    base = baselines.fastest(destination, table.name, rows, BATCH_SIZE)
    copied = {kind: {**figure, "ratio": base["seconds"] / figure["seconds"], "baseline_rows_per_s": base["rows_per_s"]}
              for kind, figure in copies(source, destination, table.name, len(rows)).items()}
    return {
        "pair": label(source_kind, destination_kind), "width": width, "changes": backlog,
        "rows": len(rows), "seconds": seconds, "changes_per_s": backlog / seconds,
        "reading_seconds": result.reading_seconds, "writing_seconds": result.writing_seconds,
        "rows_per_s": len(rows) / seconds, "baseline": base,
        "ratio": base["seconds"] / seconds,  # = our rows/s over the baseline's, same final rows
        # Rows we actually wrote (a key updated after its insert was applied is written again),
        # per second, against the baseline's rows/s: the cost per written row alone.
        "written": result.upserted + result.deleted,
        "write_ratio": (result.upserted + result.deleted) / seconds / base["rows_per_s"],
        **copied,
        **cpu_figure(work, base["cpu_s"], backlog),
    }


def cpu_figure(work: cpu.Work, baseline: float | None, changes: int) -> dict:
    """The drain's CPU time, by who spent it, against the baseline's (its destination server and
    process); nothing where a server's time cannot be read."""
    if work.total is None or baseline is None:
        return {}
    return {"cpu": {"source_s": work["source"], "destination_s": work["destination"], "process_s": work["process"],
                    "seconds": work.total, "baseline_seconds": baseline, "ratio": baseline / work.total,
                    "source_ms_per_1000_changes": work["source"] / changes * 1e6}}


def copies(source: sa.Engine, destination: sa.Engine, name: str, rows: int) -> dict[str, dict]:
    """The same final rows copied into an empty table by a second channel on the source table
    (its reflect with initial_load), then copied again over that copy and swept, as a full
    refresh does; each against the same baseline: the same rows, destination and driver."""
    install_channel(source, "load", name)
    started = time.perf_counter()
    loaded = reflect(source, destination, ReflectionSpec("load", f"{name}_loaded", create_table=True),
                     batch_size=BATCH_SIZE, initial_load=True)
    loading = time.perf_counter() - started
    started = time.perf_counter()
    again = snapshot(source, destination, ReflectionSpec("load", f"{name}_loaded"), resync=True, restart=True,
                     chunk_size=BATCH_SIZE)
    resyncing = time.perf_counter() - started
    if (loaded.copied, again.copied, again.removed, again.done) != (rows, rows, 0, True):
        raise RuntimeError(f"copies of {name}: initial load {loaded.copied} rows, resync {again} for {rows} rows")
    return {"initial_load": {"seconds": loading, "rows_per_s": rows / loading},
            "resync": {"seconds": resyncing, "rows_per_s": rows / resyncing}}


def on_fresh_databases(measure, *args) -> dict:
    """`measure(databases, *args)` on databases of its own, dropped right after."""
    dbs = Databases()
    try:
        return measure(dbs, *args)
    finally:
        dbs.close()


def median_run(runs: list[dict]) -> dict:
    """The run with the median ratio, each run's ratio beside it, and the same for its copies:
    on a shared machine one run alone can be a fifth off either way."""
    def middle(items: list[dict]) -> dict:
        return {**sorted(items, key=lambda item: item["ratio"])[(len(items) - 1) // 2],
                "ratios": [item["ratio"] for item in items]}

    return {**middle(runs), **{kind: middle([run[kind] for run in runs]) for kind in verdict.BESIDE
                               if all(kind in run for run in runs)}}


# -- 5. source table size ---------------------------------------------------------------------
def drain_beside(dbs: Databases, source_kind: str, destination_kind: str, changes: int, untouched: int) -> float:
    """Seconds to drain a narrow backlog of about `changes` change rows from a table that also
    holds `untouched` rows the backlog never changes."""
    source, destination = with_backlog(dbs, source_kind, destination_kind, narrow(), changes, untouched)
    started = time.perf_counter()
    result = reflect(source, destination, ReflectionSpec(CHANNEL, create_table=True), batch_size=BATCH_SIZE)
    seconds = time.perf_counter() - started
    if not result.drained:
        raise RuntimeError(f"{label(source_kind, destination_kind)} beside {untouched:,} rows: not drained ({result})")
    return seconds


def table_size(source_kind: str, destination_kind: str, changes: int, untouched: int) -> dict:
    """The same backlog drained from its table alone and from one holding `untouched` more rows:
    a span's cost must follow its own keys, not the size of the table they live in."""
    alone, beside = (on_fresh_databases(drain_beside, source_kind, destination_kind, changes, rows)
                     for rows in (0, untouched))
    return {"pair": label(source_kind, destination_kind), "changes": changes, "untouched_rows": untouched,
            "seconds": alone, "large_seconds": beside, "ratio": alone / beside}


# -- 2. trigger overhead ---------------------------------------------------------------------
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


# -- 3. latency ------------------------------------------------------------------------------
def commit_to_visible(source: sa.Engine, table: sa.Table, seconds: float, step, write_every: float,
                      poll: float) -> list[float]:
    """Seconds from each source commit to the row being visible in the destination, while
    `step()` (called every `poll` seconds) copies changes and returns the keys now visible."""
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
    while True:
        stopping = time.perf_counter() >= deadline
        if stopping:
            done.set()
            thread.join()
        arrived = step()
        now = time.perf_counter()
        for k in arrived:
            visible.setdefault(k, now)
        if stopping and len(visible) >= len(committed):
            break
        if not arrived:
            time.sleep(poll)
    return sorted(visible[k] - committed[k] for k in committed)


def latency(dbs: Databases, source_kind: str, destination_kind: str, seconds: float,
            write_every: float = 0.02, poll: float = 0.05) -> dict:
    """Ours: the core loop (pending check, then reflect). Baseline: a hand-written loop that
    polls the source table for new keys and copies those rows, at the same poll interval."""
    source, destination = dbs.new(source_kind), dbs.new(destination_kind)
    ours, theirs = narrow("ours"), narrow("theirs")
    ours.create(source)
    theirs.create(source)
    theirs.create(destination)
    install_channel(source, CHANNEL, ours.name)
    reflect(source, destination, ReflectionSpec(CHANNEL, create_table=True))
    mirrored = sa.select(sa.table(ours.name, sa.column("id")).c.id)

    def reflect_step() -> list[int]:
        if not pending_changes(source, CHANNEL).count:
            return []
        reflect(source, destination, ReflectionSpec(CHANNEL), batch_size=BATCH_SIZE)
        with destination.connect() as conn:
            return [k for (k,) in conn.execute(mirrored)]

    copied = {"last": -1}

    def copy_step() -> list[int]:
        with source.connect() as sconn:
            rows = [dict(r._mapping) for r in sconn.execute(
                sa.select(theirs).where(theirs.c.id > copied["last"]).order_by(theirs.c.id))]
        if not rows:
            return []
        with destination.begin() as dconn:
            dconn.execute(theirs.insert(), rows)
        copied["last"] = rows[-1]["id"]
        return [r["id"] for r in rows]

    lags = commit_to_visible(source, ours, seconds, reflect_step, write_every, poll)
    base = commit_to_visible(source, theirs, seconds, copy_step, write_every, poll)
    return {
        "pair": label(source_kind, destination_kind), "rows": len(lags), "poll_s": poll,
        "p50_ms": 1000 * percentile(lags, 50), "p99_ms": 1000 * percentile(lags, 99), "max_ms": 1000 * lags[-1],
        "baseline_p50_ms": 1000 * percentile(base, 50), "baseline_p99_ms": 1000 * percentile(base, 99),
        "ratio": percentile(base, 50) / percentile(lags, 50),
    }


def airflow_latency(dbs: Databases, runs: int, baseline: dict) -> dict:
    """Commit -> visible through DAG runs (install, deferred sensor woken by pg_notify, reflect
    task), in a child process with its own Airflow home; against the hand-written loop's p50."""
    source_url = dbs.url("postgresql").render_as_string(hide_password=False)
    destination_url = dbs.url("postgresql").render_as_string(hide_password=False)
    child = subprocess.run([sys.executable, "-m", "bench.airflow_latency", source_url, destination_url, str(runs)],
                           capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=600)
    if child.returncode:
        raise RuntimeError(f"bench.airflow_latency failed: {child.stderr[-2000:]}")
    lags = sorted(json.loads(child.stdout.strip().splitlines()[-1]))
    return {
        "pair": label("postgresql", "postgresql") + " (Airflow DAG runs)", "rows": len(lags), "poll_s": "notify",
        "p50_ms": 1000 * percentile(lags, 50), "p99_ms": 1000 * lags[-1], "max_ms": 1000 * lags[-1],
        "baseline_p50_ms": baseline["baseline_p50_ms"], "baseline_p99_ms": baseline["baseline_p99_ms"],
        "ratio": baseline["baseline_p50_ms"] / (1000 * percentile(lags, 50)),
    }


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


# -- 4. memory -------------------------------------------------------------------------------
def memory(dbs: Databases, kind: str, changes: int) -> dict:
    """Drain `changes` inserts in a child process and take its peak RSS."""
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


def verdict_columns(results: dict) -> tuple[list[str], Callable[[dict], list[str]]]:
    """The columns every table ends with: the figure's target and whether it was met; with an
    earlier run to compare, that run's ratio (or range) and whether this one moved from it."""
    compared = "compared_with" in results

    def cells(row: dict) -> list[str]:
        goal = f"{row['target']} {'met' if row['met'] else 'MISSED'}" if "target" in row else ""
        earlier = row.get("previous", "") + (f" ({row['moved']})" if "moved" in row else "")
        return [goal, earlier] if compared else [goal]

    return ["target"] + (["previous"] if compared else []), cells


def report(results: dict) -> str:
    extra, judged = verdict_columns(results)
    parts = [table_text(
        "1. Apply throughput: draining a mixed backlog (60% inserts, 30% updates, 10% deletes); "
        "ratio = baseline time / our time for the same final rows; the run with the median ratio of "
        f"{results['repeats']}, and every run's range; reading and writing run side by side, the larger sets the pace",
        ["pair", "rows", "changes", "seconds", "reading s", "writing s", "changes/s", "final rows/s",
         "baseline rows/s", "baseline", "ratio", "range", "rows written", "written/s ratio", *extra],
        [[t["pair"], t["width"], t["changes"], t["seconds"], t["reading_seconds"], t["writing_seconds"],
          t["changes_per_s"], t["rows_per_s"], t["baseline"]["rows_per_s"], t["baseline"]["method"], t["ratio"],
          verdict.spread(t["ratios"]), t["written"], t["write_ratio"], *judged(t)]
         for t in results["throughput"]],
    ), *[table_text(
        f"{title} against the same baseline; ratio = baseline time / our time",
        ["pair", "rows", "seconds", "rows/s", "baseline rows/s", "ratio", "range", *extra],
        [[t["pair"], t["width"], copy["seconds"], copy["rows_per_s"], copy["baseline_rows_per_s"], copy["ratio"],
          verdict.spread(copy["ratios"]), *judged(copy)] for t in results["throughput"] for copy in [t[kind]]],
    ) for kind, title in verdict.COPIES.items()], table_text(
        "1d. CPU: seconds of CPU time the drain took from the source database server, the destination database "
        "server and its own process, against the baseline's (its destination server and process); "
        "ratio = baseline CPU / our CPU",
        ["pair", "rows", "source server s", "destination server s", "process s", "total s", "baseline s", "ratio",
         "range", "source ms / 1,000 changes", *extra],
        [[t["pair"], t["width"], c["source_s"], c["destination_s"], c["process_s"], c["seconds"],
          c["baseline_seconds"], c["ratio"], verdict.spread(c["ratios"]), c["source_ms_per_1000_changes"], *judged(c)]
         for t in results["throughput"] if "cpu" in t for c in [t["cpu"]]],
    ), table_text(
        "2. Trigger overhead: source writes/s with the channel installed / without (1.00 = no slowdown)",
        ["engine", "write", "rows", "without/s", "with/s", "ratio", *extra],
        [[t["engine"], t["op"], t["rows"], t["without_per_s"], t["with_per_s"], t["ratio"], *judged(t)]
         for t in results["triggers"]],
    ), table_text(
        "3. Latency: source commit -> visible in the destination, core loop (pending check + reflect) and whole "
        "Airflow DAG runs (install, deferred sensor, reflect task), against a hand-written loop copying new rows "
        "every poll interval; ratio = baseline p50 / our p50",
        ["pair", "rows", "poll s", "p50 ms", "p99 ms", "max ms", "baseline p50 ms", "baseline p99 ms", "ratio", *extra],
        [[t["pair"], t["rows"], t["poll_s"], t["p50_ms"], t["p99_ms"], t["max_ms"], t["baseline_p50_ms"],
          t["baseline_p99_ms"], t["ratio"], *judged(t)] for t in results["latency"]],
    ), table_text(
        "4. Memory: peak RSS of a process draining the backlog (ratio = large / small)",
        ["engine", "changes", "seconds", "RSS after imports MB", "peak RSS MB", "ru_maxrss MB", "ratio", *extra],
        [[t["engine"], t["changes"], t["seconds"], t["start_kb"] / 1024, t["peak_kb"] / 1024, t["ru_maxrss_kb"] / 1024,
          t["ratio"], *judged(t)]
         for t in results["memory"]],
    ), table_text(
        "5. Source table size: the same narrow backlog drained from its table alone, then from one that also "
        "holds rows the backlog never changes; ratio = time alone / time beside them",
        ["pair", "changes", "untouched rows", "seconds alone", "seconds beside them", "ratio", *extra],
        [[t["pair"], t["changes"], t["untouched_rows"], t["seconds"], t["large_seconds"], t["ratio"], *judged(t)]
         for t in results["table_size"]],
    ), verdict.summary(results)]
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the benchmark works, in seconds")
    parser.add_argument("--only", choices=["throughput", "triggers", "latency", "memory", "size"], action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--pair", type=pair, action="append", metavar="SOURCE:DESTINATION",
                        help=f"only these pairs for throughput, latency and table size (repeatable), e.g. "
                             f"psycopg:psycopg; "
                             f"each side one of {', '.join(LABELS)}")
    parser.add_argument("--width", choices=list(TABLES), action="append",
                        help="only these tables for throughput (repeatable)")
    parser.add_argument("--output", type=Path, help="results JSON (default bench/results/<time>.json)")
    parser.add_argument("--compare", metavar="RESULTS_JSON",
                        help="an earlier run's results, or 'last' for the newest run of the same mode in "
                             "bench/results: each figure shows its earlier ratio, and the report lists those "
                             "that moved beyond run-to-run noise")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    if args.compare == "last":
        earlier_file = latest_results(mode)
        if earlier_file is None:
            print(f"no earlier {mode} run in {RESULTS} to compare with", file=sys.stderr)
    else:
        earlier_file = Path(args.compare) if args.compare else None
    earlier = read_results(earlier_file) if earlier_file else None
    size = SIZES[mode]
    parts = set(args.only or ["throughput", "triggers", "latency", "memory", "size"])
    results = {"mode": mode, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "batch_size": BATCH_SIZE, "repeats": size["repeats"], "throughput": [], "triggers": [], "latency": [],
               "memory": [], "table_size": []}
    began = time.perf_counter()
    dbs = Databases()
    try:
        # Memory first, while this process is small (its high-water mark reaches ru_maxrss of children).
        if "memory" in parts:
            small, large = (memory(dbs, "postgresql", n) for n in size["memory"])
            small["ratio"], large["ratio"] = 1.0, large["peak_kb"] / small["peak_kb"]
            results["memory"] += [small, large]
            progress(results["memory"])
        if "throughput" in parts:
            for source_kind, destination_kind in args.pair or PAIRS + FIREBIRD_PAIRS:
                changes = backlog_size(size, source_kind, destination_kind)
                for width in args.width or TABLES:
                    runs = [on_fresh_databases(throughput, source_kind, destination_kind, width, changes)
                            for _ in range(size["repeats"])]
                    results["throughput"].append(median_run(runs))
                    progress(results["throughput"][-1])
        if "size" in parts:
            for source_kind, destination_kind in args.pair or TABLE_SIZE_PAIRS:
                changes = backlog_size(size, source_kind, destination_kind)
                results["table_size"].append(table_size(source_kind, destination_kind, changes, size["untouched_rows"]))
                progress(results["table_size"][-1])
        if "triggers" in parts:
            for kind in ("postgresql", "mysql"):
                results["triggers"] += trigger_overhead(dbs, kind, size["single"], size["blocks"], size["chunks"])
                progress(results["triggers"][-6:])
        if "latency" in parts:
            for source_kind, destination_kind in args.pair or size["latency_pairs"]:
                results["latency"].append(latency(dbs, source_kind, destination_kind, size["latency_s"]))
                progress(results["latency"][-1])
            # Through Airflow: PostgreSQL -> PostgreSQL, against that pair's hand-written loop.
            loop = next((t for t in results["latency"] if t["pair"] == label("postgresql", "postgresql")), None)
            if loop is not None:
                results["latency"].append(airflow_latency(dbs, size["airflow_runs"], loop))
                progress(results["latency"][-1])
    finally:
        dbs.close()
    results["seconds"] = time.perf_counter() - began
    verdict.judge(results)
    if earlier is not None:
        verdict.compare(results, earlier, earlier_file)
    print(report(results))
    print(f"\n{mode} run in {results['seconds']:.0f}s on {os.cpu_count()} CPUs")
    output = args.output or RESULTS / f"{results['started'].replace(':', '')}-{mode}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {output}")
    return 0


def pair(text: str) -> tuple[str, str]:
    """A --pair argument: SOURCE:DESTINATION, each a kind of database the benchmark knows."""
    source, _, destination = text.partition(":")
    if source not in LABELS or destination not in LABELS:
        raise argparse.ArgumentTypeError(f"{text!r}: give SOURCE:DESTINATION, each one of {', '.join(LABELS)}")
    return source, destination


def latest_results(mode: str) -> Path | None:
    """The newest results of a `mode` run in bench/results (their names begin with the start time)."""
    runs = sorted(RESULTS.glob(f"*-{mode}.json"))
    return runs[-1] if runs else None


def read_results(path: Path) -> dict:
    """An earlier run's results JSON, read before this run starts: a wrong path fails at once."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"--compare {path}: not a results file of this benchmark ({error})") from None
    if not isinstance(results, dict) or "throughput" not in results:
        raise SystemExit(f"--compare {path}: not a results file of this benchmark (no 'throughput' key)")
    return results


def progress(item) -> None:
    print(json.dumps(item, default=str), file=sys.stderr, flush=True)
