"""MySQL and MariaDB: row triggers (one per event, fanning out to every channel),
INSERT ... ON DUPLICATE KEY UPDATE, and GET_LOCK for the channel lock."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from airflow_provider_pdr.core import names
from airflow_provider_pdr.core.engines.base import (
    CaptureTarget, EngineModule, SourceTable, key_mismatch, release,
)
from airflow_provider_pdr.core.errors import ConfigurationError, UnsupportedTypeError

EVENTS = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}
MAX_LOCK_NAME = 64


class MysqlEngine(EngineModule):
    name = "mysql"
    max_identifier_length = 64
    row_values = True
    max_parameters = 30000

    def text_field(self, value, destination):
        # The row path parses the text the server sends for a column (mysqlclient's decoders) and
        # formats the value again: each kind here gives that text, or one PostgreSQL reads as the
        # same value. Source columns only: a computed field comes in whatever type the server
        # gives it, not the declared one.
        if not isinstance(value, sa.Column):
            return None
        source = value.type
        if isinstance(source, sa.Integer):
            if isinstance(destination, sa.Boolean):  # the row path's bool(value)
                return sa.case((value.is_(None), None), (value != 0, "t"), else_="f")
            return sa.cast(value, sa.Text) if isinstance(destination, sa.Numeric | sa.Integer) else None
        if isinstance(source, sa.Float):
            # A float's text and its Python repr give one double: only a double may hold it (a
            # real rounding either would round twice, the text once).
            return value if isinstance(destination, sa.Double) else None
        if isinstance(source, sa.Numeric):  # DECIMAL into a decimal: its text or str(Decimal(text)), one number
            decimal = isinstance(destination, sa.Numeric) and not isinstance(destination, sa.Float)
            return sa.cast(value, sa.Text) if decimal else None
        if isinstance(source, sa.String) and not isinstance(source, sa.Enum):
            if not isinstance(destination, sa.String):
                return None
            # One character set for every field: strings of utf8mb4 concatenate whatever their
            # collations, others are converted to it (some character sets' would not concatenate).
            # Converting costs MariaDB a third of a wide span's read, so only where it must.
            charset = (source.charset or value.table.info.get("charset")) if hasattr(source, "charset") else None
            if charset == "utf8mb4":
                return value
            return sa.func.convert(value, sa.literal_column("CHAR CHARACTER SET utf8mb4"))
        # DATETIME (not TIMESTAMP, whose text follows time_zone) and DATE.
        if (isinstance(source, sa.DATETIME) and isinstance(destination, sa.DateTime) and not destination.timezone
                or isinstance(source, sa.DATE) and isinstance(destination, sa.Date)):
            # mysqlclient reads a zero or impossible date (Feb 31, year 0) as None; adding no days
            # gives NULL for exactly those.
            return sa.case((sa.func.date_add(value, sa.text("INTERVAL 0 DAY")).is_not(None), sa.cast(value, sa.Text)))
        return None

    def table_info(self, inspector, name, schema):
        # The character set of the columns declared without one (text_field); the inspector has
        # read the table's definition already.
        return {"charset": inspector.get_table_options(name, schema=schema).get("mysql_default charset")}

    def check_name(self, name, what):
        # SQLAlchemy's MySQL reflection keeps a quoted backtick doubled: the name read back is wrong.
        if "`" in name:
            raise ConfigurationError(
                f"{what} {name!r}: MySQL/MariaDB names containing a backtick cannot be read back "
                "reliably; rename it"
            )

    def default_schema(self, conn):
        return conn.exec_driver_sql("SELECT DATABASE()").scalar()

    def changed_at_column(self) -> sa.Column:
        return sa.Column("changed_at", mysql.TIMESTAMP(fsp=6), nullable=False,
                         server_default=sa.text("CURRENT_TIMESTAMP(6)"))

    def age_seconds(self, oldest):
        return sa.func.timestampdiff(sa.text("MICROSECOND"), oldest, sa.func.current_timestamp(6)) / 1e6

    def capture_ddl(self, table: SourceTable, targets: Sequence[CaptureTarget], base: str) -> list[str]:
        source = self.qualified(table.name, table.schema)
        key_list = ", ".join(self.quote(f"key_{i}") for i in range(1, len(table.key_columns) + 1))

        def insert(*rows: str) -> str:
            values = ", ".join(
                "(" + ", ".join(f"{row}.{self.quote(c)}" for c in table.key_columns) + ")" for row in rows
            )
            return " ".join(
                f"INSERT INTO {self.qualified(t.change_table, t.schema)} ({key_list}) VALUES {values};"
                for t in targets
            )

        # A key update records the old key too, compared byte for byte so that a change of
        # case under a case-insensitive collation still reaches a case-sensitive mirror.
        changed = key_mismatch("OLD", "NEW", table.key_columns, self.quote, lambda v: f"CAST({v} AS BINARY)")
        bodies = {
            "i": insert("NEW"),
            "u": f"IF {changed} THEN {insert('NEW', 'OLD')} ELSE {insert('NEW')} END IF;",
            "d": insert("OLD"),
        }
        return [
            f"CREATE TRIGGER {self.qualified(base + '_' + suffix, table.schema)} AFTER {event} ON {source} "
            f"FOR EACH ROW BEGIN {bodies[suffix]} END"
            for suffix, event in EVENTS.items()
        ]

    def drop_capture_ddl(self, table: SourceTable, base: str) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {self.qualified(base + '_' + s, table.schema)}" for s in EVENTS]

    def capture_objects(self, conn, table: SourceTable) -> set[str]:
        rows = conn.execute(
            sa.text(
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                "WHERE EVENT_OBJECT_TABLE = :table AND EVENT_OBJECT_SCHEMA = coalesce(:schema, DATABASE()) "
                "AND TRIGGER_NAME LIKE :prefix"
            ),
            {"table": table.name, "schema": table.schema,
             "prefix": names.PREFIX.replace("_", r"\_") + names.table_tag(table.schema, table.name) + "%"},
        )
        return {name.rsplit("_", 1)[0] for (name,) in rows}

    def key_bytes(self, value):
        # Under an insensitive or PAD SPACE collation 'a' = 'A '. Bytes in one character set:
        # the change table may use another.
        return sa.cast(sa.func.convert(value, sa.literal_column("CHAR CHARACTER SET utf8mb4")), mysql.BINARY())

    @staticmethod
    def duplicate_key_statement(table: sa.Table, key_columns):
        statement = mysql.insert(table)
        updates = {c.name: statement.inserted[c.name] for c in table.columns if c.name not in key_columns}
        if not updates:  # nothing but the key: re-set one key column to itself
            updates = {key_columns[0]: statement.inserted[key_columns[0]]}
        return statement.on_duplicate_key_update(updates)

    def upserter(self, dialect, table, key_columns):
        refuse_percent(table)
        write = self.driver.upserter(self.duplicate_key_statement(table, key_columns), dialect, table)
        return write or super().upserter(dialect, table, key_columns)

    def upsert(self, conn, table: sa.Table, key_columns, rows) -> None:
        refuse_percent(table)
        conn.execute(self.duplicate_key_statement(table, key_columns), rows)

    def grouping(self, query):
        # MariaDB/MySQL group a span faster by sorting it than in a temporary table (a tenth of the read).
        return query.prefix_with("SQL_BIG_RESULT", dialect="mysql")

    @contextlib.contextmanager
    def channel_lock(self, engine, schema, channel, timeout):
        name = names.fit(f"pdr:{schema or ''}:{channel}", MAX_LOCK_NAME, schema or "", channel)
        with engine.connect() as conn:
            acquired = conn.execute(sa.select(sa.func.get_lock(name, int(max(0, timeout))))).scalar()
            if acquired != 1:
                raise self.busy(channel, timeout)
            try:
                yield
            finally:
                release(conn, sa.select(sa.func.release_lock(name)))

    def io_type(self, type_):
        if isinstance(type_, mysql.SET):  # read as its text ('a,b'), not as a Python set
            return sa.String(sum(len(value) + 1 for value in type_.values) or 1)
        return type_

    def ddl_type(self, generic, where):
        if isinstance(generic, sa.Uuid):
            return mysql.CHAR(36)  # the canonical text form, as every driver writes a UUID to text
        if isinstance(generic, sa.LargeBinary):
            return mysql.LONGBLOB()
        if isinstance(generic, sa.Text) or (isinstance(generic, sa.String) and not generic.length):
            return mysql.LONGTEXT(collation="utf8mb4_bin")
        if isinstance(generic, sa.String) and generic.length > 16383:
            return mysql.LONGTEXT(collation="utf8mb4_bin")
        if isinstance(generic, sa.String):
            return mysql.VARCHAR(generic.length, collation="utf8mb4_bin")
        if isinstance(generic, sa.DateTime):
            return mysql.DATETIME(fsp=6)  # UTC for time zone aware sources (docs/types.md)
        if isinstance(generic, sa.Time):
            return mysql.TIME(fsp=6)
        if isinstance(generic, sa.Numeric) and not isinstance(generic, sa.Float):
            if generic.precision is None:
                raise UnsupportedTypeError(
                    f"{where}: NUMERIC without precision cannot be stored exactly in MySQL/MariaDB "
                    "(DECIMAL needs a precision of at most 65); create the destination table yourself"
                )
            if generic.precision > 65 or (generic.scale or 0) > 30:
                raise UnsupportedTypeError(
                    f"{where}: NUMERIC({generic.precision},{generic.scale}) exceeds MySQL/MariaDB's "
                    "DECIMAL(65,30); create the destination table yourself"
                )
        return generic


def refuse_percent(table: sa.Table) -> None:
    """SQLAlchemy escapes '%' twice inside ON DUPLICATE KEY UPDATE ... VALUES(`a%b`), so the
    server is asked for a column `a%%b`: refuse before anything is written."""
    names = [column.name for column in table.columns if "%" in column.name]
    if names:
        raise ConfigurationError(
            f"destination table {table.name!r}: columns {names} contain '%', which cannot be upserted "
            "into MySQL/MariaDB; rename them or map them to other destination names (mapping.fields)"
        )


__all__ = ["MysqlEngine", "refuse_percent"]
