"""The replication core: capture changes with native triggers, apply them in batches.

Knows nothing of Airflow; takes SQLAlchemy engines.
"""

from airflow_provider_pdr.core.channel import (
    FORMAT_VERSION, Channel, Pending, install_channel, pending_changes, uninstall_channel,
)
from airflow_provider_pdr.core.errors import (
    ApplyError, ChannelBusyError, ChannelNotFoundError, ConfigurationError, PdrError, SchemaError,
    UnreachableError, UnsupportedTypeError,
)
from airflow_provider_pdr.core.reflect import ReflectResult, reflect

__all__ = [
    "FORMAT_VERSION", "ApplyError", "Channel", "ChannelBusyError", "ChannelNotFoundError",
    "ConfigurationError", "PdrError", "Pending", "ReflectResult", "SchemaError", "UnreachableError",
    "UnsupportedTypeError",
    "install_channel", "pending_changes", "reflect", "uninstall_channel",
]
