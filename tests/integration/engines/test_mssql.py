"""SQL Server: every statement the engine module produces is compiled with SQLAlchemy's mssql
dialect and parsed with sqlglot's T-SQL parser; no server can run here.

With PDR_TEST_MSSQL_URL set (a server URL, e.g. mssql+pymssql://sa:pw@host:1433/master),
the core correctness checks also run against that server, as source and as destination.
"""

from __future__ import annotations

import decimal
import inspect
import os
import re

import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql
from sqlalchemy.dialects.mssql import pymssql
from sqlglot import exp

import tests.integration.drain.test_reflect as core
from airflow_provider_pdr.core import ReflectionSpec, UnsupportedTypeError
from airflow_provider_pdr.core.registry import Channel, change_table, registry_table
from airflow_provider_pdr.core.engines import engine_module
from airflow_provider_pdr.core.engines.base import CaptureTarget, SourceTable
from airflow_provider_pdr.core.engines.mssql import GET_LOCK, RELEASE_LOCK, MssqlEngine
from airflow_provider_pdr.core.schema import generic_type
from tests.support.databases import unique_name
from tests.integration.engines.test_firebird import CORE_CHECKS

DIALECT = pymssql.dialect()
DIALECT.server_version_info = (16, 0, 1000)  # as if connected to SQL Server 2022
DIALECT._setup_version_attributes()
MODULE = MssqlEngine(DIALECT)
# Names that need quoting: spaces, a closing bracket, a reserved word, case, non-ASCII.
TABLE = SourceTable("Order Line] ü", "sales Ü", ("Order", "line no"))
TARGETS = [CaptureTarget("pdr_c_one", "sales Ü", "one"), CaptureTarget("pdr_c_two", "sales Ü", "two")]


def parse(sql: str) -> list[exp.Expression]:
    """T-SQL statements as sqlglot reads them; raises on anything it cannot parse."""
    parsed = [e for e in sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE) if e is not None]
    assert parsed, sql
    assert not any(isinstance(e, exp.Command) for e in parsed), f"not understood as T-SQL: {sql}"
    return parsed


def compiled(statement, params=None) -> str:
    """The statement as SQL Server would receive it, values rendered by the mssql dialect."""
    if params:
        statement = statement.params(params) if hasattr(statement, "params") else statement
    return statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True}).string


def mirror_table() -> sa.Table:
    return sa.Table(
        TABLE.name, sa.MetaData(),
        sa.Column("Order", sa.Integer, primary_key=True),
        sa.Column("line no", sa.Unicode(20), primary_key=True),
        sa.Column("from", sa.Unicode(50)),
        sa.Column("amount", sa.Numeric(12, 2)),
        schema=TABLE.schema,
    )


def test_the_engine_module_is_chosen_for_mssql_urls():
    engine = sa.create_engine("mssql+pymssql://user:pw@db.example:1433/app")
    assert engine_module(engine).name == "mssql"


def test_one_trigger_handles_inserted_and_deleted_sets_for_every_channel():
    (ddl,) = MODULE.capture_ddl(TABLE, TARGETS, "pdr_0123abcd_89abcdef")
    header, body = ddl.split("\nBEGIN\n", 1)
    assert header == (
        "CREATE TRIGGER [sales Ü].[pdr_0123abcd_89abcdef_c] ON [sales Ü].[Order Line]] ü] "
        "AFTER INSERT, UPDATE, DELETE AS"
    )
    assert body.endswith("\nEND")
    statements = parse(body[: -len("\nEND")])
    assert isinstance(statements[0], exp.Set)  # SET NOCOUNT ON
    inserts = statements[1:]
    assert [i.this.this.sql("tsql") for i in inserts] == ["[sales Ü].[pdr_c_one]", "[sales Ü].[pdr_c_two]"]
    for insert in inserts:
        union = insert.expression
        assert isinstance(union, exp.Union) and not union.args.get("distinct"), "UNION ALL: no key merged by collation"
        new, old = union.this, union.expression
        assert new.args["from_"].this.name.lower() == "inserted"
        assert old.args["from_"].this.name.lower() == "deleted"
        # An old key is written unless a new row has it byte for byte (a key update writes both).
        assert "NOT EXISTS" in old.sql("tsql")
        assert old.sql("tsql").count("AS VARBINARY(MAX))") == 4


def test_change_rows_join_source_rows_byte_for_byte_on_text_keys():
    table = mirror_table()
    changes = sa.table("pdr_c_one", sa.column("key_1"), sa.column("key_2"), schema="sales Ü")
    condition = sa.and_(MODULE.same_key(table.c["Order"], changes.c.key_1),
                        MODULE.same_key(table.c["line no"], changes.c.key_2))
    sql = compiled(sa.select(table.c["Order"]).select_from(table.join(changes, condition)))
    (parsed,) = parse(sql)
    assert isinstance(parsed, exp.Select)
    assert "CAST([sales Ü].[Order Line]] ü].[line no] AS VARBINARY(max)) = CAST(" in sql
    assert "CAST([sales Ü].[Order Line]] ü].[Order] AS" not in sql, "numbers compare as numbers"


def test_trigger_is_dropped_by_its_schema_qualified_name():
    (drop,) = MODULE.drop_capture_ddl(TABLE, "pdr_0123abcd_89abcdef")
    (parsed,) = parse(drop)
    assert isinstance(parsed, exp.Drop) and parsed.args.get("exists")
    assert drop == "DROP TRIGGER IF EXISTS [sales Ü].[pdr_0123abcd_89abcdef_c]"


def test_installed_triggers_are_found_by_schema_table_and_prefix():
    sql = MODULE.capture_objects_query().compile(dialect=DIALECT).string
    (parsed,) = parse(re.sub(r"%\((\w+)\)s", r"@\1", sql))
    assert isinstance(parsed, exp.Select)
    assert {t.name for t in parsed.find_all(exp.Table)} == {"triggers", "tables", "schemas"}


def test_merge_upsert_for_many_rows_and_multi_column_keys():
    table = mirror_table()
    rows = [{"Order": i, "line no": f"l{i}", "from": "x'; DROP TABLE y; --", "amount": decimal.Decimal("1.25")}
            for i in range(3)]
    ((statement, params),) = MODULE.upsert_statements(table, TABLE.key_columns, rows)
    sql = compiled(statement.bindparams(**params))
    (merge,) = parse(sql)
    assert isinstance(merge, exp.Merge)
    assert merge.this.sql("tsql").startswith("[sales Ü].[Order Line]] ü]")
    assert sql.count("(") >= 3 and "'x''; DROP TABLE y; --'" in sql
    assert "WHEN MATCHED THEN UPDATE SET pdr_t.[from] = pdr_s.[from], pdr_t.[amount] = pdr_s.[amount]" in sql
    assert "ON pdr_t.[Order] = pdr_s.[Order] AND pdr_t.[line no] = pdr_s.[line no]" in sql
    assert "(CAST(0 AS INTEGER), CAST(N'l0' AS NVARCHAR(20)), CAST(N'x''; DROP TABLE y; --' AS NVARCHAR(50)), " \
        "CAST(1.25 AS NUMERIC(12, 2)))" in sql, "every value typed like its column"


def test_merge_casts_to_reflected_text_types_without_their_collation():
    table = sa.Table("c", sa.MetaData(), sa.Column("id", mssql.NVARCHAR(10, collation="Latin1_General_CI_AS"),
                                                    primary_key=True))
    ((statement, params),) = MODULE.upsert_statements(table, ("id",), [{"id": "a"}])
    sql = compiled(statement.bindparams(**params))
    assert "CAST(N'a' AS NVARCHAR(10))" in sql and "COLLATE" not in sql
    assert isinstance(parse(sql)[0], exp.Merge)
    assert table.c.id.type.collation == "Latin1_General_CI_AS", "the table's own type is left alone"


def test_merge_stays_within_the_parameter_limit_and_handles_key_only_tables():
    table = sa.Table("k", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    statements = MODULE.upsert_statements(table, ("id",), [{"id": i} for i in range(2500)])
    assert [len(params) for _, params in statements] == [1000, 1000, 500]
    sql = compiled(statements[-1][0].bindparams(**statements[-1][1]))
    assert "WHEN MATCHED" not in sql  # nothing to update when every column is the key
    (merge,) = parse(sql)
    assert isinstance(merge, exp.Merge)
    wide = sa.Table("w", sa.MetaData(), *[sa.Column(f"c{i}", sa.Integer, primary_key=i == 0) for i in range(30)])
    statements = MODULE.upsert_statements(wide, ("c0",), [{f"c{i}": 1 for i in range(30)}] * 200)
    assert max(len(params) for _, params in statements) <= 2000


def test_deletes_by_composite_key_without_row_values():
    table = mirror_table()
    statements = MODULE.delete_statements(table, TABLE.key_columns, [(1, "a"), (2, "b")])
    (sql,) = [compiled(s) for s in statements]
    (parsed,) = parse(sql)
    assert isinstance(parsed, exp.Delete)
    assert "[Order] = 1 AND" in sql and "[line no] = N'b'" in sql
    single = MODULE.delete_statements(table, ("Order",), [(i,) for i in range(1200)])
    assert len(single) == 3
    for statement in single:
        assert isinstance(parse(compiled(statement))[0], exp.Delete)


def test_channel_tables_and_the_pending_count_compile():
    info = Channel("orders", TABLE, "pdr_c_orders", "sales Ü", {}, 1)
    changes = change_table(MODULE, info, [sa.Integer(), sa.Unicode(20)])
    for table in (changes, registry_table("sales Ü")):
        ddl = str(sa.schema.CreateTable(table).compile(dialect=DIALECT))
        (parsed,) = parse(ddl)
        assert isinstance(parsed, exp.Create)
    assert "seq BIGINT NOT NULL IDENTITY" in str(sa.schema.CreateTable(changes).compile(dialect=DIALECT))
    pending = sa.select(sa.func.count(), MODULE.age_seconds(sa.func.min(changes.c.changed_at)))
    (parsed,) = parse(compiled(pending))
    assert "DATEDIFF_BIG(MICROSECOND" in parsed.sql("tsql").upper()


def test_lock_statements_are_session_owned_applocks():
    lock = re.sub(r":(\w+)", r"@\1", GET_LOCK)
    parsed = parse(lock)
    assert [type(e) for e in parsed] == [exp.Set, exp.Declare, exp.Execute, exp.Set, exp.Select]
    assert GET_LOCK.index("SET NOCOUNT OFF") < GET_LOCK.index("SELECT @pdr_result"), "row counts stay on"
    assert "@LockOwner = 'Session'" in GET_LOCK and "sp_getapplock" in GET_LOCK
    assert isinstance(parse(re.sub(r":(\w+)", r"@\1", RELEASE_LOCK))[0], exp.Execute)
    assert len(MODULE.lock_name("dbo", "x" * 63)) <= 255


@pytest.mark.parametrize(("generic", "expected"), [
    (sa.String(100), "NVARCHAR(100)"),
    (sa.String(5000), "NVARCHAR(max)"),
    (sa.Text(), "NVARCHAR(max)"),
    (sa.LargeBinary(), "VARBINARY(max)"),
    (sa.DateTime(), "DATETIME2(6)"),
    (sa.DateTime(timezone=True), "DATETIMEOFFSET(6)"),
    (sa.Time(), "TIME(6)"),
    (sa.Double(), "FLOAT(53)"),
    (sa.Boolean(), "BIT"),
    (sa.Numeric(38, 10), "NUMERIC(38, 10)"),
    (sa.BigInteger(), "BIGINT"),
    (sa.Date(), "DATE"),
    (sa.Uuid(), "UNIQUEIDENTIFIER"),
])
def test_type_mapping(generic, expected):
    assert MODULE.ddl_type(generic, "t.c").compile(dialect=DIALECT) == expected


@pytest.mark.parametrize("generic", [sa.Numeric(), sa.Numeric(40, 2)])
def test_decimals_beyond_sql_server_are_refused_naming_the_column(generic):
    with pytest.raises(UnsupportedTypeError, match=r"t\.c: NUMERIC .*SQL Server"):
        MODULE.ddl_type(generic, "t.c")


def test_the_drain_reads_compile_as_t_sql(databases):
    """The span read (one row per key, its presence told by the source key, never a boolean
    column, which T-SQL cannot select) and the exact path's join, built for integer keys as on
    any engine, then compiled by the mssql dialect."""
    from airflow_provider_pdr.core.drain.assemble import open_drain

    source, destination = databases.new("sqlite"), databases.new("sqlite")
    core.orders(source)
    core.install_channel(source, "orders", "orders")
    with open_drain(source, destination, ReflectionSpec("orders", "mirror", create_table=True)) as (drain, _, _):
        statements = [*drain.route.span_queries.values(), drain.plan.current, drain.plan.lookup]
    for statement in statements:
        sql = statement.compile(dialect=DIALECT).string
        assert " IS NOT NULL AS " not in sql, sql
        (parsed,) = parse(re.sub(r"__\[POSTCOMPILE_(\w+)\]", r"(@\1)", re.sub(r":(\w+)", r"@\1", sql)))
        assert isinstance(parsed, exp.Select)
    span = drain.route.span_queries[True].compile(dialect=DIALECT).string
    assert "OFFSET 0 ROWS" in span and "FETCH FIRST @limit ROWS ONLY" in re.sub(r":(\w+)", r"@\1", span)


def test_a_destination_table_compiles_from_any_source_columns():
    source = sa.Table(
        "src", sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("note", sa.Text),
        sa.Column("at", sa.DateTime(timezone=True)), sa.Column("flag", sa.Boolean),
    )
    columns = [sa.Column(c.name, MODULE.ddl_type(generic_type(c, c.name), c.name), primary_key=c.primary_key)
               for c in source.columns]
    ddl = str(sa.schema.CreateTable(sa.Table("dst", sa.MetaData(), *columns, schema="dbo")).compile(dialect=DIALECT))
    assert isinstance(parse(ddl)[0], exp.Create)
    assert "note NVARCHAR(max)" in ddl and "at DATETIMEOFFSET(6)" in ddl


# -- against a real server, when one is given ----------------------------------------------
MSSQL_URL = os.environ.get("PDR_TEST_MSSQL_URL")
needs_server = pytest.mark.skipif(
    not MSSQL_URL,
    reason="no SQL Server here: set PDR_TEST_MSSQL_URL=mssql+pymssql://user:password@host:1433/master "
           "to run the correctness checks against one",
)


@pytest.fixture
def mssql_database():
    server = sa.create_engine(MSSQL_URL, isolation_level="AUTOCOMMIT")
    name = unique_name()
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE [{name}]")
        conn.exec_driver_sql(f"ALTER DATABASE [{name}] SET READ_COMMITTED_SNAPSHOT ON")
    engine = sa.create_engine(sa.make_url(MSSQL_URL).set(database=name))
    yield engine
    engine.dispose()
    with server.connect() as conn:
        conn.exec_driver_sql(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        conn.exec_driver_sql(f"DROP DATABASE [{name}]")
    server.dispose()


@needs_server
@pytest.mark.parametrize("other", ["postgresql", "sqlite", "mysql"])
@pytest.mark.parametrize("direction", ["from-mssql", "to-mssql"])
@pytest.mark.parametrize("check", CORE_CHECKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_core_correctness_on_a_real_server(mssql_database, databases, monkeypatch, other, direction, check):
    other_engine = databases.new(other)
    source, destination = (mssql_database, other_engine) if direction == "from-mssql" else (other_engine, mssql_database)
    extra = {"monkeypatch": monkeypatch} if "monkeypatch" in inspect.signature(check).parameters else {}
    check(source, destination, **extra)


@needs_server
def test_a_late_commit_is_not_lost_on_a_real_server(mssql_database, databases):
    core.test_a_transaction_that_commits_after_a_later_one_was_reflected_is_not_lost(
        mssql_database, databases.new("sqlite")
    )


@needs_server
def test_values_round_trip_on_a_real_server(mssql_database, databases):
    from test_core_values import test_values_round_trip_exactly

    test_values_round_trip_exactly(mssql_database, databases.new("postgresql"))



def test_names_longer_than_sql_server_allows_are_refused():
    from airflow_provider_pdr.core import ConfigurationError

    MODULE.check_name("x" * 128, "table")
    with pytest.raises(ConfigurationError, match="129 characters long.*at most 128"):
        MODULE.check_name("x" * 129, "table")
