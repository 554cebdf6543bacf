"""The `pdr` command against real databases: channels, status, orphans, uninstall and ddl.

The command runs in this process (main(argv), output captured); one test runs it as a program.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_pdr.core import install_channel
from airflow_provider_pdr.core.engines import SourceTable, engine_module
from airflow_provider_pdr.factory.cli import main
from tests.support.configs import write as write_config
from tests.support.tables import orders, write

KINDS = ["sqlite", "postgresql", "mysql", "firebird"]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(params=KINDS)
def source(request, databases):
    return databases.new(request.param)


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def catalog(engine: sa.Engine, table: str = "orders") -> dict:
    """The tables, and the capture objects on `table`, as the database's catalogs report them."""
    module = engine_module(engine)
    with engine.connect() as conn:
        names = sorted(name.lower() for name in sa.inspect(conn).get_table_names())
        captures = module.capture_objects(conn, SourceTable(table, module.default_schema(conn), ("id",)))
        functions = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
        ).scalar() if module.name == "postgresql" else 0
    return {"tables": names, "captures": sorted(captures), "functions": functions}


def config(tmp_path: Path, *reflections: tuple[str, str, str]) -> str:
    """A config file of (name, source conn_id, source table) reflections; its path."""
    lines = ["reflections:"] + [
        f"  - {{name: {name}, source: {{conn_id: {conn_id}, table: {table}}}, "
        f"destination: {{conn_id: dst, table: {name}_copy}}}}"
        for name, conn_id, table in reflections
    ]
    return str(write_config(tmp_path / "configs", "reflections.yaml", "\n".join(lines) + "\n"))


def test_channels_lists_backlog_format_and_triggers(source, capsys):
    table = orders(source)
    install_channel(source, "billing", "orders")
    install_channel(source, "audit", "orders")
    write(source, table.insert(), [{"id": i, "note": "n"} for i in (1, 2, 3)])

    code, out, err = run(capsys, "channels", "--url", url_of(source), "--json")
    assert (code, err) == (0, "")
    rows = json.loads(out)
    assert [(r["channel"], r["table"].split(".")[-1].lower(), r["format_version"], r["pending"], r["triggers"])
            for r in rows] == [("audit", "orders", 1, 3, True), ("billing", "orders", 1, 3, True)]
    assert all(r["oldest_age_seconds"] >= 0 for r in rows)

    module = engine_module(source)  # someone drops the triggers by hand: the listing says so
    with source.begin() as conn:
        watched = SourceTable("orders", module.default_schema(conn), ("id",))
        for base in module.capture_objects(conn, watched):
            module.execute_ddl(conn, module.drop_capture_ddl(watched, base))
    code, out, err = run(capsys, "channels", "--url", url_of(source))
    header, *lines = out.splitlines()
    assert code == 0 and header.split() == ["CHANNEL", "TABLE", "FORMAT_VERSION", "PENDING", "OLDEST_AGE_SECONDS",
                                            "TRIGGERS"]
    assert [line.split()[0::5] for line in lines] == [["audit", "no"], ["billing", "no"]]
    assert all(line.index(line.split()[1]) == header.index("TABLE") for line in lines)  # aligned columns


def test_channels_in_a_database_without_any(source, capsys):
    assert run(capsys, "channels", "--url", url_of(source), "--json") == (0, "[]\n", "")


def test_ddl_prints_what_install_runs_and_creates_nothing(source, capsys):
    orders(source)
    before = catalog(source)
    code, out, err = run(capsys, "ddl", "--url", url_of(source), "--table", "orders", "orders", "--json")
    assert (code, err) == (0, "")
    statements = json.loads(out)
    assert catalog(source) == before  # nothing was created

    executed = []

    def record(conn, cursor, statement, *rest):
        executed.append(" ".join(statement.split()))

    sa.event.listen(source, "before_cursor_execute", record)
    install_channel(source, "orders", "orders")
    sa.event.remove(source, "before_cursor_execute", record)
    assert statements and all(" ".join(s.split()) in executed for s in statements)
    assert any("pdr_channels" in s for s in statements) and any("TRIGGER" in s.upper() for s in statements)

    # installed: nothing left to run; a second channel on the table regenerates its triggers only
    assert run(capsys, "ddl", "--url", url_of(source), "--table", "orders", "orders", "--json")[1] == "[]\n"
    second = json.loads(run(capsys, "ddl", "--url", url_of(source), "--table", "orders", "audit", "--json")[1])
    assert not any("pdr_channels" in s for s in second) and any("pdr_c_audit" in s.lower() for s in second)

    code, out, err = run(capsys, "ddl", "--url", url_of(source), "--table", "orders", "orders")
    assert (code, out, err) == (0, "\n", "")


def test_uninstall_refuses_without_yes_then_says_what_it_dropped(source, capsys):
    table = orders(source)
    before = catalog(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "n"} for i in (1, 2, 3, 4)])

    code, out, err = run(capsys, "uninstall", "--url", url_of(source), "orders")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("pdr uninstall: url ") and "channel 'orders'" in err and "4 pending" in err
    assert "--yes" in err and catalog(source) != before  # still installed

    source.dispose()  # Firebird drops a table only once no other attachment has used it
    code, out, err = run(capsys, "uninstall", "--url", url_of(source), "orders", "--yes")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("uninstalled channel 'orders' on ") and lines[0].endswith("dropped 4 pending change(s)")
    assert lines[1] == "removed  registry row 'orders' in pdr_channels"
    assert lines[2].lower() == "removed  change table pdr_c_orders"
    assert lines[3].startswith("removed  capture triggers pdr_")
    assert lines[4] == "removed  registry table pdr_channels (this was its last channel)"
    assert catalog(source) == before


def test_uninstall_of_one_of_two_channels_regenerates_the_triggers(source, capsys):
    orders(source)
    install_channel(source, "orders", "orders")
    install_channel(source, "audit", "orders")
    source.dispose()  # as above
    code, out, err = run(capsys, "uninstall", "--url", url_of(source), "audit", "--yes", "--json")
    report = json.loads(out)
    assert (code, err, report["channel"], report["pending"]) == (0, "", "audit", 0)
    assert [line.split(" ")[0] for line in report["removed"]] == ["registry", "change", "capture"]
    assert len(report["created"]) == 1
    rows = json.loads(run(capsys, "channels", "--url", url_of(source), "--json")[1])
    assert [(r["channel"], r["triggers"]) for r in rows] == [("orders", True)]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_orphans_are_installed_channels_in_no_config(kind, databases, tmp_path, capsys, connect):
    source = databases.new(kind)
    orders(source)
    orders(source, "customers")
    for channel, table in (("orders", "orders"), ("old_orders", "orders"), ("customers", "customers")):
        install_channel(source, channel, table)
    other = databases.new("sqlite")
    connect("src", source), connect("other", other)
    path = config(tmp_path, ("orders", "src", "orders"), ("customers", "other", "customers"))

    code, out, err = run(capsys, "orphans", "--conn", "src", path, "--json")
    assert (code, err) == (0, "") and [r["channel"] for r in json.loads(out)] == ["customers", "old_orders"]
    code, out, err = run(capsys, "orphans", "--url", url_of(source), path, "--json")  # any connection's config
    assert (code, err) == (0, "") and [r["channel"] for r in json.loads(out)] == ["old_orders"]

    broken = write_config(tmp_path / "broken", "bad.yaml", "reflections:\n  - {name: x}\n")
    code, out, err = run(capsys, "orphans", "--conn", "src", str(broken))
    assert (code, out) == (1, "") and err.startswith("pdr orphans: invalid config, run pdr-lint") and "bad.yaml" in err


def test_status_reads_each_reflection_and_marks_an_unreachable_connection(databases, tmp_path, capsys, connect,
                                                                           monkeypatch):
    source = databases.new("postgresql")
    table = orders(source)
    install_channel(source, "orders", "orders")
    write(source, table.insert(), [{"id": i, "note": "n"} for i in (1, 2)])
    connect("src", source)
    down = {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "u", "password": "s3cr3t-pw",
            "schema": "db"}
    monkeypatch.setenv("AIRFLOW_CONN_DOWN", json.dumps(down))
    path = config(tmp_path, ("orders", "src", "orders"), ("later", "src", "orders"), ("lost", "down", "t"))

    code, out, err = run(capsys, "status", path, "--json")
    assert code == 1 and err == "" and "s3cr3t-pw" not in out
    rows = {r["reflection"]: r for r in json.loads(out)}
    assert (rows["orders"]["pending"], rows["orders"]["state"]) == (2, "ok")
    assert rows["orders"]["oldest_age_seconds"] >= 0
    assert (rows["later"]["pending"], rows["later"]["state"]) == (None, "not installed")
    assert rows["lost"]["source"] == "down" and rows["lost"]["state"].startswith("unreachable: ")

    code, out, err = run(capsys, "status", path)
    assert code == 1 and "s3cr3t-pw" not in out + err
    assert [line.split()[0] for line in out.splitlines()] == ["REFLECTION", "orders", "later", "lost"]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_errors_are_one_line_naming_where_and_never_the_password(kind, databases, capsys):
    url = sa.make_url(url_of(databases.new(kind))).set(username="nobody", password="s3cr3t-pw")
    code, out, err = run(capsys, "channels", "--url", url.render_as_string(hide_password=False))
    assert (code, out) == (1, "") and len(err.splitlines()) == 1 and "s3cr3t-pw" not in err
    assert err.startswith("pdr channels: url '") and "nobody:***@" in err


def test_errors_name_the_table_channel_and_connection(databases, capsys, connect):
    source = databases.new("sqlite")
    url = url_of(source)
    code, out, err = run(capsys, "ddl", "--url", url, "--table", "nope", "orders")
    assert (code, out) == (1, "") and err == f"pdr ddl: url {url!r}: table 'nope' does not exist in the sqlite database\n"
    code, out, err = run(capsys, "uninstall", "--url", url, "ghost", "--yes")
    assert code == 1 and err.endswith("channel 'ghost' is not installed: the source has no pdr_channels table\n")
    code, out, err = run(capsys, "channels", "--conn", "undefined_conn")
    assert code == 1 and err.startswith("pdr channels: connection 'undefined_conn': ") and len(err.splitlines()) == 1


def test_the_pdr_program(databases):
    """The console script setup.cfg declares, run as a program (the installed one when the venv has it)."""
    assert "pdr = airflow_provider_pdr.factory.cli:main" in (ROOT / "setup.cfg").read_text()
    source = databases.new("sqlite")
    orders(source)
    install_channel(source, "orders", "orders")
    installed = Path(sys.executable).parent / "pdr"
    program = [str(installed)] if installed.exists() else [
        sys.executable, "-c", "import sys; from airflow_provider_pdr.factory.cli import main; sys.exit(main())"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*program, "channels", "--url", url_of(source)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert (done.returncode, done.stderr) == (0, "") and done.stdout.splitlines()[1].split()[:4] == [
        "orders", "orders", "1", "0"]
    done = subprocess.run([*program, "uninstall", "--url", url_of(source), "orders"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1 and "add --yes" in done.stderr
