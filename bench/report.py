"""The run's figures as text tables, each ending with its verdict."""

from __future__ import annotations

from collections.abc import Callable

from bench import verdict


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
