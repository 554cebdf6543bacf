"""Config files seen by real Airflow processes: a broken file is an import error until fixed and
hides no other DAG; the demo (scripts/demo.py), end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.configs import BAD, GOOD, write

BIN = Path(sys.executable).parent


def airflow_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    return env | {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    } | extra


@pytest.fixture
def private_home(airflow_db, tmp_path):
    """A copy of the session's migrated metadata database: no migration cost, no shared state."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    # SQLite's backup API, not a file copy: it includes what still sits in the write-ahead log.
    with sqlite3.connect(Path(airflow_db) / "airflow.db") as shared, sqlite3.connect(home / "airflow.db") as copy:
        shared.backup(copy)
    return home


def airflow_json(env: dict, *commands: list[str]) -> list:
    """The JSON output of each `airflow` command, run side by side (each spends seconds importing Airflow)."""
    running = [subprocess.Popen([str(BIN / "airflow"), *args, "-o", "json"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    outputs = []
    for process in running:
        stdout, stderr = process.communicate()
        # list-import-errors exits 1 when it lists any, which makes it usable as a CI check.
        assert process.returncode in (0, 1) and "[" in stdout, stdout[-3000:] + stderr[-3000:]
        outputs.append(json.loads([line for line in stdout.splitlines() if line.startswith("[")][-1]))
    return outputs


@pytest.mark.airflow
def test_broken_file_is_an_import_error_until_fixed_and_hides_no_other_dag(private_home, tmp_path):
    configs = tmp_path / "configs"
    write(configs, "a_good.yaml", GOOD)
    bad = write(configs, "b_bad.yaml", BAD)
    env = airflow_env(private_home, PDR_CONFIG_DIR=str(configs))

    def parse():  # what the dag processor does, in one go, recorded in the metadata database
        done = subprocess.run([str(BIN / "airflow"), "dags", "reserialize"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        errors, listed = airflow_json(env, ["dags", "list-import-errors"], ["dags", "list"])
        return errors, {d["dag_id"] for d in listed}

    errors, dags = parse()
    assert [e["filepath"] for e in errors] == ["pdr_config_errors.py"]
    assert f"{bad}:3: reflection 'broken': key 'batch_sise': unknown key" in errors[0]["error"]
    assert dags == {"pdr_orders", "pdr_customers", "pdr_manual"}

    bad.write_text(BAD.replace("batch_sise", "batch_size"))
    errors, dags = parse()
    assert errors == []
    assert dags == {"pdr_orders", "pdr_customers", "pdr_manual", "pdr_broken"}


@pytest.mark.airflow
def test_demo_mirrors_the_source(private_home):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--airflow-home", str(private_home)],
                          env=airflow_env(private_home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "orders_mirror in destination.db: 3 row(s)" in done.stdout
    assert "(4, 'Barbara', '9.99', 'new')" in done.stdout
    assert "The mirror matches the source." in done.stdout
