"""What a run's figures say: each ratio against its target, and against an earlier run's results.

Targets (the benchmark's own): apply throughput at least half the baseline; single-row source
transactions on PostgreSQL and MariaDB less than a quarter slower with the channel installed;
peak memory that does not grow with the backlog (ten times the changes, at most a tenth more);
a backlog drained at least half as fast from a table that holds twenty times its rows besides.

An earlier run is compared figure by figure. A figure measured several times (apply throughput,
initial load, resync, CPU) moved when its range no longer overlaps the earlier range; a figure measured once
moved when its ratio changed by more than a fifth, what one run alone moves by on a shared machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

NOISE = 1.25  # a single run's ratio moves by up to a fifth either way
# The copies measured beside each drain, against the drain's baseline, by key in its results.
COPIES = {"initial_load": "1b. Initial load: the same final rows copied into an empty table (reflect with initial_load)",
          "resync": "1c. Resync: those rows copied again over that copy, then its keys swept (snapshot with resync)"}
# Every figure measured with each drain, by key in its results: its copies, and its CPU time.
BESIDE = [*COPIES, "cpu"]


def figures(results: dict) -> Iterator[tuple[str, dict]]:
    """(name, row) of every ratio in the results; the name is the same in every run."""
    for row in results.get("throughput", []):
        yield f"apply throughput, {row['pair']}, {row['width']}", row
        for kind in BESIDE:
            if kind in row:  # results of earlier releases may lack them, and CPU needs local servers
                yield f"{kind.replace('_', ' ')}, {row['pair']}, {row['width']}", row[kind]
    for row in results.get("triggers", []):
        yield f"trigger overhead, {row['engine']}, {row['op']}", row
    for row in results.get("latency", []):
        yield f"latency, {row['pair']}", row
    for row in results.get("memory", [])[1:]:  # the first backlog is the others' baseline
        yield f"memory, {row['engine']}, {row['changes']:,} changes", row
    for row in results.get("table_size", []):
        yield f"table size, {row['pair']}", row


def target(name: str) -> tuple[str, float] | None:
    """The figure's target as (">=" or "<=", ratio), or None where it has none."""
    if name.startswith("apply throughput"):
        return ">=", 0.5
    if name.startswith(("trigger overhead, PostgreSQL", "trigger overhead, MariaDB")) and name.endswith(" 1 row"):
        return ">=", 0.75
    if name.startswith("memory"):
        return "<=", 1.1
    if name.startswith("table size"):
        return ">=", 0.5
    return None


def lower_is_better(name: str) -> bool:
    return name.startswith("memory")  # peak RSS of the large backlog over the small one


def judge(results: dict) -> None:
    """Set `target` (e.g. ">= 0.50") and `met` on every figure that has a target."""
    for name, row in figures(results):
        goal = target(name)
        if goal is not None:
            sign, bound = goal
            row["target"] = f"{sign} {bound:.2f}"
            row["met"] = row["ratio"] >= bound if sign == ">=" else row["ratio"] <= bound


def compare(results: dict, earlier: dict, source: Path) -> None:
    """Set `previous` (the earlier ratio, or its range) on every figure both runs have, and
    `moved` ("better" or "worse") where it moved beyond the run-to-run noise."""
    before = dict(figures(earlier))
    results["compared_with"] = {"file": str(source), "started": earlier.get("started"), "mode": earlier.get("mode")}
    for name, row in figures(results):
        old = before.get(name)
        if old is None:
            continue
        now, then = row.get("ratios") or [row["ratio"]], old.get("ratios") or [old["ratio"]]
        row["previous"] = spread(then) if len(then) > 1 else f"{then[0]:.2f}"
        if len(now) > 1 and len(then) > 1:
            up, down = min(now) > max(then), max(now) < min(then)
        else:
            up, down = row["ratio"] > old["ratio"] * NOISE, row["ratio"] < old["ratio"] / NOISE
        if up or down:
            row["moved"] = "better" if up != lower_is_better(name) else "worse"


def spread(ratios: list[float]) -> str:
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def summary(results: dict) -> str:
    """Lines for the end of the report: targets met and missed; figures that moved."""
    judged = [(name, row) for name, row in figures(results) if "met" in row]
    missed = [f"  {name}: {row['ratio']:.2f} (target {row['target']})" for name, row in judged if not row["met"]]
    lines = [f"Targets: {len(judged) - len(missed)} of {len(judged)} met"
             + (" (quick mode: sizes too small for the figures to mean anything)" if results["mode"] == "quick" else "")]
    if missed:
        lines += ["Missed:", *missed]
    compared = results.get("compared_with")
    if compared:
        moved = [(name, row) for name, row in figures(results) if "moved" in row]
        lines.append(f"Against {compared['file']} ({compared['mode']} run of {compared['started']}): "
                     f"{len(moved)} figure{'' if len(moved) == 1 else 's'} moved beyond run-to-run noise")
        lines += [f"  {row['moved']}: {name}: {row['ratio']:.2f}, was {row['previous']}" for name, row in moved]
    return "\n".join(lines)
