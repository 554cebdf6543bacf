"""The replication core: capture changes with native triggers, apply them in batches.

Knows nothing of Airflow; takes SQLAlchemy engines.
"""

import warnings

from airflow_provider_pdr.core.channel import FORMAT_VERSION, install_channel, pending_changes, uninstall_channel
from airflow_provider_pdr.core.drain.results import ReflectResult
from airflow_provider_pdr.core.drain.route import RoutePolicy
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.errors import (
    ApplyError, ChannelBusyError, ChannelChangedError, ChannelNotFoundError, ConfigurationError, PdrError, SchemaError,
    UnreachableError, UnsupportedTypeError,
)
from airflow_provider_pdr.core.reconcile import ReconcileResult, reconcile
from airflow_provider_pdr.core.registry import Channel, Pending
from airflow_provider_pdr.core.reflect import reflect
from airflow_provider_pdr.core.snapshot import SnapshotResult, is_loaded, snapshot
from airflow_provider_pdr.core.transform import ColumnMapping, ColumnSpec

__all__ = [
    "FORMAT_VERSION", "ApplyError", "Channel", "ChannelBusyError", "ChannelChangedError", "ChannelNotFoundError",
    "ColumnMapping", "ColumnSpec", "ConfigurationError", "PdrError", "Pending", "ReconcileResult", "ReflectResult",
    "ReflectionSpec", "RoutePolicy", "SchemaError", "SnapshotResult", "UnreachableError", "UnsupportedTypeError",
    "install_channel", "is_loaded", "pending_changes", "reconcile", "reflect", "snapshot", "uninstall_channel",
]

# Names of 0.1.0 that collided with typing's Mapping and pydantic's Field; they still work, with a warning.
RENAMED = {"Mapping": "ColumnMapping", "Field": "ColumnSpec"}


def __getattr__(name: str):
    if name in RENAMED:
        warnings.warn(f"airflow_provider_pdr.core.{name} is renamed {RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return globals()[RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
