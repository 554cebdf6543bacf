"""Secrets: a connection's password never reaches logs, XCom, or any error (with its whole
chain of causes), whether the run succeeds, a row is rejected, the server is unreachable or
the password is wrong. MariaDB checks the password for real here."""

from __future__ import annotations


import json
import logging
import traceback

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import ApplyError, UnreachableError
from airflow_provider_pdr.operators import InstallTriggersOperator, ReflectOperator
from airflow_provider_pdr.sensors import PendingChangesSensor
from tests.support.databases import execute, unique_name
from tests.support.tables import create, orders, write
from tests.support.faults import TcpProxy

SECRET = "pdr-Hostile-Secret-7qz"
USER = unique_name("pdr_u")  # per run: suites running side by side must not drop each other's user


@pytest.fixture
def guarded(databases):
    """A MariaDB database reachable only with USER and SECRET."""
    engine = databases.new("mysql")
    name = engine.url.database
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER IF NOT EXISTS '{USER}'@'%%' IDENTIFIED BY '{SECRET}'")
        conn.exec_driver_sql(f"GRANT ALL ON `{name}`.* TO '{USER}'@'%%'")
    yield sa.create_engine(engine.url.set(username=USER, password=SECRET))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP USER IF EXISTS '{USER}'@'%%'")


def leaked(*texts) -> list[str]:
    return [text for text in texts if SECRET in text]


def full(error: BaseException) -> str:
    """The error as a log would print it: message, traceback and every chained cause."""
    return "".join(traceback.format_exception(error)) + repr(error)


def test_passwords_stay_out_of_logs_xcom_and_errors(guarded, databases, connect, caplog):
    caplog.set_level(logging.DEBUG)
    destination = databases.new("postgresql")
    table = orders(guarded)
    create(destination, "strict",
           sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("note", sa.String(100)), sa.Column("amount", sa.Numeric(12, 2)),
           sa.CheckConstraint("amount >= 0"))
    src, dst = connect("guarded", guarded), connect("dst", destination)
    xcoms = [InstallTriggersOperator(task_id="i", source_conn_id=src, source_table="orders", channel="orders")
             .execute({})]
    write(guarded, table.insert(), [{"id": i, "note": "ok", "amount": 1} for i in range(5)])
    xcoms.append(ReflectOperator(task_id="r", source_conn_id=src, channel="orders", destination_conn_id=dst,
                                 destination_table="mirror", create_table=True).execute({}))
    assert xcoms[-1]["upserted"] == 5
    errors = []

    # A rejected row, then a mirror on a guarded destination behind a proxy that goes down.
    install = InstallTriggersOperator(task_id="i2", source_conn_id=src, source_table="orders", channel="strict")
    xcoms.append(install.execute({}))
    write(guarded, table.update().values(amount=-1))
    with pytest.raises(ApplyError) as rejected:
        ReflectOperator(task_id="r2", source_conn_id=src, channel="strict", destination_conn_id=dst,
                        destination_table="strict").execute({})
    errors.append(rejected.value)

    proxy = TcpProxy(guarded.url.host, guarded.url.port or 3306)
    behind = connect("behind", sa.create_engine(proxy.url(guarded)))
    proxy.down()
    with pytest.raises(UnreachableError) as unreachable:
        ReflectOperator(task_id="r3", source_conn_id=src, channel="orders", destination_conn_id=behind,
                        destination_table="mirror", create_table=True).execute({})
    errors.append(unreachable.value)
    with pytest.raises(Exception) as sensing:
        PendingChangesSensor(task_id="s", source_conn_id=behind, channel="orders").poke({})
    errors.append(sensing.value)

    # A wrong password: the secret is the attempted password itself.
    wrong = connect("wrong", sa.create_engine(guarded.url.set(password=SECRET + "-wrong")))
    for operator in (
        InstallTriggersOperator(task_id="i3", source_conn_id=wrong, source_table="orders", channel="x"),
        ReflectOperator(task_id="r4", source_conn_id=src, channel="orders", destination_conn_id=wrong,
                        destination_table="mirror"),
    ):
        with pytest.raises(Exception) as denied:
            operator.execute({})
        errors.append(denied.value)

    assert "Access denied" in str(errors[-1]) or "denied" in full(errors[-1]).lower()
    assert "127.0.0.1" in full(unreachable.value)  # the error says where, without the password
    assert not leaked(*[full(error) for error in errors])
    assert not leaked(json.dumps(xcoms, default=str))
    assert caplog.records and not leaked(caplog.text)
    execute(guarded, "SELECT 1")  # the guard really checks passwords: the right one still works


def test_unknown_connection_ids_are_named():
    from airflow.sdk.exceptions import AirflowNotFoundException

    for operator in (
        InstallTriggersOperator(task_id="i", source_conn_id="no_such_conn", source_table="t", channel="c"),
        ReflectOperator(task_id="r", source_conn_id="src_missing", channel="c", destination_conn_id="dst_missing",
                        destination_table="t"),
        PendingChangesSensor(task_id="s", source_conn_id="no_such_conn", channel="c"),
    ):
        with pytest.raises(AirflowNotFoundException, match=r"`(no_such_conn|src_missing)` isn't defined"):
            operator.poke({}) if isinstance(operator, PendingChangesSensor) else operator.execute({})
