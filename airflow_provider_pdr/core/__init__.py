"""The replication core: capture changes with native triggers, apply them in batches.

Knows nothing of Airflow; takes SQLAlchemy engines.
"""

from airflow_provider_pdr.core.channel import (
    FORMAT_VERSION, Channel, Pending, install_channel, pending_changes, uninstall_channel,
)
from airflow_provider_pdr.core.drain.results import ReflectResult
from airflow_provider_pdr.core.drain.route import RoutePolicy
from airflow_provider_pdr.core.drain.spec import ReflectionSpec
from airflow_provider_pdr.core.errors import (
    ApplyError, ChannelBusyError, ChannelChangedError, ChannelNotFoundError, ConfigurationError, PdrError, SchemaError,
    UnreachableError, UnsupportedTypeError,
)
from airflow_provider_pdr.core.reconcile import ReconcileResult, reconcile
from airflow_provider_pdr.core.reflect import reflect
from airflow_provider_pdr.core.snapshot import SnapshotResult, is_loaded, snapshot
from airflow_provider_pdr.core.transform import Field, Mapping

__all__ = [
    "FORMAT_VERSION", "ApplyError", "Channel", "ChannelBusyError", "ChannelChangedError", "ChannelNotFoundError",
    "ConfigurationError", "Field", "Mapping", "PdrError", "Pending", "ReconcileResult", "ReflectResult", "ReflectionSpec",
    "RoutePolicy", "SchemaError", "SnapshotResult", "UnreachableError", "UnsupportedTypeError",
    "install_channel", "is_loaded", "pending_changes", "reconcile", "reflect", "snapshot", "uninstall_channel",
]
