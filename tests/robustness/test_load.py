"""Load: 16 concurrent writers (inserts, updates, deletes, key updates, 10% rollbacks, some
long transactions) while reflect runs again and again; the end state is compared row for row."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, install_channel, pending_changes, reflect
from tests.support.tables import orders
from tests.support.faults import Writers, same_rows

WRITE_SECONDS = 3.0


@pytest.mark.parametrize(
    "source,destination", [("postgresql", "mysql"), ("mysql", "postgresql"), ("postgresql", "sqlite")],
    indirect=True,
)
def test_sixteen_writers_while_reflect_runs_repeatedly(source, destination):
    table = orders(source)
    install_channel(source, "orders", "orders")
    writing = sa.create_engine(source.url, pool_size=16, max_overflow=4)
    runs = changes = 0
    with Writers(writing, table, threads=16, keys=300, rollback_rate=0.1, long_rate=0.03, seed=3) as writers:
        deadline = time.monotonic() + WRITE_SECONDS
        while time.monotonic() < deadline:
            result = reflect(source, destination, ReflectionSpec("orders", "mirror", create_table=True), batch_size=40,
                             max_batches=4)
            runs, changes = runs + 1, changes + result.changes
    writing.dispose()
    assert not writers.errors, writers.errors[:3]
    assert writers.counts["rolled back"] > 0 and writers.counts["long"] > 0 and writers.committed > 100
    changes += reflect(source, destination, ReflectionSpec("orders", "mirror")).changes
    expected, actual = same_rows(source, "orders", destination, "mirror")
    assert actual == expected
    assert pending_changes(source, "orders").count == 0
    print(f"\nRELIABILITY load: {source.dialect.name}->{destination.dialect.name} runs={runs} "
          f"commits={writers.committed} statements={writers.counts['statements']} "
          f"rollbacks={writers.counts['rolled back']} long={writers.counts['long']} "
          f"conflicts={writers.counts['conflicts']} changes={changes} rows={len(expected)}")
