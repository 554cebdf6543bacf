"""What a reflection is, as reflect, snapshot and reconcile all take it: which channel, into
which destination table, reshaped how, and how its runs may go. The limits of one run
(batch_size, time_budget, resync, repair...) stay arguments of each function."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_pdr.core.drain.route import ANY_ROUTE, RoutePolicy
from airflow_provider_pdr.core.transform import ColumnMapping


@dataclass(frozen=True)
class ReflectionSpec:
    channel: str
    destination_table: str | None = None  # None: the source table's name
    destination_schema: str | None = None
    mapping: ColumnMapping | None = None  # reshapes rows (core/transform.py)
    deletes: bool = True  # False: rows the source deletes stay in the mirror
    create_table: bool = False  # create the destination table, and add the columns it lacks (not by reconcile)
    lock_timeout: float = 60.0  # seconds to wait for the channel's lock
    route: RoutePolicy = ANY_ROUTE  # the routes rows may take (core/drain/route.py)
