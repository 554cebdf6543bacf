"""A reflection's drain put together: the source introspected and checked for drift, the
destination ensured, the plan built, the route chosen; then its reader, writer and acknowledger."""

from __future__ import annotations

import contextlib

from sqlalchemy.engine import Connection, Engine

from airflow_provider_pdr.core import drift
from airflow_provider_pdr.core.drain.ack import Acknowledger
from airflow_provider_pdr.core.drain.destination import ensure_destination
from airflow_provider_pdr.core.drain.plan import DrainPlan
from airflow_provider_pdr.core.drain.read import Reader
from airflow_provider_pdr.core.drain.route import Route, choose_route
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.drain.write import Writer
from airflow_provider_pdr.core.engines import EngineModule, engine_module
from airflow_provider_pdr.core.errors import SchemaError
from airflow_provider_pdr.core.registry import Channel, load_channel
from airflow_provider_pdr.core.schema import introspect_table
from airflow_provider_pdr.core.transform import ColumnMapping, plan_columns


class Drain:
    """One reflection's drain, by role: its plan (tables and statements), its route, the drift
    found in the source, and the reader, writer and acknowledger that work by them."""

    def __init__(self, plan: DrainPlan, route: Route, found: drift.Drift):
        self.plan, self.route, self.drift = plan, route, found
        self.reader = Reader(plan, route)
        self.writer = Writer(plan)
        self.ack = Acknowledger(plan)


def introspect_source(source: Connection, src: EngineModule, channel: Channel, mapping: ColumnMapping):
    """The source table as it is now, and its drift since the channel was installed; SchemaError
    if the drift is one the mapping does not evolve."""
    source_table = introspect_table(source, src, channel.table.name, channel.table.schema)
    missing_keys = [k for k in channel.table.key_columns if k not in source_table.columns]
    if missing_keys:
        raise SchemaError(
            f"source table {str(channel.table)!r} no longer has the key columns {missing_keys} "
            f"of channel {channel.name!r}; reinstall the channel"
        )
    src.decode_faster(source)
    found = drift.detect(channel, source_table, source.dialect, bool(src.capture_objects(source, channel.table)))
    if found and not (mapping.evolve and found.evolvable):
        raise drift.refuse(channel, found, mapping.evolve)
    return source_table, found


def prepare_drain(source: Connection, destination: Connection, src: EngineModule, dst: EngineModule,
                  channel: Channel, spec: ReflectionSpec) -> Drain:
    """The drain of `channel` as `spec` has it: the source introspected, the destination table
    created or given new columns where asked (committed), the plan built and the route chosen."""
    mapping = spec.mapping or ColumnMapping()
    table = spec.destination_table or channel.table.name
    source_table, found = introspect_source(source, src, channel, mapping)
    mapped = plan_columns(mapping, source_table, channel.table.key_columns)
    target = ensure_destination(destination, dst, mapped, source_table, table, spec.destination_schema,
                                create_table=spec.create_table, evolve=mapping.evolve)
    plan = DrainPlan(channel, src, dst, mapping, mapped, source_table, target, spec.deletes, destination.dialect)
    route = choose_route(plan, source, destination, spec.route)
    source.rollback()
    destination.rollback()
    return Drain(plan, route, found)


@contextlib.contextmanager
def open_drain(source: Engine, destination: Engine, spec: ReflectionSpec):
    """A Drain on one source and one destination connection, for work beside the reflect loop
    (snapshot, reconcile); its channel is `drain.plan.channel`, its destination table `drain.plan.target`."""
    src, dst = engine_module(source), engine_module(destination)
    with source.connect() as sconn, destination.connect() as dconn:
        info = load_channel(sconn, src, spec.channel)
        sconn.rollback()
        yield prepare_drain(sconn, dconn, src, dst, info, spec), sconn, dconn
