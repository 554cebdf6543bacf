"""3. Latency: source commit to visible in the destination, with a pending-check + reflect loop
and through Airflow DAG runs, against a hand-written loop copying new rows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, pending_changes, reflect
from bench.databases import Databases, label
from bench.workload import BATCH_SIZE, CHANNEL, narrow


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
