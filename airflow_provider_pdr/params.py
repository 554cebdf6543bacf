"""What a DAG run asks of the provider's tasks through its params or its run conf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def full_refresh_requested(context: Any) -> bool:
    """A run asked for a resync: ``full_refresh`` true in the DAG params or the run conf."""
    if not isinstance(context, Mapping):
        return False
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    return bool((context.get("params") or {}).get("full_refresh") or conf.get("full_refresh"))
