"""Errors the core raises. Each message names what was wrong and where."""


class PdrError(Exception):
    """Base class of every error raised on purpose by airflow-provider-pdr."""


class ConfigurationError(PdrError, ValueError):
    """An argument or a configuration value is invalid (bad name, missing key...)."""


class SchemaError(PdrError):
    """A table is missing, has no primary key, or its columns do not fit."""


class UnsupportedTypeError(SchemaError):
    """A column type cannot be carried to the destination engine without loss."""


class ChannelNotFoundError(PdrError):
    """The channel is not installed in the source database."""


class ChannelBusyError(PdrError):
    """Another process holds the channel's lock (another reflect run is draining it)."""


class ApplyError(PdrError):
    """The destination rejected a batch; nothing of it was acknowledged."""


class UnreachableError(PdrError):
    """A database refused the connection or dropped it mid-drain; nothing unapplied was acknowledged."""


class ChannelChangedError(PdrError):
    """The channel's change rows changed under a drain (reinstalled or emptied); nothing was acknowledged."""
