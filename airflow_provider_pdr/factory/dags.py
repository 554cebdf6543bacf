"""Reflections -> Airflow DAGs: one DAG per reflection, install triggers -> wait for changes -> reflect.

Every run is safe to repeat: installing is idempotent, and a reflect applies whatever is pending
(each change row read joins the source row's *current* state) and acknowledges exactly what it read.
So a manual run, a retry or a backfill never applies anything twice in effect.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Iterable

from airflow.sdk import DAG

from airflow_provider_pdr.factory.config import ConfigFile, Reflection

log = logging.getLogger(__name__)

CALLBACKS = ("on_failure_callback", "on_success_callback", "on_retry_callback")


def _doc(r: Reflection, path: Path | None) -> str:
    source = ".".join(filter(None, [r.source.schema_, r.source.table]))
    destination = ".".join(filter(None, [r.destination.schema_, r.destination.table]))
    return (
        f"Mirrors `{source}` (connection `{r.source.conn_id}`) into `{destination}` "
        f"(connection `{r.destination.conn_id}`) through channel `{r.channel}`."
        + (f"\n\nDefined in `{path}`." if path else "")
    )


def _default_args(r: Reflection) -> dict:
    return {
        "owner": r.owner,
        "retries": r.retries,
        "retry_delay": timedelta(seconds=r.retry_delay),
        **{key: r.callback(key) for key in CALLBACKS if getattr(r, key)},
    }


def _mirror_args(r: Reflection) -> dict:
    """What the reflect and reconcile tasks both need to find the source and the mirror."""
    return {
        "source_conn_id": r.source.conn_id,
        "channel": r.channel,
        "destination_conn_id": r.destination.conn_id,
        "destination_table": r.destination.table,
        "destination_schema": r.destination.schema_,
        "mapping": r.column_mapping,
        "deletes": r.deletes,
    }


def build_dag(reflection: Reflection, path: Path | None = None) -> DAG:
    # Operators are imported here so that `pdr-lint` and the config model never need them.
    from airflow.sdk import Param

    from airflow_provider_pdr.operators import InstallTriggersOperator, ReflectOperator
    from airflow_provider_pdr.sensors import PendingChangesSensor

    r = reflection
    # auto_register=False: only the DAGs handed back are registered, so a reflection that
    # fails half-way through building never leaves a partial DAG behind.
    with DAG(
        dag_id=r.dag_id,
        schedule=r.schedule,
        start_date=r.start_date,
        catchup=False,
        max_active_runs=1,  # one drain at a time: the channel lock would make a second run wait anyway
        default_args=_default_args(r),
        tags=["pdr", *r.tags],
        doc_md=_doc(r, path),
        # Trigger with full_refresh to resync: copy every row again, remove what the source lost.
        params={"full_refresh": Param(False, type="boolean", description="Resync the whole table")},
        auto_register=False,
    ) as dag:
        install = InstallTriggersOperator(
            task_id="install_triggers",
            source_conn_id=r.source.conn_id,
            source_table=r.source.table,
            source_schema=r.source.schema_,
            channel=r.channel,
        )
        wait = PendingChangesSensor(
            task_id="wait_for_changes",
            source_conn_id=r.source.conn_id,
            channel=r.channel,
            min_changes=r.min_changes,
            max_wait=r.max_wait,
            deferrable=r.deferrable,
            poke_interval=r.poke_interval,
            # A quiet table is not an error: the run ends skipped and the next run waits again.
            timeout=r.wait_timeout,
            soft_fail=True,
        )
        reflect = ReflectOperator(
            task_id="reflect",
            source_table=r.source.table,
            batch_size=r.batch_size,
            create_table=r.create_table,
            time_budget=r.time_budget,
            initial_load=r.initial_load,
            **_mirror_args(r),
        )
        install >> wait >> reflect
    return dag


def build_reconcile_dag(reflection: Reflection, path: Path | None = None) -> DAG:
    """`pdr_<name>_reconcile`: compare the mirror with its source on its own schedule."""
    from airflow_provider_pdr.operators import ReconcileOperator

    r, check = reflection, reflection.reconcile
    with DAG(
        dag_id=f"{r.dag_id}_reconcile",
        schedule=check.schedule,
        start_date=r.start_date,
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(r),  # the same alerting as the reflection's own DAG
        tags=["pdr", "reconcile", *r.tags],
        doc_md="Checks that the mirror equals its source. " + _doc(r, path),
        auto_register=False,
    ) as dag:
        ReconcileOperator(
            task_id="reconcile",
            **_mirror_args(r),
            repair=check.repair,
            chunk_size=check.chunk_size,
        )
    return dag


def build_dags(configs: Iterable[ConfigFile]) -> tuple[dict[str, DAG], list[str]]:
    """DAGs of the valid files by dag_id, and the errors of the others (config or build errors).

    A file contributes all of its DAGs or none, like a file that fails validation.
    """
    dags: dict[str, DAG] = {}
    errors: list[str] = []
    for config in configs:
        if not config.ok:
            errors += config.errors
            continue
        built: dict[str, DAG] = {}
        for reflection in config.reflections:
            try:
                built[reflection.dag_id] = build_dag(reflection, config.path)
                if reflection.reconcile is not None:
                    extra = build_reconcile_dag(reflection, config.path)
                    if extra.dag_id in dags or extra.dag_id in built:
                        raise ValueError(f"its reconcile DAG {extra.dag_id!r} has the id of another DAG")
                    built[extra.dag_id] = extra
            except Exception as error:
                errors.append(f"{config.path}: reflection {reflection.name!r}: cannot build its DAG: "
                              f"{type(error).__name__}: {error}")
                built = {}
                break
        dags.update(built)
    for error in errors:
        log.error("reflection config: %s", error)
    return dags, errors
