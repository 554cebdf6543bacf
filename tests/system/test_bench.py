"""The benchmark: its quick mode still runs end to end, exactly as `make bench` starts it, its
comparisons with earlier runs, and its CPU figure, which counts each side's work where it was
done (bench/cpu.py): busy queries on real servers, a busy loop in this process.

No timing is asserted here: the figures are bench/'s job, on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench import cpu, tables, verdict
from tests.support import REPO as ROOT


def bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m bench` with these arguments, exactly as `make bench` starts it."""
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_quick_benchmark_runs_and_writes_every_figure(tmp_path):
    output = tmp_path / "results.json"
    run = bench("--quick", "--output", str(output))
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(output.read_text())
    assert {(t["pair"], t["width"]) for t in results["throughput"]} == {
        (pair, width)
        for pair in ("PostgreSQL -> MariaDB", "MariaDB -> PostgreSQL", "PostgreSQL -> PostgreSQL",
                     "PostgreSQL (psycopg 3) -> PostgreSQL (psycopg 3)", "SQLite -> SQLite",
                     "PostgreSQL -> Firebird", "Firebird -> PostgreSQL")
        for width in ("narrow", "wide")
    }
    assert all(t["ratio"] > 0 and t["rows"] > 0 and t["baseline"]["rows_per_s"] > 0 for t in results["throughput"])
    assert all(t["initial_load"]["ratio"] > 0 and t["resync"]["ratio"] > 0 for t in results["throughput"])
    assert all(0 < t["reading_seconds"] <= t["seconds"] and 0 < t["writing_seconds"] <= t["seconds"]
               for t in results["throughput"])
    # CPU time by who spent it; SQLite has no server of its own (its work is the process's).
    assert all(t["cpu"]["seconds"] >= t["cpu"]["process_s"] > 0 and t["cpu"]["ratio"] > 0 for t in results["throughput"])
    assert all(t["cpu"]["source_s"] == 0 for t in results["throughput"] if t["pair"].startswith("SQLite"))
    assert all(min(t["cpu"]["source_s"], t["cpu"]["destination_s"]) >= 0 for t in results["throughput"])
    assert {t["engine"] for t in results["triggers"]} == {"PostgreSQL", "MariaDB"}
    assert all(0 < t["p50_ms"] <= t["p99_ms"] for t in results["latency"]) and results["latency"]
    assert [m["changes"] for m in results["memory"]] == [2_000, 20_000]
    assert all(m["peak_kb"] > 0 for m in results["memory"])
    # One pair per source engine drains beside rows it never changes.
    assert [(t["pair"], t["untouched_rows"]) for t in results["table_size"]] == [
        (pair, 20_000) for pair in ("PostgreSQL -> PostgreSQL", "MariaDB -> PostgreSQL", "SQLite -> SQLite")]
    assert all(t["ratio"] == t["seconds"] / t["large_seconds"] > 0 for t in results["table_size"])
    assert all(f"{part}." in run.stdout for part in ("1", "1b", "1c", "1d", "2", "3", "4", "5"))
    # Every figure with a target says whether it met it (the quick sizes decide nothing).
    assert all(t["target"] == ">= 0.50" and isinstance(t["met"], bool) for t in results["throughput"])
    assert {t["target"] for t in results["triggers"] if t["op"].endswith(" 1 row")} == {">= 0.75"}
    assert results["memory"][1]["target"] == "<= 1.10" and "target" not in results["memory"][0]
    assert {t["target"] for t in results["table_size"]} == {">= 0.50"}
    assert "Targets: " in run.stdout and "quick mode" in run.stdout
    # The benchmark page's tables, from two runs: each case in each of the four tables of its own, both
    # runs' medians beside the last one's figures, and a row for every other figure.
    lines = [line for line in tables.tables(tables.Runs([results, results])) if line.startswith("| ")]
    for case in results["throughput"]:
        named = [line for line in lines if line.startswith((f"| {tables.name(case)} |",
                                                            f"| {tables.name(case, rows=True)} |"))]
        assert len(named) == 4, (case["pair"], case["width"])  # throughput, initial load, resync, CPU
        assert f"| {case['ratio']:.2f}, {case['ratio']:.2f} |" in named[0]
    engines = {t["engine"] for t in results["triggers"]}
    assert len(lines) == 2 * 8 + 4 * len(results["throughput"]) + len(engines) + len(results["latency"]) + \
        len(results["memory"]) + len(results["table_size"])  # eight tables: a title and a rule each


def test_an_earlier_run_is_compared_figure_by_figure(tmp_path):
    earlier, output = tmp_path / "earlier.json", tmp_path / "results.json"
    # An earlier run whose large backlog took half the memory of its small one: any real run is worse.
    earlier.write_text(json.dumps({"mode": "full", "started": "2026-01-01T00:00:00+00:00", "throughput": [],
                                   "memory": [{"engine": "PostgreSQL", "changes": 2_000, "ratio": 1.0},
                                              {"engine": "PostgreSQL", "changes": 20_000, "ratio": 0.5}]}))
    run = bench("--quick", "--only", "memory", "--compare", str(earlier), "--output", str(output))
    assert run.returncode == 0, run.stderr[-3000:]
    large = json.loads(output.read_text())["memory"][1]
    assert (large["previous"], large["moved"]) == ("0.50", "worse")
    assert f"Against {earlier} (full run of 2026-01-01T00:00:00+00:00): 1 figure moved beyond" in run.stdout
    assert "worse: memory, PostgreSQL, 20,000 changes" in run.stdout


def test_a_figure_measured_several_times_moves_only_when_its_ranges_part():
    def run(ratios):
        load = {"ratio": sorted(ratios)[1], "ratios": ratios}
        return {"mode": "full", "started": "then", "throughput": [
            {"pair": "A -> B", "width": "narrow", "ratio": sorted(ratios)[1], "ratios": ratios, "initial_load": load}]}

    for now, then, moved in [([0.50, 0.55, 0.60], [0.45, 0.52, 0.58], None),  # ranges overlap: noise
                             ([0.61, 0.65, 0.70], [0.45, 0.52, 0.60], "better"),
                             ([0.30, 0.35, 0.44], [0.45, 0.52, 0.60], "worse")]:
        results = run(now)
        verdict.compare(results, run(then), Path("earlier.json"))
        row = results["throughput"][0]
        assert row.get("moved") == moved == row["initial_load"].get("moved"), (now, then)
        assert row["previous"] == verdict.spread(then)


def test_a_wrong_earlier_results_file_stops_the_run_before_it_starts(tmp_path):
    missing = tmp_path / "nothing.json"
    run = bench("--quick", "--compare", str(missing), timeout=60)
    assert run.returncode != 0
    assert f"--compare {missing}: not a results file of this benchmark" in run.stderr


def test_the_last_run_to_compare_with_is_the_newest_of_the_same_mode(tmp_path, monkeypatch):
    from bench import run

    monkeypatch.setattr(run, "RESULTS", tmp_path)
    assert run.latest_results("full") is None
    for name in ("2026-01-01T000000+0000-full.json", "2026-02-01T000000+0000-full.json",
                 "2026-03-01T000000+0000-quick.json"):
        (tmp_path / name).write_text("{}")
    assert run.latest_results("full").name == "2026-02-01T000000+0000-full.json"
    assert run.latest_results("quick").name == "2026-03-01T000000+0000-quick.json"


def test_a_run_can_be_narrowed_to_some_pairs_and_tables(tmp_path):
    output = tmp_path / "results.json"
    run = bench("--quick", "--only", "throughput", "--only", "latency", "--only", "size", "--pair", "sqlite:sqlite",
                "--width", "narrow", "--output", str(output))
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(output.read_text())
    assert [(t["pair"], t["width"]) for t in results["throughput"]] == [("SQLite -> SQLite", "narrow")]
    assert [t["pair"] for t in results["latency"]] == ["SQLite -> SQLite"]  # no Airflow runs without PostgreSQL
    assert [t["pair"] for t in results["table_size"]] == ["SQLite -> SQLite"]

    wrong = bench("--pair", "sqlite:oracle", timeout=60)
    assert wrong.returncode == 2
    assert "'sqlite:oracle': give SOURCE:DESTINATION, each one of postgresql, psycopg, mysql, sqlite" in wrong.stderr


# -- the CPU figure ------------------------------------------------------------------------------
BUSY = {"postgresql": "SELECT count(*) FROM generate_series(1, 4000000)",
        "mysql": "SELECT BENCHMARK(3000000, MD5('pdr'))"}


def test_a_postgresql_database_counts_only_its_own_backends(databases):
    busy, idle = databases.new("postgresql"), databases.new("postgresql")  # one server, two databases
    for engine in (busy, idle):
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    with cpu.measured(source=busy, destination=idle) as work, busy.connect() as conn:
        conn.exec_driver_sql(BUSY["postgresql"])
    assert work["source"] >= 0.05, work
    assert work["destination"] < work["source"] / 4, work


def test_a_query_on_mariadb_counts_for_its_side_once(databases):
    mariadb, sqlite = databases.new("mysql"), databases.new("sqlite")
    with cpu.measured(source=mariadb, destination=mariadb, other=sqlite) as work, mariadb.connect() as conn:
        conn.exec_driver_sql(BUSY["mysql"])
    assert work["source"] >= 0.05, work
    assert work["destination"] == 0 and work["other"] == 0, work  # one server counted once; SQLite has none
    assert work.total == pytest.approx(work["source"] + work["process"])


def test_this_process_counts_its_own_work(databases):
    with cpu.measured(source=databases.new("sqlite")) as work:
        stop = time.process_time() + 0.1
        while time.process_time() < stop:
            pass
    assert work["process"] >= 0.1 and work["source"] == 0, work


def test_a_server_on_another_machine_cannot_be_read():
    far = sa.create_engine("postgresql+psycopg2://reader@db.example.com/orders")  # never connected
    with cpu.measured(source=far) as work:
        pass
    assert work["source"] is None and work.total is None
