"""4. Memory: peak RSS of a process draining a large backlog, against a backlog ten times smaller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from airflow_provider_pdr.core import install_channel
from bench.databases import LABELS, Databases
from bench.workload import BATCH_SIZE, CHANNEL, narrow


def memory(dbs: Databases, kind: str, changes: int) -> dict:
    """Drain `changes` inserts in a child process and take its peak RSS."""
    source_url, destination_url = dbs.url(kind), dbs.url(kind)
    source = sa.create_engine(source_url)
    table = narrow()
    table.create(source)
    install_channel(source, CHANNEL, table.name)
    with source.connect() as conn:
        for lo in range(0, changes, 50_000):
            conn.execute(table.insert(), [{"id": k, "qty": k % 100, "note": f"note {k}"}
                                          for k in range(lo, min(changes, lo + 50_000))])
            conn.commit()
    source.dispose()
    child = subprocess.run(
        [sys.executable, "-m", "bench.drain", source_url.render_as_string(hide_password=False),
         destination_url.render_as_string(hide_password=False), CHANNEL, str(BATCH_SIZE)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    )
    return {"engine": LABELS[kind], "changes": changes, **json.loads(child.stdout)}
