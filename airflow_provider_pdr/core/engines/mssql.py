"""Microsoft SQL Server: one statement-level T-SQL trigger per table reading the INSERTED and
DELETED row sets, MERGE upsert, and sp_getapplock (session owned) as the channel lock."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import CaptureTarget, EngineModule, SourceTable
from airflow_provider_pdr.core.keys import chunks
from airflow_provider_pdr.core.errors import ConfigurationError, UnsupportedTypeError

MAX_PARAMETERS = 2000  # SQL Server accepts 2100 parameters per statement
MAX_VALUES_ROWS = 1000  # and 1000 rows per VALUES list
MAX_LOCK_NAME = 255
MAX_NVARCHAR = 4000

# sp_getapplock returns >= 0 when granted; a session-owned lock dies with the session.
# NOCOUNT only around the EXEC, so the SELECT is the one result; OFF again, since the
# pooled session keeps it and DML row counts must stay reported.
GET_LOCK = (
    "SET NOCOUNT ON; DECLARE @pdr_result int; "
    "EXEC @pdr_result = sp_getapplock @Resource = :resource, @LockMode = 'Exclusive', "
    "@LockOwner = 'Session', @LockTimeout = :timeout_ms; SET NOCOUNT OFF; SELECT @pdr_result"
)
RELEASE_LOCK = "EXEC sp_releaseapplock @Resource = :resource, @LockOwner = 'Session'"


class MssqlEngine(EngineModule):
    name = "mssql"
    max_identifier_length = 128

    def check_name(self, name: str, what: str) -> None:
        if len(name) > self.max_identifier_length:
            raise ConfigurationError(
                f"{what} name {name!r} is {len(name)} characters long, but SQL Server names hold at most "
                f"{self.max_identifier_length}"
            )

    def changed_at_column(self) -> sa.Column:
        return sa.Column("changed_at", mssql.DATETIME2(precision=6), nullable=False,
                         server_default=sa.text("SYSUTCDATETIME()"))

    def age_seconds(self, oldest):
        return sa.func.datediff_big(sa.literal_column("MICROSECOND"), oldest, sa.func.sysutcdatetime()) \
            / sa.literal_column("1000000.0")

    # -- capture ----------------------------------------------------------------------------
    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        keys = [self.quote(c) for c in table.key_columns]
        key_list = ", ".join(self.quote(f"key_{i}") for i in range(1, len(keys) + 1))
        # New keys, plus old keys that no new row has byte for byte: a key update records both,
        # a plain update one, and a case-only change under a _CI collation is still seen.
        same = " AND ".join(
            f"CAST(pdr_i.{k} AS VARBINARY(MAX)) = CAST(pdr_d.{k} AS VARBINARY(MAX))" for k in keys
        )
        changed_keys = (
            f"SELECT {', '.join(f'pdr_i.{k}' for k in keys)} FROM inserted AS pdr_i "
            f"UNION ALL SELECT {', '.join(f'pdr_d.{k}' for k in keys)} FROM deleted AS pdr_d "
            f"WHERE NOT EXISTS (SELECT 1 FROM inserted AS pdr_i WHERE {same})"
        )
        inserts = "\n  ".join(
            f"INSERT INTO {self.qualified(t.change_table, t.schema)} ({key_list}) {changed_keys};" for t in targets
        )
        return [
            f"CREATE TRIGGER {self.qualified(base + '_c', table.schema)} "
            f"ON {self.qualified(table.name, table.schema)} AFTER INSERT, UPDATE, DELETE AS\n"
            f"BEGIN\n  SET NOCOUNT ON;\n  {inserts}\nEND"
        ]

    def key_bytes(self, value):
        # Default collations are case-insensitive ('abc' = 'ABC') and ignore trailing blanks;
        # the trigger compares bytes.
        return sa.cast(value, mssql.VARBINARY(None))

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {self.qualified(base + '_c', table.schema)}"]

    def capture_objects_query(self) -> sa.TextClause:
        return sa.text(
            "SELECT t.name FROM sys.triggers AS t JOIN sys.tables AS tb ON tb.object_id = t.parent_id "
            "JOIN sys.schemas AS s ON s.schema_id = tb.schema_id "
            "WHERE tb.name = :table AND s.name = COALESCE(:schema, SCHEMA_NAME()) AND t.name LIKE :prefix"
        )

    def capture_objects(self, conn, table: SourceTable) -> set[str]:
        prefix = names.PREFIX.replace("_", "[_]") + names.table_tag(table.schema, table.name) + "%"
        rows = conn.execute(self.capture_objects_query(), {"table": table.name, "schema": table.schema, "prefix": prefix})
        return {name.rsplit("_", 1)[0] for (name,) in rows}

    # -- apply ------------------------------------------------------------------------------
    def upsert_statements(self, table: sa.Table, key_columns, rows) -> list[tuple[sa.TextClause, dict]]:
        """MERGE statements, each with a multi-row VALUES source within SQL Server's limits."""
        columns = list(table.columns)
        target = self.qualified(table.name, table.schema)
        names_ = [self.quote(c.name) for c in columns]
        on = " AND ".join(f"pdr_t.{self.quote(k)} = pdr_s.{self.quote(k)}" for k in key_columns)
        updates = ", ".join(f"pdr_t.{n} = pdr_s.{n}" for c, n in zip(columns, names_) if c.name not in key_columns)
        # Each value cast to its column's type: a VALUES column takes its type from its rows,
        # and an all-NULL or literal-typed column must not decide the type written.
        types = [self.cast_type(c.type) for c in columns]
        per_statement = max(1, min(MAX_VALUES_ROWS, MAX_PARAMETERS // len(columns)))
        statements = []
        for chunk in chunks(rows, per_statement):
            values = ", ".join(
                "(" + ", ".join(f"CAST(:p{r}_{i} AS {types[i]})" for i in range(len(columns))) + ")"
                for r in range(len(chunk))
            )
            sql = (
                f"MERGE INTO {target} WITH (HOLDLOCK) AS pdr_t USING (VALUES {values}) AS pdr_s ({', '.join(names_)}) "
                f"ON {on} "
                + (f"WHEN MATCHED THEN UPDATE SET {updates} " if updates else "")
                + f"WHEN NOT MATCHED THEN INSERT ({', '.join(names_)}) "
                f"VALUES ({', '.join(f'pdr_s.{n}' for n in names_)});"
            )
            statement = sa.text(sql).bindparams(*[
                sa.bindparam(f"p{r}_{i}", type_=c.type) for r in range(len(chunk)) for i, c in enumerate(columns)
            ])
            params = {f"p{r}_{i}": row[c.name] for r, row in enumerate(chunk) for i, c in enumerate(columns)}
            statements.append((statement, params))
        return statements

    def cast_type(self, type_) -> str:
        """The type as a CAST target: reflected text types carry a COLLATE that CAST refuses."""
        if getattr(type_, "collation", None):
            type_ = type_.copy()
            type_.collation = None
        return type_.compile(dialect=self.dialect)

    def upsert(self, conn, table: sa.Table, key_columns, rows) -> None:
        for statement, params in self.upsert_statements(table, key_columns, rows):
            conn.execute(statement, params)

    def delete_statements(self, table: sa.Table, key_columns, keys) -> list[sa.Delete]:
        columns = [table.c[name] for name in key_columns]
        if len(columns) == 1:
            return [sa.delete(table).where(columns[0].in_([k[0] for k in chunk])) for chunk in chunks(keys, 500)]
        # No row-value IN in T-SQL: (a = ? AND b = ?) OR ...
        return [
            sa.delete(table).where(sa.or_(*[sa.and_(*[c == v for c, v in zip(columns, key)]) for key in chunk]))
            for chunk in chunks(keys, max(1, MAX_PARAMETERS // len(columns) // 2))
        ]

    def delete_keys(self, conn, table: sa.Table, key_columns, keys) -> int:
        return sum(conn.execute(statement).rowcount for statement in self.delete_statements(table, key_columns, keys))

    # -- locking ----------------------------------------------------------------------------
    @staticmethod
    def lock_name(schema: str | None, channel: str) -> str:
        return names.fit(f"pdr:{schema or ''}:{channel}", MAX_LOCK_NAME, schema or "", channel)

    @contextlib.contextmanager
    def channel_lock(self, engine, schema, channel, timeout):
        resource = self.lock_name(schema, channel)
        with engine.connect() as conn:
            granted = conn.execute(sa.text(GET_LOCK), {"resource": resource, "timeout_ms": int(max(0, timeout) * 1000)})
            result = granted.scalar()
            conn.commit()
            if result is None or result < 0:
                raise self.busy(channel, timeout)
            try:
                yield
            finally:
                with contextlib.suppress(sa.exc.DBAPIError):  # a dead session has released it already
                    conn.execute(sa.text(RELEASE_LOCK), {"resource": resource})
                    conn.commit()

    # -- types ------------------------------------------------------------------------------
    def ddl_type(self, generic, where):
        if isinstance(generic, sa.Numeric) and not isinstance(generic, sa.Float):
            if generic.precision is None or generic.precision > 38:
                shape = "without precision" if generic.precision is None else \
                    f"({generic.precision},{generic.scale})"
                raise UnsupportedTypeError(
                    f"{where}: NUMERIC {shape} cannot be stored exactly in SQL Server (DECIMAL holds at "
                    "most 38 digits); create the destination table yourself"
                )
            return generic
        if isinstance(generic, sa.Float):
            return mssql.FLOAT(precision=53)
        if isinstance(generic, sa.DateTime):
            return mssql.DATETIMEOFFSET(precision=6) if generic.timezone else mssql.DATETIME2(precision=6)
        if isinstance(generic, sa.Time):
            return mssql.TIME(precision=6)
        if isinstance(generic, sa.JSON):
            return mssql.NVARCHAR(None)
        if isinstance(generic, sa.String):  # NVARCHAR: VARCHAR holds only the code page's characters
            if isinstance(generic, sa.Text) or not generic.length or generic.length > MAX_NVARCHAR:
                return mssql.NVARCHAR(None)
            return mssql.NVARCHAR(generic.length)
        if isinstance(generic, sa.LargeBinary):
            return mssql.VARBINARY(None)
        if isinstance(generic, sa.Boolean):
            return mssql.BIT()
        return generic


__all__ = ["GET_LOCK", "RELEASE_LOCK", "MssqlEngine"]
