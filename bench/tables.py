"""The benchmark tables of docs/benchmarks.md, in Markdown, from the JSON of full runs (oldest first): each
figure of the last run, each run's median and the range of every run of the case.

    python -m bench.tables bench/results/<first>.json bench/results/<second>.json ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.verdict import spread

# The copies measured with each throughput case: (table title, key of its figure in the case).
COPIES = [("initial load", "initial_load"), ("resync", "resync")]


def pair_name(pair: str) -> str:
    """A pair as the benchmark tables name it."""
    return pair.replace(" -> ", " → ").replace(
        "PostgreSQL (psycopg 3) → PostgreSQL (psycopg 3)", "PostgreSQL → PostgreSQL with psycopg 3")


def name(case: dict, rows: bool = False) -> str:
    """A throughput case as the benchmark tables name it; Firebird's smaller sizes said, as changes or as rows."""
    pair = pair_name(case["pair"])
    size = ""
    if "Firebird" in pair:
        size = f" ({case['rows']:,} rows)" if rows else f" ({case['changes']:,} changes)"
    return f"{pair}, {case['width']}{size}"


def heading(*titles: str) -> list[str]:
    """A table's title row and its rule: the first column text, the others numbers."""
    return ["| " + " | ".join(titles) + " |", "| --- |" + " ---: |" * (len(titles) - 1)]


def judged(row: dict) -> str:
    """A ratio with a target, in bold where it met it."""
    return f"**{row['ratio']:.2f}**" if row.get("met") else f"{row['ratio']:.2f}"


def span(values: list[float]) -> str:
    return spread(values) if values else ""


class Runs:
    """Full runs, oldest first; `last` is the one the tables show."""

    def __init__(self, runs: list[dict]):
        self.runs, self.last = runs, runs[-1]

    def cases(self, case: dict) -> Iterator[dict]:
        """The same throughput case in every run that has it."""
        for run in self.runs:
            yield from (c for c in run.get("throughput", []) if (c["pair"], c["width"]) == (case["pair"], case["width"]))

    def medians(self, case: dict, figure: Callable[[dict], dict]) -> str:
        return ", ".join(f"{figure(c)['ratio']:.2f}" for c in self.cases(case) if figure(c))

    def range(self, case: dict, figure: Callable[[dict], dict]) -> str:
        return span([ratio for c in self.cases(case) if figure(c) for ratio in figure(c)["ratios"]])

    def others(self, part: str, same: Callable[[dict, dict], bool], row: dict, key: str, form: str = "{:.2f}") -> str:
        """`key` of the same row of `part` in every run."""
        return ", ".join(form.format(other[key]) for run in self.runs for other in run.get(part, []) if same(other, row))


def tables(runs: Runs) -> Iterator[str]:
    """The lines of the tables: throughput, its two copies, CPU, trigger overhead, latency, memory
    and source table size."""
    last = runs.last
    yield from heading("apply throughput", "final rows/s", "baseline rows/s", "reading s", "writing s", "ratio",
                       "medians of the runs", "range")
    for case in last["throughput"]:
        yield (f"| {name(case)} | {case['rows_per_s']:,.0f} | {case['baseline']['rows_per_s']:,.0f} "
               f"| {case['reading_seconds']:.2f} | {case['writing_seconds']:.2f} | {judged(case)} "
               f"| {runs.medians(case, lambda c: c)} | {runs.range(case, lambda c: c)} |")
    for title, key in COPIES:
        yield ""
        yield from heading(f"{title} (same rows, same baseline)", "seconds", "rows/s", "baseline rows/s", "ratio",
                           "medians of the runs", "range")
        for case in last["throughput"]:
            copy, figure = case[key], (lambda c, key=key: c.get(key))
            yield (f"| {name(case, rows=True)} | {copy['seconds']:.2f} | {copy['rows_per_s']:,.0f} "
                   f"| {copy['baseline_rows_per_s']:,.0f} | {copy['ratio']:.2f} | {runs.medians(case, figure)} "
                   f"| {runs.range(case, figure)} |")
    yield ""
    yield from heading("CPU", "source s", "destination s", "process s", "baseline s", "CPU ratio", "range",
                       "source ms / 1,000 changes")
    for case in last["throughput"]:
        cpu = case.get("cpu")
        if cpu:
            source = "(in the process)" if case["pair"].startswith("SQLite") else f"{cpu['source_ms_per_1000_changes']:.1f}"
            yield (f"| {name(case)} | {cpu['source_s']:.2f} | {cpu['destination_s']:.2f} | {cpu['process_s']:.2f} "
                   f"| {cpu['baseline_seconds']:.2f} | {cpu['ratio']:.2f} | {runs.range(case, lambda c: c.get('cpu'))} "
                   f"| {source} |")
    triggers = last.get("triggers", [])
    if triggers:
        operations = list(dict.fromkeys(t["op"] for t in triggers))
        yield ""
        yield from heading("trigger overhead (with / without)", *operations)
        for engine in dict.fromkeys(t["engine"] for t in triggers):
            cells = []
            for t in (t for t in triggers if t["engine"] == engine):
                every = [o["ratio"] for run in runs.runs for o in run.get("triggers", [])
                         if (o["engine"], o["op"]) == (engine, t["op"])]
                cells.append(f"{t['ratio']:.2f} ({span(every)})")
            yield f"| {engine} | " + " | ".join(cells) + " |"
    yield ""
    yield from heading("latency", "p50 ms", "p99 ms", "baseline p50 ms", "ratio (p50)", "p50 of the runs")
    for row in last.get("latency", []):
        yield (f"| {pair_name(row['pair'])} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['baseline_p50_ms']:.0f} | {row['ratio']:.2f} "
               f"| {runs.others('latency', lambda a, b: a['pair'] == b['pair'], row, 'p50_ms', '{:.0f}')} |")
    yield ""
    yield from heading("memory", "seconds", "peak RSS MB", "ratio", "ratio of the runs")
    for row in last.get("memory", []):
        yield (f"| {row['engine']}, {row['changes']:,} changes | {row['seconds']:.1f} | {row['peak_kb'] / 1024:.1f} "
               f"| {row['ratio']:.2f} | {runs.others('memory', lambda a, b: a['changes'] == b['changes'], row, 'ratio')} |")
    sizes = last.get("table_size", [])
    if sizes:
        yield ""
        yield from heading("source table size", "seconds alone", f"beside {sizes[0]['untouched_rows']:,} untouched rows",
                           "ratio", "ratio of the runs")
    for row in sizes:
        yield (f"| {pair_name(row['pair'])} | {row['seconds']:.2f} | {row['large_seconds']:.2f} | {judged(row)} "
               f"| {runs.others('table_size', lambda a, b: a['pair'] == b['pair'], row, 'ratio')} |")


def read(path: str) -> dict:
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path}: not a results file of this benchmark ({error})") from None
    if not isinstance(results, dict) or "throughput" not in results:
        raise SystemExit(f"{path}: not a results file of this benchmark (no 'throughput' key)")
    return results


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print("\n".join(tables(Runs([read(path) for path in paths]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
