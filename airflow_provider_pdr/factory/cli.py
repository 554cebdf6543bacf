"""`pdr`: operate channels from the command line, where Airflow runs.

    pdr channels  --conn ID | --url URL                      the channels in a database
    pdr status    CONFIG_PATH...                             each configured reflection's backlog and lag
    pdr orphans   --conn ID | --url URL CONFIG_PATH...       channels installed but in no config
    pdr uninstall --conn ID | --url URL CHANNEL [--yes]      remove a channel, saying what went
    pdr ddl       --conn ID | --url URL --table T [--schema S] CHANNEL   the DDL install would run

A plain aligned table by default, `--json` for machines. An error is one line on stderr naming the
connection, table or channel, and exit code 1. No password is ever printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from airflow_provider_pdr.core.channel import install_ddl
from airflow_provider_pdr.factory import operations
from airflow_provider_pdr.factory.config import config_files, load_configs

# user:password@ in a URL, wherever a driver message repeats one
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class CommandError(Exception):
    """A failure already worded for the user: printed as one line, exit code 1."""


class Database:
    """The database a command works on: an Airflow connection id, or a SQLAlchemy URL (tests, ad hoc use)."""

    def __init__(self, conn_id: str | None = None, url: str | None = None):
        self.conn_id, self.url = conn_id, url
        self.label = f"connection {conn_id!r}" if conn_id else f"url {_hide_password(url)!r}"
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            if self.url:
                self._engine = sa.create_engine(self.url, pool_pre_ping=True, hide_parameters=True)
            else:
                from airflow_provider_pdr.hooks import PdrHook  # Airflow is only needed for connection ids

                self._engine = PdrHook(self.conn_id).engine
        return self._engine

    def hide_password(self, text: str) -> str:
        """`text` without the database's password, in a URL or on its own (a driver may repeat it)."""
        password = self._engine.url.password if self._engine is not None else None
        text = _hide_password(text)
        return text.replace(password, "***") if password else text

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _hide_password(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


def reason(error: BaseException) -> str:
    """The first line of what went wrong: the driver's own message for database errors, never SQL."""
    cause = error.orig if isinstance(error, sa.exc.DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return _hide_password(lines[0])


# -- output ---------------------------------------------------------------------------------
def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}s"
    if isinstance(value, list):
        return "; ".join(value) or "-"
    return str(value)


def print_rows(rows: list[dict], columns: Sequence[str], as_json: bool) -> None:
    """The rows as JSON, or as a table aligned on its widest cells (headers upper-cased)."""
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = [[c.upper() for c in columns]] + [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


# -- commands -------------------------------------------------------------------------------
CHANNEL_COLUMNS = ("channel", "table", "format_version", "pending", "oldest_age_seconds", "triggers")


def channels_command(args, database: Database) -> int:
    print_rows(operations.list_channels(database.engine), CHANNEL_COLUMNS, args.json)
    return 0


def _load_valid_configs(paths: list[str]):
    """The config files under `paths`; CommandError naming every problem if any file is invalid."""
    files = config_files(paths)
    if not files:
        raise CommandError(f"no config files (*.yaml, *.yml) in {' '.join(paths)}")
    configs = load_configs(files)
    errors = [error for config in configs for error in config.errors]
    if errors:
        raise CommandError("invalid config, run pdr-lint for details: " + " | ".join(errors))
    return configs


def status_command(args, database: Database | None) -> int:
    """Every reflection gets a row; exit code 1 when any could not be read."""
    configs = _load_valid_configs(args.configs)
    opened: dict[str, Database] = {}

    def open_engine(conn_id: str) -> sa.Engine:
        return opened.setdefault(conn_id, Database(conn_id=conn_id)).engine

    def describe_error(conn_id: str, error: BaseException) -> str:
        return opened[conn_id].hide_password(reason(error))

    try:
        rows = operations.reflection_status(configs, open_engine, describe_error)
    finally:
        for each in opened.values():
            each.close()
    columns = ("reflection", "source", "table", "channel", "pending", "oldest_age_seconds", "state")
    print_rows(rows, columns, args.json)
    return 1 if any(row["state"].startswith("unreachable") for row in rows) else 0


def orphans_command(args, database: Database) -> int:
    configured = operations.configured_channels(_load_valid_configs(args.configs), database.conn_id)
    print_rows(operations.orphan_channels(database.engine, configured), CHANNEL_COLUMNS, args.json)
    return 0


def uninstall_command(args, database: Database) -> int:
    if not args.yes:
        row = operations.describe_channel(database.engine, args.channel)
        raise CommandError(
            f"{database.label}: channel {args.channel!r} ({row['table']}, {row['pending']} pending change(s)): "
            "not uninstalled; add --yes to uninstall it and drop its pending changes"
        )
    report = operations.uninstall(database.engine, args.channel)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"uninstalled channel {args.channel!r} on {report['table']}: "
          f"dropped {report['pending']} pending change(s)")
    for line in report["removed"]:
        print(f"removed  {line}")
    for line in report["created"]:
        print(f"created  {line}")
    return 0


def ddl_command(args, database: Database) -> int:
    statements = install_ddl(database.engine, args.channel, args.table, args.schema)
    if args.json:
        print(json.dumps(statements, indent=2))
    else:
        print("\n\n".join(f"{statement.rstrip().rstrip(';')};" for statement in statements))
    return 0


# -- arguments ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdr", description="Operate PDR channels: list, status, orphans, "
                                     "uninstall, and the DDL install would run.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable, help: str, database: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if database:
            where = sub.add_mutually_exclusive_group(required=True)
            where.add_argument("--conn", metavar="ID", help="Airflow connection id of the source database")
            where.add_argument("--url", help="SQLAlchemy URL of the source database, instead of a connection id")
        return sub

    command("channels", channels_command, "list the channels in a database")
    command("status", status_command, "each configured reflection's backlog and lag", database=False) \
        .add_argument("configs", nargs="+", metavar="CONFIG_PATH")
    command("orphans", orphans_command, "channels installed in the database but in no config") \
        .add_argument("configs", nargs="+", metavar="CONFIG_PATH")
    uninstall = command("uninstall", uninstall_command, "uninstall a channel, dropping its pending changes")
    uninstall.add_argument("channel", metavar="CHANNEL")
    uninstall.add_argument("--yes", action="store_true", help="really uninstall")
    ddl = command("ddl", ddl_command, "print the DDL install would run, without running it")
    ddl.add_argument("channel", metavar="CHANNEL")
    ddl.add_argument("--table", required=True, help="the source table the channel would watch")
    ddl.add_argument("--schema", help="its schema (default: the connection's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    database = Database(args.conn, args.url) if hasattr(args, "conn") else None
    try:
        return args.run(args, database)
    except CommandError as error:
        message = str(error)
    except Exception as error:  # one line naming where, never a traceback with SQL or a URL
        message = f"{database.label if database else 'config'}: {reason(error)}"
    finally:
        if database is not None:
            database.close()
    message = database.hide_password(message) if database is not None else _hide_password(message)
    print(f"pdr {args.command}: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
