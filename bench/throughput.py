"""1. Apply throughput (a drain, an initial load and a resync against a plain bulk upsert of the same
final rows) and 5. source table size (the same backlog beside rows it never changes)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, pending_changes, reflect, snapshot
from bench import baselines, cpu, verdict
from bench.databases import Databases, label
from bench.workload import BATCH_SIZE, CHANNEL, TABLES, analyze, fill, narrow, write_backlog


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
