"""One benchmark run: every figure as a ratio against a baseline measured in the same run.

1. apply throughput: draining a mixed backlog, against the fastest plain bulk upsert of the
   same final rows into the same destination with the same driver; and an initial load of
   those rows into an empty table, then a resync of that copy, against the same baseline;
2. trigger overhead: source writes with the channel installed, against the same without;
3. latency: source commit to visible in the destination, with a pending-check + reflect loop;
4. memory: peak RSS of a process draining a large backlog, against a backlog ten times smaller;
5. source table size: the same backlog drained from its table alone and beside rows it never changes.

Each measure lives in a module of its own (throughput, triggers, latency, memory); report.py
prints the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import verdict
from bench.databases import LABELS, Databases, label
from bench.latency import airflow_latency, latency
from bench.memory import memory
from bench.report import report
from bench.throughput import median_run, on_fresh_databases, table_size, throughput
from bench.triggers import trigger_overhead
from bench.workload import BATCH_SIZE, TABLES

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
RESULTS = Path(__file__).parent / "results"


def backlog_size(size: dict, source: str, destination: str) -> int:
    """The changes a pair drains: fewer with Firebird on either side (fdb, a round trip per row)."""
    return size["firebird_changes" if "firebird" in (source, destination) else "changes"]


def arguments() -> argparse.ArgumentParser:
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
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
