"""Reflection config files for the factory tests: one good, one with a misspelt key."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD = """
defaults:
  source: {conn_id: src}
  destination: {conn_id: dst}
  on_failure_callback: builtins.print  # any importable callable taking the context
  tags: [sales]
reflections:
  - name: orders
    source: {table: orders, schema: sales}
    destination: {table: orders_copy, schema: mirror}
    batch_size: 100
    min_changes: 50
    max_wait: 20
    poke_interval: 5
    wait_timeout: 600
    time_budget: 120
    deletes: false
    create_table: true
    retries: 5
    owner: data-team
  - name: customers
    source: {table: customers}
    destination: {table: customers}
    schedule: "*/5 * * * *"
    deferrable: false
  - name: manual
    source: {table: t}
    destination: {table: t}
    channel: manual_v2
    schedule: null
"""
BAD = """
reflections:
  - {name: broken, source: {conn_id: src, table: b}, destination: {conn_id: dst, table: b}, batch_sise: 10}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder / name
