"""Installing, upgrading and removing channels in the source database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import (
    ChannelNotFoundError, ConfigurationError, ReflectionSpec, SchemaError, install_channel, pending_changes, reflect,
    uninstall_channel,
)
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.registry import load_channel
from tests.support.tables import create, orders, write


def schema_snapshot(engine: sa.Engine) -> dict:
    """Every table with its columns, plus the triggers, as the database reports them."""
    inspector = sa.inspect(engine)
    tables = {
        name: [(c["name"], str(c["type"])) for c in inspector.get_columns(name)]
        for name in inspector.get_table_names()
    }
    module = engine_module(engine)
    with engine.connect() as conn:
        if module.name == "postgresql":
            triggers = conn.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").all()
            functions = conn.exec_driver_sql(
                "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'"
            ).all()
        elif module.name == "mysql":
            triggers = conn.exec_driver_sql("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                                            "WHERE TRIGGER_SCHEMA = DATABASE()").all()
            functions = []
        else:
            triggers = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").all()
            functions = []
    return {"tables": tables, "triggers": sorted(triggers), "functions": sorted(functions)}


def test_install_is_idempotent_and_uninstall_leaves_the_table_as_before(engine):
    orders(engine)
    before = schema_snapshot(engine)
    first = install_channel(engine, "orders", "orders")
    installed = schema_snapshot(engine)
    assert installed != before
    assert install_channel(engine, "orders", "orders") == first
    assert schema_snapshot(engine) == installed, "a second install must change nothing"
    assert uninstall_channel(engine, "orders") is True
    assert schema_snapshot(engine) == before
    assert uninstall_channel(engine, "orders") is False


def test_pending_counts_changes_and_the_age_of_the_oldest(engine):
    table = orders(engine)
    install_channel(engine, "orders", "orders")
    assert pending_changes(engine, "orders").count == 0
    assert pending_changes(engine, "orders").oldest_age_seconds is None
    write(engine, table.insert(), [{"id": i, "note": "n"} for i in range(5)])
    write(engine, table.update().where(table.c.id == 1).values(note="changed"))
    pending = pending_changes(engine, "orders")
    assert pending.count == 6  # one change row per affected key, on row and statement triggers alike
    assert 0 <= pending.oldest_age_seconds < 60


def test_table_without_primary_key_is_refused_and_nothing_is_installed(engine):
    create(engine, "loose", sa.Column("a", sa.Integer), sa.Column("b", sa.String(10)))
    before = schema_snapshot(engine)
    with pytest.raises(SchemaError, match="'loose' has no primary key"):
        install_channel(engine, "loose", "loose")
    assert schema_snapshot(engine) == before


def test_missing_table_is_a_clear_error(engine):
    with pytest.raises(SchemaError, match="'nowhere' does not exist"):
        install_channel(engine, "c", "nowhere")


@pytest.mark.parametrize("name", ["", "has space", "semi;colon", "quote'", "x" * 64, "-leading"])
def test_bad_channel_names_are_refused(engine, name):
    with pytest.raises(ConfigurationError, match="channel name"):
        install_channel(engine, name, "orders")


def test_unknown_channel_is_a_clear_error(engine):
    orders(engine)
    with pytest.raises(ChannelNotFoundError, match="'ghost' is not installed"):
        pending_changes(engine, "ghost")
    install_channel(engine, "real", "orders")
    with pytest.raises(ChannelNotFoundError, match="'ghost' is not installed"):
        reflect(engine, engine, ReflectionSpec("ghost", "copy"))


def test_a_channel_name_cannot_be_moved_to_another_table(engine):
    orders(engine, "a")
    orders(engine, "b")
    install_channel(engine, "c", "a")
    with pytest.raises(ConfigurationError, match="already watches table"):
        install_channel(engine, "c", "b")


def test_channels_whose_names_differ_only_by_dash_get_distinct_change_tables(engine):
    orders(engine)
    one = install_channel(engine, "a-b", "orders")
    two = install_channel(engine, "a_b", "orders")
    assert one.change_table != two.change_table


def test_upgrade_replaces_triggers_made_by_an_older_version(engine):
    """An older format's triggers (a different body) are replaced, not left beside the new ones."""
    table = orders(engine)
    info = install_channel(engine, "orders", "orders")
    module = engine_module(engine)
    with engine.begin() as conn:
        installed = module.capture_objects(conn, info.table)
        # Simulate triggers left by an older release: same table, another body hash.
        old_base = next(iter(installed))[:-8] + "0ld0ld00"
        module.execute_ddl(conn, module.capture_ddl(info.table, [info.target()], old_base))
        assert module.capture_objects(conn, info.table) == installed | {old_base}
    install_channel(engine, "orders", "orders")
    with engine.connect() as conn:
        assert module.capture_objects(conn, info.table) == installed
    write(engine, table.insert(), {"id": 1})
    assert pending_changes(engine, "orders").count == 1, "exactly one trigger set may capture"


def test_refuses_a_channel_installed_by_a_newer_format(engine):
    orders(engine)
    info = install_channel(engine, "orders", "orders")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE pdr_channels SET format_version = 999"))
    with pytest.raises(ConfigurationError, match="newer airflow-provider-pdr"):
        install_channel(engine, "orders", "orders")
    assert info.format_version == 1


def test_uninstalling_one_of_two_channels_keeps_the_other_capturing(engine):
    table = orders(engine)
    install_channel(engine, "first", "orders")
    install_channel(engine, "second", "orders")
    uninstall_channel(engine, "first")
    write(engine, table.insert(), {"id": 7})
    assert pending_changes(engine, "second").count == 1
    with engine.connect() as conn:
        assert load_channel(conn, engine_module(engine), "second").table.name == "orders"
