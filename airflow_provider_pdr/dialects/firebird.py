"""A small SQLAlchemy dialect for Firebird 3+ through the ``fdb`` driver: ``firebird+fdb://``.

URL: ``firebird+fdb://user:password@host:port//absolute/path.fdb?charset=UTF8`` (leave out
host and port for an embedded database on a local path; ``role`` is also accepted).

It covers what the replication core needs: DDL and types, LIMIT as ``FETCH FIRST``,
``SELECT ... FOR UPDATE WITH LOCK``, and reflection of tables, columns, primary keys,
unique constraints and indexes. Foreign keys and views are not reflected.

Firebird applies DDL only when its transaction commits, and later statements of the same
transaction cannot use the new objects. So, as MySQL does by itself, DDL here commits at
once: a transaction that mixes DML and DDL has committed its DML by the DDL statement.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import default, reflection
from sqlalchemy.sql import compiler

# Firebird 3 reserved words: these are quoted. Reflection normalizes names with the same rule,
# so what is quoted when created is found again when reflected.
RESERVED_WORDS = {
    "add", "admin", "all", "alter", "and", "any", "as", "at", "avg", "begin", "between", "bigint",
    "bit_length", "blob", "boolean", "both", "by", "case", "cast", "char", "char_length", "character",
    "character_length", "check", "close", "collate", "column", "commit", "connect", "constraint",
    "corr", "count", "covar_pop", "covar_samp", "create", "cross", "current", "current_connection",
    "current_date", "current_role", "current_time", "current_timestamp", "current_transaction",
    "current_user", "cursor", "date", "day", "dec", "decimal", "declare", "default", "delete",
    "deleting", "deterministic", "disconnect", "distinct", "double", "drop", "else", "end", "escape",
    "execute", "exists", "external", "extract", "false", "fetch", "filter", "float", "for", "foreign",
    "from", "full", "function", "gdscode", "global", "grant", "group", "having", "hour", "in",
    "index", "inner", "insensitive", "insert", "inserting", "int", "integer", "into", "is", "join",
    "leading", "left", "like", "long", "lower", "max", "merge", "min", "minute", "month",
    "national", "natural", "nchar", "no", "not", "null", "numeric", "octet_length", "of", "offset",
    "on", "only", "open", "or", "order", "outer", "over", "parameter", "plan", "position",
    "post_event", "precision", "primary", "procedure", "rdb$db_key", "rdb$record_version", "real",
    "record_version", "recreate", "recursive", "references", "regr_avgx", "regr_avgy",
    "regr_count", "regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
    "release", "returning_values", "returns", "revoke", "right", "rollback", "row",
    "row_count", "rows", "savepoint", "scroll", "second", "select", "sensitive", "set", "similar",
    "smallint", "some", "sqlcode", "sqlstate", "start", "stddev_pop", "stddev_samp", "sum", "table",
    "then", "time", "timestamp", "to", "trailing", "trigger", "trim", "true", "union", "unique",
    "unknown", "update", "updating", "upper", "user", "using", "value", "values", "var_pop",
    "var_samp", "varchar", "variable", "varying", "view", "when", "where", "while", "with", "year",
}

# rdb$fields.rdb$field_type codes
SMALLINT, INTEGER, BIGINT, FLOAT, DOUBLE = 7, 8, 16, 10, 27
DATE, TIME, TIMESTAMP, CHAR, VARCHAR, CSTRING, BLOB, BOOLEAN = 12, 13, 35, 14, 37, 40, 261, 23
OCTETS = 1  # character set id of binary strings

DDL_STATEMENT = re.compile(
    r"\s*(CREATE|ALTER|DROP|RECREATE|COMMENT\s+ON|GRANT|REVOKE|DECLARE\s+EXTERNAL)\b", re.I
)
DISCONNECT_MESSAGES = (
    "connection shutdown", "error writing data to the connection", "error reading data from the connection",
    "unable to complete network request", "connection lost", "connection is not active",
)


class FirebirdIdentifierPreparer(compiler.IdentifierPreparer):
    reserved_words = RESERVED_WORDS
    illegal_initial_characters = compiler.ILLEGAL_INITIAL_CHARACTERS | {"_"}
    legal_characters = re.compile(r"^[A-Z0-9_$]+$", re.I)

    def __init__(self, dialect):
        super().__init__(dialect, omit_schema=True)  # Firebird 3 has no schemas


class FirebirdCompiler(compiler.SQLCompiler):
    def default_from(self):
        return " FROM rdb$database"

    def limit_clause(self, select, **kw):
        text = ""
        if select._offset_clause is not None:
            text += "\n OFFSET " + self.process(select._offset_clause, **kw) + " ROWS"
        if select._limit_clause is not None:
            text += "\n FETCH FIRST " + self.process(select._limit_clause, **kw) + " ROWS ONLY"
        return text

    def for_update_clause(self, select, **kw):
        return " FOR UPDATE WITH LOCK"

    def visit_now_func(self, fn, **kw):
        return "CURRENT_TIMESTAMP"

    def visit_mod_binary(self, binary, operator, **kw):
        return f"mod({self.process(binary.left, **kw)}, {self.process(binary.right, **kw)})"

    def visit_char_length_func(self, fn, **kw):
        return "char_length" + self.function_argspec(fn, **kw)


class FirebirdDDLCompiler(compiler.DDLCompiler):
    def get_column_specification(self, column, **kw):
        spec = self.preparer.format_column(column) + " " + self.dialect.type_compiler_instance.process(
            column.type, type_expression=column
        )
        default_ = self.get_column_default_string(column)
        if default_ is not None:
            spec += " DEFAULT " + default_
        identity = column.identity is not None or (
            column is column.table._autoincrement_column and default_ is None
            and isinstance(column.type, sqltypes.Integer)
        )
        if identity:
            return spec + " GENERATED BY DEFAULT AS IDENTITY"  # implicitly NOT NULL
        if not column.nullable:
            spec += " NOT NULL"
        return spec


class FirebirdTypeCompiler(compiler.GenericTypeCompiler):
    def visit_VARCHAR(self, type_, **kw):
        if not type_.length:
            return self.visit_TEXT(type_, **kw)
        return f"VARCHAR({type_.length})"

    def visit_unicode(self, type_, **kw):
        return self.visit_VARCHAR(type_, **kw)

    def visit_string(self, type_, **kw):
        return self.visit_VARCHAR(type_, **kw)

    def visit_NVARCHAR(self, type_, **kw):
        return self.visit_VARCHAR(type_, **kw)

    def visit_TEXT(self, type_, **kw):
        return "BLOB SUB_TYPE TEXT"

    def visit_CLOB(self, type_, **kw):
        return "BLOB SUB_TYPE TEXT"

    def visit_JSON(self, type_, **kw):
        return "BLOB SUB_TYPE TEXT"

    def visit_BLOB(self, type_, **kw):
        return "BLOB SUB_TYPE BINARY"

    def visit_large_binary(self, type_, **kw):
        return "BLOB SUB_TYPE BINARY"

    def visit_BINARY(self, type_, **kw):
        return f"CHAR({type_.length or 1}) CHARACTER SET OCTETS"

    def visit_VARBINARY(self, type_, **kw):
        if not type_.length:
            return "BLOB SUB_TYPE BINARY"
        return f"VARCHAR({type_.length}) CHARACTER SET OCTETS"

    def visit_DATETIME(self, type_, **kw):
        return "TIMESTAMP"

    def visit_TIMESTAMP(self, type_, **kw):
        return "TIMESTAMP"  # Firebird 3 has no time zone types

    def visit_TIME(self, type_, **kw):
        return "TIME"

    def visit_DOUBLE(self, type_, **kw):
        return "DOUBLE PRECISION"

    def visit_DOUBLE_PRECISION(self, type_, **kw):
        return "DOUBLE PRECISION"

    def visit_FLOAT(self, type_, **kw):
        if type_.precision is not None and type_.precision <= 24:
            return "FLOAT"
        return "DOUBLE PRECISION"

    def visit_REAL(self, type_, **kw):
        return "FLOAT"

    def visit_TINYINT(self, type_, **kw):
        return "SMALLINT"


class Cursor:
    """An fdb cursor whose prepared statement is dropped when the cursor closes.

    Firebird refuses to drop a table while any statement prepared on it exists, and fdb keeps
    statements until garbage collection. BLOBs of any size are returned as values.
    """

    def __init__(self, cursor):
        self._cursor = cursor
        self._statement = None

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def _prepare(self, operation):
        self._drop()
        self._statement = self._cursor.prep(operation)
        self._statement.set_stream_blob_treshold(-1)  # large BLOBs as values, not stream readers
        return self._statement

    def execute(self, operation, parameters=None):
        return self._cursor.execute(self._prepare(operation), parameters)

    def executemany(self, operation, seq_of_parameters):
        return self._cursor.executemany(self._prepare(operation), seq_of_parameters)

    def _drop(self):
        statement, self._statement = self._statement, None
        if statement is not None:
            statement._close()

    def close(self):
        self._cursor.close()
        self._drop()


class FirebirdExecutionContext(default.DefaultExecutionContext):
    def create_default_cursor(self):
        return Cursor(self._dbapi_connection.cursor())

    def post_exec(self):
        # The new objects exist only after commit (module docstring); DDL also comes as text.
        if self.isddl or DDL_STATEMENT.match(self.statement or ""):
            self._dbapi_connection.commit()


class FirebirdDialect_fdb(default.DefaultDialect):
    name = "firebird"
    driver = "fdb"
    max_identifier_length = 31
    requires_name_normalize = True
    supports_statement_cache = True
    supports_native_boolean = True
    supports_native_decimal = True
    supports_identity_columns = True
    supports_sequences = False  # identity columns instead
    supports_default_values = True
    supports_empty_insert = False
    supports_multivalues_insert = False
    supports_is_distinct_from = True
    postfetch_lastrowid = False
    insert_returning = False
    supports_comments = False
    default_paramstyle = "qmark"
    _json_serializer = None
    _json_deserializer = None

    statement_compiler = FirebirdCompiler
    ddl_compiler = FirebirdDDLCompiler
    type_compiler_cls = FirebirdTypeCompiler
    preparer = FirebirdIdentifierPreparer
    execution_ctx_cls = FirebirdExecutionContext

    @classmethod
    def import_dbapi(cls):
        import fdb

        return fdb

    def create_connect_args(self, url):
        database = url.database or ""
        dsn = f"{url.host}/{url.port or 3050}:{database}" if url.host else database
        options = {"dsn": dsn, "charset": url.query.get("charset", "UTF8")}
        if url.username:
            options["user"] = url.username
        if url.password:
            options["password"] = url.password
        if url.query.get("role"):
            options["role"] = url.query["role"]
        return [], options

    def _get_server_version_info(self, connection):
        version = connection.exec_driver_sql(
            "SELECT rdb$get_context('SYSTEM', 'ENGINE_VERSION') FROM rdb$database"
        ).scalar()
        return tuple(int(part) for part in re.findall(r"\d+", version or "")[:3])

    def _get_default_schema_name(self, connection):
        return None

    def get_isolation_level(self, dbapi_connection):
        return "READ COMMITTED"  # fdb's default transaction parameters

    def is_disconnect(self, e, connection, cursor):
        message = str(e).lower()
        return isinstance(e, self.loaded_dbapi.Error) and any(m in message for m in DISCONNECT_MESSAGES)

    def do_ping(self, dbapi_connection):
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1 FROM rdb$database")
            cursor.fetchall()
        finally:
            cursor.close()
        return True

    # -- reflection -----------------------------------------------------------------------
    def _rows(self, connection, sql, **params):
        return connection.execute(sa.text(sql), params).all()

    @reflection.cache
    def has_table(self, connection, table_name, schema=None, **kw):
        self._ensure_has_table_connection(connection)
        return bool(self._rows(
            connection,
            "SELECT 1 FROM rdb$relations WHERE rdb$relation_name = :name",
            name=self.denormalize_name(table_name),
        ))

    @reflection.cache
    def has_sequence(self, connection, sequence_name, schema=None, **kw):
        return bool(self._rows(
            connection, "SELECT 1 FROM rdb$generators WHERE rdb$generator_name = :name",
            name=self.denormalize_name(sequence_name),
        ))

    @reflection.cache
    def get_table_names(self, connection, schema=None, **kw):
        rows = self._rows(
            connection,
            "SELECT TRIM(rdb$relation_name) FROM rdb$relations WHERE rdb$view_blr IS NULL "
            "AND COALESCE(rdb$system_flag, 0) = 0 AND rdb$relation_type = 0 ORDER BY 1",
        )
        return [self.normalize_name(name) for (name,) in rows]

    @reflection.cache
    def get_view_names(self, connection, schema=None, **kw):
        rows = self._rows(
            connection,
            "SELECT TRIM(rdb$relation_name) FROM rdb$relations WHERE rdb$view_blr IS NOT NULL "
            "AND COALESCE(rdb$system_flag, 0) = 0 ORDER BY 1",
        )
        return [self.normalize_name(name) for (name,) in rows]

    @reflection.cache
    def get_columns(self, connection, table_name, schema=None, **kw):
        rows = self._rows(
            connection,
            "SELECT TRIM(rf.rdb$field_name) AS name, f.rdb$field_type AS ftype, f.rdb$field_sub_type AS subtype, "
            "f.rdb$field_length AS flen, f.rdb$field_precision AS fprec, f.rdb$field_scale AS fscale, "
            "f.rdb$character_length AS clen, f.rdb$character_set_id AS charset, "
            "COALESCE(rf.rdb$null_flag, f.rdb$null_flag, 0) AS notnull, "
            "CAST(COALESCE(rf.rdb$default_source, f.rdb$default_source) AS VARCHAR(1000)) AS dflt, "
            "rf.rdb$identity_type AS ident "
            "FROM rdb$relation_fields rf JOIN rdb$fields f ON f.rdb$field_name = rf.rdb$field_source "
            "WHERE rf.rdb$relation_name = :name ORDER BY rf.rdb$field_position",
            name=self.denormalize_name(table_name),
        )
        if not rows:
            raise sa.exc.NoSuchTableError(table_name)
        columns = []
        for row in rows:
            default_ = row.dflt.strip() if row.dflt else None
            if default_ and default_.upper().startswith("DEFAULT"):
                default_ = default_[len("DEFAULT"):].strip()
            column = {
                "name": self.normalize_name(row.name),
                "type": self._column_type(row),
                "nullable": not row.notnull and row.ident is None,
                "default": default_,
                "autoincrement": row.ident is not None,
            }
            if row.ident is not None:
                column["identity"] = {"always": row.ident == 0}
            columns.append(column)
        return columns

    @staticmethod
    def _column_type(row) -> sqltypes.TypeEngine:
        scale = -(row.fscale or 0)
        if row.ftype in (SMALLINT, INTEGER, BIGINT) and (row.subtype in (1, 2) or scale):
            numeric = sqltypes.DECIMAL if row.subtype == 2 else sqltypes.NUMERIC
            precision = row.fprec or {SMALLINT: 4, INTEGER: 9, BIGINT: 18}[row.ftype]
            return numeric(precision, scale)
        simple = {
            SMALLINT: sqltypes.SMALLINT, INTEGER: sqltypes.INTEGER, BIGINT: sqltypes.BIGINT,
            FLOAT: sqltypes.REAL, DOUBLE: sqltypes.DOUBLE_PRECISION, DATE: sqltypes.DATE,
            TIME: sqltypes.TIME, TIMESTAMP: sqltypes.TIMESTAMP, BOOLEAN: sqltypes.BOOLEAN,
        }
        if row.ftype in simple:
            return simple[row.ftype]()
        if row.ftype in (CHAR, VARCHAR, CSTRING):
            length = row.clen or row.flen
            if row.charset == OCTETS:
                return sqltypes.BINARY(row.flen) if row.ftype == CHAR else sqltypes.VARBINARY(row.flen)
            return sqltypes.CHAR(length) if row.ftype == CHAR else sqltypes.VARCHAR(length)
        if row.ftype == BLOB:
            return sqltypes.TEXT() if row.subtype == 1 else sqltypes.BLOB()
        return sqltypes.NULLTYPE

    @reflection.cache
    def get_pk_constraint(self, connection, table_name, schema=None, **kw):
        rows = self._constraint_columns(connection, table_name, "PRIMARY KEY")
        if not rows:
            return {"constrained_columns": [], "name": None}
        return {"constrained_columns": [column for _, column in rows], "name": rows[0][0]}

    @reflection.cache
    def get_unique_constraints(self, connection, table_name, schema=None, **kw):
        constraints: dict[str, list[str]] = {}
        for name, column in self._constraint_columns(connection, table_name, "UNIQUE"):
            constraints.setdefault(name, []).append(column)
        return [{"name": name, "column_names": columns} for name, columns in constraints.items()]

    def _constraint_columns(self, connection, table_name, kind):
        rows = self._rows(
            connection,
            "SELECT TRIM(rc.rdb$constraint_name), TRIM(s.rdb$field_name) FROM rdb$relation_constraints rc "
            "JOIN rdb$index_segments s ON s.rdb$index_name = rc.rdb$index_name "
            "WHERE rc.rdb$relation_name = :name AND rc.rdb$constraint_type = :kind "
            "ORDER BY rc.rdb$constraint_name, s.rdb$field_position",
            name=self.denormalize_name(table_name), kind=kind,
        )
        return [(self.normalize_name(name), self.normalize_name(column)) for name, column in rows]

    @reflection.cache
    def get_indexes(self, connection, table_name, schema=None, **kw):
        rows = self._rows(
            connection,
            "SELECT TRIM(i.rdb$index_name), i.rdb$unique_flag, TRIM(s.rdb$field_name) FROM rdb$indices i "
            "JOIN rdb$index_segments s ON s.rdb$index_name = i.rdb$index_name "
            "LEFT JOIN rdb$relation_constraints rc ON rc.rdb$index_name = i.rdb$index_name "
            "WHERE i.rdb$relation_name = :name AND rc.rdb$constraint_name IS NULL "
            "AND i.rdb$expression_source IS NULL ORDER BY i.rdb$index_name, s.rdb$field_position",
            name=self.denormalize_name(table_name),
        )
        indexes: dict[str, dict] = {}
        for name, unique, column in rows:
            index = indexes.setdefault(
                name, {"name": self.normalize_name(name), "unique": bool(unique), "column_names": []}
            )
            index["column_names"].append(self.normalize_name(column))
        return list(indexes.values())

    @reflection.cache
    def get_foreign_keys(self, connection, table_name, schema=None, **kw):
        return []  # not needed by the mirror (module docstring)


dialect = FirebirdDialect_fdb

__all__ = ["Cursor", "FirebirdCompiler", "FirebirdDDLCompiler", "FirebirdDialect_fdb", "FirebirdExecutionContext",
           "FirebirdIdentifierPreparer", "FirebirdTypeCompiler", "dialect"]
