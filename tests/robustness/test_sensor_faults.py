"""The source unreachable while the sensor's trigger waits: it keeps waiting through the outage,
fires once the source is back with the changes made meanwhile, and times out clearly if the
source never returns."""

from __future__ import annotations


import asyncio
import time

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import install_channel
from airflow_provider_pdr.triggers import PendingChangesTrigger
from tests.support.tables import orders, write
from tests.support.faults import TcpProxy


def proxied_source(source, connect):
    proxy = TcpProxy(source.url.host, source.url.port or {"postgresql": 5432, "mysql": 3306}[source.dialect.name])
    return proxy, connect("behind", sa.create_engine(proxy.url(source)))


async def first_event(trigger: PendingChangesTrigger, during=None) -> dict:
    runner = trigger.run()
    task = asyncio.ensure_future(runner.__anext__())
    if during is not None:
        await during()
    try:
        return (await asyncio.wait_for(task, 30)).payload
    finally:
        await runner.aclose()


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_the_trigger_waits_through_an_outage_and_fires_with_the_changes_made_meanwhile(source, connect):
    table = orders(source)
    install_channel(source, "orders", "orders")
    proxy, conn_id = proxied_source(source, connect)
    write(source, table.insert(), {"id": 0})

    async def outage():
        await asyncio.sleep(0.5)  # the trigger counted one change (LISTENing on PostgreSQL)
        proxy.down()
        write(source, table.insert(), [{"id": i} for i in range(1, 6)])
        await asyncio.sleep(1.0)  # polls fail meanwhile
        proxy.up()

    trigger = PendingChangesTrigger(conn_id, "orders", min_changes=5, poll_interval=0.2, deadline=time.time() + 30)
    event = asyncio.run(first_event(trigger, outage))
    proxy.down()
    assert event["status"] == "success" and event["pending"] == 6, event


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_source_that_never_returns_times_out_naming_the_error(source, connect):
    orders(source)
    install_channel(source, "orders", "orders")
    proxy, conn_id = proxied_source(source, connect)
    proxy.down()
    trigger = PendingChangesTrigger(conn_id, "orders", poll_interval=0.2, deadline=time.time() + 2)
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "timeout", event
    assert "channel 'orders'" in event["message"] and "unreachable" in event["message"], event
