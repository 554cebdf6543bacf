"""Hostile input: names that try SQL injection, tables without keys or gone missing, types
that do not travel, installs that fail halfway, and the edges of what the capture triggers
must accept without ever failing a user's write."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from contextlib import nullcontext

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from airflow_provider_pdr.core import (
    ChannelNotFoundError, ConfigurationError, PdrError, ReflectionSpec, SchemaError, install_channel, pending_changes,
    reflect, uninstall_channel,
)
from airflow_provider_pdr.core.engines import engine_module
from tests.support.databases import execute, q
from tests.support.tables import create, orders, table_rows, write

HOSTILE_NAMES = [
    'x"; DROP TABLE victim; --',
    "o'reilly'); DELETE FROM victim; --",
    "a`b`; DROP TABLE victim; #",
    "[br]acket] /* c */ ; select 1",
    "new",  # a reserved word inside trigger bodies (NEW.x)
]
PAIRS = [("postgresql", "mysql"), ("mysql", "sqlite"), ("sqlite", "postgresql")]


def victim(engine: sa.Engine) -> sa.Table:
    table = create(engine, "victim", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    write(engine, table.insert(), {"id": 1})
    return table


def assert_unharmed(*engines: sa.Engine) -> None:
    for engine in engines:
        assert table_rows(engine, "victim") == [(1,)], f"{engine.dialect.name}: victim table touched"


def objects(engine: sa.Engine) -> set[tuple[str, str]]:
    """Every table and trigger (and PostgreSQL function) in the database, to compare before/after."""
    with engine.connect() as conn:
        found = {("table", name) for name in sa.inspect(conn).get_table_names()}
        query = {
            "postgresql": "SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal UNION ALL "
                          "SELECT 'function', proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                          "WHERE n.nspname = 'public'",
            "mysql": "SELECT 'trigger', TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
            "sqlite": "SELECT type, name FROM sqlite_master WHERE type = 'trigger'",
        }[engine.dialect.name]
        return found | {tuple(row) for row in conn.exec_driver_sql(query)}


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("source,destination", PAIRS, indirect=True)
def test_hostile_table_and_column_names_are_quoted_never_executed(source, destination):
    victim(source)
    victim(destination)
    for n, name in enumerate(HOSTILE_NAMES):
        table = create(
            source, name,
            sa.Column(name, sa.Integer, primary_key=True, autoincrement=False),
            sa.Column(f"{name} 2", sa.String(50)),
        )
        channel = f"hostile-{n}"
        refused = "`" in name and source.dialect.name == "mysql"
        before = objects(source)
        with pytest.raises(ConfigurationError, match="backtick") if refused else nullcontext():
            install_channel(source, channel, name)
        if refused:  # MySQL names with a backtick are refused clearly, nothing created
            assert objects(source) == before
            continue
        write(source, table.insert(), [{name: i, f"{name} 2": f"{name}{i}"} for i in range(5)])
        write(source, table.update().where(table.c[name] == 1).values({name: 10}))
        write(source, table.delete().where(table.c[name] == 2))
        if "`" in name and destination.dialect.name == "mysql":
            with pytest.raises(ConfigurationError, match="backtick"):
                reflect(source, destination, ReflectionSpec(channel, name, create_table=True))
            assert not sa.inspect(destination).has_table(name)
            assert pending_changes(source, channel).count == 8
            continue
        reflect(source, destination, ReflectionSpec(channel, name, create_table=True))
        assert table_rows(destination, name) == table_rows(source, name), name
        assert pending_changes(source, channel).count == 0
        assert uninstall_channel(source, channel)
    assert_unharmed(source, destination)


BAD_CHANNELS = ["a'; DROP TABLE victim; --", "x;y", "a b", "`x`", "[x]", "x/*", "é", "", " x", "-x", "a" * 64, None, 7]


def test_hostile_channel_names_are_refused_before_anything_runs(engine):
    victim(engine)
    orders(engine)
    before = objects(engine)
    for name in BAD_CHANNELS:
        with pytest.raises(ConfigurationError, match="channel name .* is invalid"):
            install_channel(engine, name, "orders")
        with pytest.raises(ConfigurationError, match="channel name .* is invalid"):
            uninstall_channel(engine, name)
        with pytest.raises((ConfigurationError, ChannelNotFoundError)):
            reflect(engine, engine, ReflectionSpec(name, "orders"))
        with pytest.raises((ConfigurationError, ChannelNotFoundError)):
            pending_changes(engine, name)
    assert objects(engine) == before
    assert_unharmed(engine)


def test_names_no_engine_can_quote_are_refused(engine):
    orders(engine)
    for name in ["x\x00y", "t" * 129, "", "   "]:
        with pytest.raises(ConfigurationError, match="table name"):
            install_channel(engine, "orders", name)


def test_hostile_schema_and_destination_names_fail_as_missing_objects(engine, databases):
    victim(engine)
    orders(engine)
    hostile = "public; DROP TABLE victim; --"
    with pytest.raises(SchemaError, match="does not exist"):
        install_channel(engine, "orders", "orders", schema=hostile)
    install_channel(engine, "orders", "orders")
    write(engine, sa.text(f"INSERT INTO {q(engine, 'orders')} (id) VALUES (1)"))
    destination = databases.new("sqlite")
    with pytest.raises(SchemaError, match=r"victim; --\.mirror' does not exist"):
        reflect(engine, destination, ReflectionSpec("orders", "mirror", destination_schema=hostile, create_table=False))
    with pytest.raises(SchemaError, match=r"table 'x\"; DROP TABLE victim; --' does not exist"):
        reflect(engine, destination, ReflectionSpec("orders", 'x"; DROP TABLE victim; --'))
    assert pending_changes(engine, "orders").count == 1, "nothing acknowledged"
    assert_unharmed(engine)


# -- tables that cannot be mirrored -------------------------------------------------------------


def test_tables_without_a_usable_key_are_refused_and_leave_nothing(engine):
    create(engine, "no_key", sa.Column("a", sa.Integer), sa.Column("b", sa.String(10)))
    create(engine, "unique_only", sa.Column("a", sa.Integer, unique=True, nullable=True), sa.Column("b", sa.Integer))
    before = objects(engine)
    for name in ("no_key", "unique_only"):  # a NULL-able unique column is not a key
        with pytest.raises(SchemaError, match=rf"'{name}' has no primary key"):
            install_channel(engine, "c", name)
    with pytest.raises(SchemaError, match="'gone' does not exist"):
        install_channel(engine, "c", "gone")
    assert objects(engine) == before


@pytest.mark.parametrize("source", ["postgresql", "mysql"], indirect=True)
def test_a_destination_without_the_source_key_is_refused_before_writing(source, databases):
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), {"id": 1})
    destination = databases.new("postgresql")
    create(destination, "keyless", sa.Column("id", sa.Integer), sa.Column("note", sa.String(100)),
           sa.Column("amount", sa.Numeric(12, 2)))
    with pytest.raises(SchemaError, match=r"'keyless' must have the primary key \['id'\]"):
        reflect(source, destination, ReflectionSpec("orders", "keyless"))
    with pytest.raises(SchemaError, match=r"'missing' does not exist"):
        reflect(source, destination, ReflectionSpec("orders", "missing"))
    assert pending_changes(source, "orders").count == 1


@pytest.mark.parametrize("destination_kind", ["postgresql", "mysql", "sqlite"])
def test_a_destination_keyed_by_a_unique_constraint_is_mirrored(databases, destination_kind):
    """A mirror whose own primary key is a surrogate takes the source's key as a unique
    constraint: it is found beside the primary key, and rows are upserted on it."""
    source, destination = databases.new("postgresql"), databases.new(destination_kind)
    table = orders(source)
    install_channel(source, "orders", "orders")
    create(destination, "keyed", sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
           sa.Column("id", sa.Integer, nullable=False, unique=True), sa.Column("note", sa.String(100)),
           sa.Column("amount", sa.Numeric(12, 2)))
    write(source, table.insert(), [{"id": 1, "note": "a"}, {"id": 2, "note": "b"}])
    reflect(source, destination, ReflectionSpec("orders", "keyed"))
    write(source, table.update().where(table.c.id == 1).values(note="changed"))
    write(source, table.delete().where(table.c.id == 2))
    reflect(source, destination, ReflectionSpec("orders", "keyed"))
    assert [row[1:3] for row in table_rows(destination, "keyed")] == [(1, "changed")]


@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_an_unsupported_type_creates_nothing_in_the_destination(source, destination):
    create(source, "odd", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
           sa.Column("span", postgresql.INTERVAL), sa.Column("tags", postgresql.ARRAY(sa.Integer)))
    install_channel(source, "odd", "odd")
    execute(source, "INSERT INTO odd (id, span, tags) VALUES (1, '1 day', '{1,2}')")
    with pytest.raises(PdrError, match=r"odd\.span.*no portable equivalent"):
        reflect(source, destination, ReflectionSpec("odd", "odd", create_table=True))
    assert not sa.inspect(destination).has_table("odd")
    assert pending_changes(source, "odd").count == 1


# -- an install that fails halfway --------------------------------------------------------------


def fail_on_second_ddl(monkeypatch, module_class):
    """Let the capture DDL run its first statement, then fail as a server would."""
    original = module_class.execute_ddl

    def failing(self, conn, statements):
        if len(statements) > 1 and statements[0].lstrip().upper().startswith("CREATE"):
            original(self, conn, statements[:1])
            raise sa.exc.OperationalError(statements[1][:60], {}, Exception("injected failure"))
        return original(self, conn, statements)

    monkeypatch.setattr(module_class, "execute_ddl", failing)


def test_a_failed_install_leaves_the_source_as_it_was(engine, monkeypatch):
    table = orders(engine)
    before = objects(engine)
    with monkeypatch.context() as patch:
        fail_on_second_ddl(patch, type(engine_module(engine)))
        with pytest.raises(sa.exc.OperationalError, match="injected failure"):
            install_channel(engine, "orders", "orders")
    assert objects(engine) == before
    write(engine, table.insert(), {"id": 1})  # and the user's writes go on
    with pytest.raises(ChannelNotFoundError):
        pending_changes(engine, "orders")
    install_channel(engine, "orders", "orders")  # a retry installs cleanly
    write(engine, table.insert(), {"id": 2})
    assert pending_changes(engine, "orders").count == 1


def test_a_failed_second_channel_leaves_the_first_one_capturing(engine, monkeypatch):
    table = orders(engine)
    install_channel(engine, "first", "orders")
    before = objects(engine)
    with monkeypatch.context() as patch:
        fail_on_second_ddl(patch, type(engine_module(engine)))
        with pytest.raises(sa.exc.OperationalError, match="injected failure"):
            install_channel(engine, "second", "orders")
    assert objects(engine) == before
    write(engine, table.insert(), [{"id": 1}, {"id": 2}])
    write(engine, table.update().where(table.c.id == 1).values(id=3))
    assert pending_changes(engine, "first").count == 4
    with pytest.raises(ChannelNotFoundError):
        pending_changes(engine, "second")


# -- the triggers never fail a user's write -----------------------------------------------------


def edge_writes(engine: sa.Engine, table: sa.Table, rows: list[dict], key: str) -> None:
    """Insert, update every column, update the key, upsert and delete: all must succeed."""
    write(engine, table.insert(), rows)
    with engine.begin() as conn:
        for row in rows:
            conn.execute(table.update().where(table.c[key] == row[key]).values(note="updated"))


@pytest.mark.parametrize("destination", ["postgresql", "sqlite"], indirect=True)
@pytest.mark.parametrize("source", ["mysql"], indirect=True)
def test_mysql_key_edges_never_fail_a_write(source, destination):
    longest = "🙂" * 768  # VARCHAR(768) utf8mb4 is the longest key InnoDB indexes (3072 bytes)
    long_keys = create(source, "longest", sa.Column("k", mysql.VARCHAR(768), primary_key=True),
                       sa.Column("note", sa.String(20)))
    install_channel(source, "longest", "longest")
    write(source, long_keys.insert(), [{"k": longest, "note": "a"}, {"k": "🙂", "note": "b"}])
    write(source, long_keys.update().where(long_keys.c.k == "🙂").values(k=longest[:-1] + "!"))
    reflect(source, destination, ReflectionSpec("longest", "longest", create_table=True))
    assert table_rows(destination, "longest") == table_rows(source, "longest")

    table = create(
        source, "edges",
        sa.Column("k", mysql.VARCHAR(100, collation="utf8mb4_general_ci"), primary_key=True),
        sa.Column("n", mysql.BIGINT(unsigned=True), primary_key=True, autoincrement=False),
        sa.Column("d", mysql.DECIMAL(65, 30), primary_key=True),
        sa.Column("t", mysql.DATETIME(fsp=6), primary_key=True),
        sa.Column("b", mysql.VARBINARY(255), primary_key=True),
        sa.Column("note", sa.String(20)),
        sa.Column("other", sa.Integer, unique=True, nullable=True),
    )
    install_channel(source, "edges", "edges")
    top = decimal.Decimal("9" * 35 + "." + "9" * 30)
    keys = [
        {"k": longest[:100], "n": 2**64 - 1, "d": top, "t": dt.datetime(9999, 12, 31, 23, 59, 59, 999999), "b": bytes(range(255))},
        {"k": "", "n": 0, "d": decimal.Decimal("-" + str(top)), "t": dt.datetime(1000, 1, 1), "b": b""},
        {"k": "Case ", "n": 1, "d": decimal.Decimal("1e-30"), "t": dt.datetime(2024, 2, 29, 12), "b": b"\x00"},
    ]
    write(source, table.insert(), [{**key, "note": "new", "other": None} for key in keys])
    with source.begin() as conn:
        conn.execute(table.update().values(note="updated"))
        conn.execute(table.update().where(table.c.k == "case ").values(k="CASE "))  # case-only key change
        conn.execute(table.update().where(table.c.n == 0).values(other=7))
        conn.exec_driver_sql("REPLACE INTO edges (k, n, d, t, b, note) VALUES ('', 0, 0, '2000-01-01', '', 'r')")
        conn.exec_driver_sql("INSERT INTO edges (k, n, d, t, b, note) VALUES ('x', 5, 0, '2000-01-01', 'x', 'i') "
                             "ON DUPLICATE KEY UPDATE note = 'dup'")
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # a lax session writes through strict triggers too
        conn.exec_driver_sql("INSERT INTO edges (k, n, d, t, b, note) VALUES ('lax', 9, 0, '2000-01-01', 'y', 'z')")
    write(source, table.delete().where(table.c.n == 9))
    reflect(source, destination, ReflectionSpec("edges", "edges", create_table=True))
    assert table_rows(destination, "edges") == table_rows(source, "edges")


@pytest.mark.parametrize("destination", ["mysql", "sqlite"], indirect=True)
@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_postgresql_key_edges_never_fail_a_write(source, destination):
    table = create(
        source, "edges",
        sa.Column("k", sa.Text, primary_key=True),
        sa.Column("u", sa.Uuid, primary_key=True),
        sa.Column("t", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("note", sa.String(20)),
    )
    install_channel(source, "edges", "edges")
    huge = "x" * 2_000 + "é'\";--" + "y" * 500  # a long TEXT key, and quotes in key values
    utc = dt.timezone.utc
    keys = [
        {"k": huge, "u": uuid.UUID(int=0), "t": dt.datetime(1, 1, 1, tzinfo=utc)},
        {"k": "", "u": uuid.UUID(int=2**128 - 1), "t": dt.datetime(9999, 12, 31, tzinfo=utc)},
        {"k": "k", "u": uuid.uuid4(), "t": dt.datetime(2024, 2, 29, tzinfo=utc)},
    ]
    write(source, table.insert(), [{**key, "note": "new"} for key in keys])
    with source.begin() as conn:
        conn.execute(table.update().values(note="updated"))
        conn.execute(table.update().values(k=table.c.k + "!"))  # every key changes in one statement
        conn.exec_driver_sql("INSERT INTO edges (k, u, t, note) VALUES ('k!', %(u)s, %(t)s, 'again') "
                             "ON CONFLICT (k, u, t) DO UPDATE SET note = 'conflict'",
                             {"u": keys[2]["u"], "t": keys[2]["t"]})
    execute(source, "TRUNCATE edges")
    write(source, table.insert(), [{**key, "note": "after truncate"} for key in keys[1:]])
    if destination.dialect.name == "mysql":  # a TEXT key needs a prefix index there: create it by hand
        execute(destination, "CREATE TABLE edges (k VARCHAR(3000) COLLATE utf8mb4_bin, u CHAR(36), t DATETIME(6), "
                             "note VARCHAR(20), PRIMARY KEY (k(700), u, t))")
    reflect(source, destination, ReflectionSpec("edges", "edges", create_table=True))
    mirrored, original = table_rows(destination, "edges"), table_rows(source, "edges")
    assert [(r[0], str(r[1]), r[3]) for r in mirrored] == [(r[0], str(r[1]), r[3]) for r in original]
    assert pending_changes(source, "edges").count == 0


@pytest.mark.parametrize("destination", ["postgresql", "sqlite"], indirect=True)
@pytest.mark.parametrize("source", ["postgresql"], indirect=True)
def test_postgresql_keys_that_ignore_case_leave_no_ghost(source, destination):
    """Under a nondeterministic collation and in citext 'a' = 'A': a case-only key change records
    both keys, the old one leaves the mirror, and an update of other columns still records each
    key once. The spans' grouping, the lookups and the join all compare the keys' text bytewise."""
    execute(source, "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    execute(source, "CREATE EXTENSION citext")
    execute(source, "CREATE TABLE words (k varchar(20) COLLATE ci PRIMARY KEY, note text)")
    execute(source, "CREATE TABLE tags (k citext PRIMARY KEY, note text)")
    for name in ("words", "tags"):
        table = sa.Table(name, sa.MetaData(), autoload_with=source)
        write(source, table.insert(), [{"k": k, "note": "new"} for k in ("a", "b", "Mixed")])
        install_channel(source, name, name)
        reflect(source, destination, ReflectionSpec(name, name, create_table=True), initial_load=True)
        with source.begin() as conn:
            conn.execute(table.update().values(note="updated"))
        assert pending_changes(source, name).count == 3, "one change row a key"
        with source.begin() as conn:
            conn.execute(table.update().where(table.c.k == "a").values(k="A"))  # case-only key changes
            conn.execute(table.update().where(table.c.k == "mixed").values(k="MIXED"))
        assert pending_changes(source, name).count == 7
        reflect(source, destination, ReflectionSpec(name, name))
        assert table_rows(destination, name) == [("A", "updated"), ("MIXED", "updated"), ("b", "updated")], name


@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_sqlite_key_edges_never_fail_a_write(source, destination):
    execute(source, "CREATE TABLE edges (k TEXT PRIMARY KEY, note TEXT)")
    install_channel(source, "edges", "edges")
    execute(source, "INSERT INTO edges VALUES (:k, 'a')", {"k": "z" * 100_000})
    execute(source, "INSERT INTO edges VALUES ('1', 'b')")
    execute(source, "INSERT OR REPLACE INTO edges VALUES ('1', 'c')")
    execute(source, "INSERT INTO edges VALUES ('1', 'd') ON CONFLICT (k) DO UPDATE SET note = 'e'")
    execute(source, "UPDATE edges SET k = k || '!'")
    execute(source, "DELETE FROM edges WHERE note = 'a'")
    reflect(source, destination, ReflectionSpec("edges", "edges", create_table=True))
    assert table_rows(destination, "edges") == table_rows(source, "edges") == [("1!", "e")]


@pytest.mark.parametrize("destination", ["postgresql", "psycopg"], indirect=True)
@pytest.mark.parametrize("source", ["mysql"], indirect=True)
def test_mysql_set_and_enum_keys_mirror_as_text(source, destination):
    execute(source, "CREATE TABLE s (k SET('a','b','c') NOT NULL, e ENUM('x','y') NOT NULL, v INT, PRIMARY KEY (k, e))")
    install_channel(source, "s", "s")
    execute(source, "INSERT INTO s VALUES ('a,b', 'x', 1), ('', 'y', 2), ('c', 'x', 3)")
    execute(source, "UPDATE s SET k = 'b,c' WHERE v = 1")
    execute(source, "DELETE FROM s WHERE v = 3")
    reflect(source, destination, ReflectionSpec("s", "s", create_table=True))
    assert table_rows(destination, "s") == [("", "y", 2), ("b,c", "x", 1)]


@pytest.mark.parametrize("source", ["sqlite"], indirect=True)
def test_sqlite_untyped_keys_keep_1_and_text_1_apart(source, databases):
    execute(source, "CREATE TABLE u (k PRIMARY KEY, v)")
    install_channel(source, "u", "u")
    for key, value in ((1, "int"), ("1", "text"), (b"\x01", "blob"), (1.5, "real")):
        execute(source, "INSERT INTO u VALUES (:k, :v)", {"k": key, "v": value})
    execute(source, "UPDATE u SET v = 'text!' WHERE k = '1'")
    assert pending_changes(source, "u").count == 5
    with pytest.raises(PdrError, match=r"u\.k: column type .* has no portable equivalent"):
        reflect(source, databases.new("postgresql"), ReflectionSpec("u", "u", create_table=True))
    destination = databases.new("sqlite")
    execute(destination, "CREATE TABLE u (k PRIMARY KEY, v)")  # a table made by hand mirrors it
    reflect(source, destination, ReflectionSpec("u", "u"))
    with destination.connect() as conn:
        mirrored = conn.exec_driver_sql("SELECT k, typeof(k), v FROM u ORDER BY v").all()
    assert mirrored == [(b"\x01", "blob", "blob"), (1, "integer", "int"), (1.5, "real", "real"),
                        ("1", "text", "text!")]
