"""The benchmark's quick mode still runs end to end, exactly as `make bench` starts it.

No timing is asserted here: the figures are bench/'s job, on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_writes_every_figure(tmp_path):
    output = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(output)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
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
    assert all(t["initial_load"]["ratio"] > 0 for t in results["throughput"])
    assert {t["engine"] for t in results["triggers"]} == {"PostgreSQL", "MariaDB"}
    assert all(0 < t["p50_ms"] <= t["p99_ms"] for t in results["latency"]) and results["latency"]
    assert [m["changes"] for m in results["memory"]] == [2_000, 20_000]
    assert all(m["peak_kb"] > 0 for m in results["memory"])
    assert "1. Apply throughput" in run.stdout and "1b. Initial load" in run.stdout and "4. Memory" in run.stdout
