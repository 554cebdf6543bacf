"""Benchmarks of the core: apply throughput, trigger overhead, latency and memory.

Run with ``make bench`` (full) or ``python -m bench --quick`` (seconds, proves it still works).
"""
