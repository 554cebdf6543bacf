"""Names of the objects we create, and checks on names users give us.

User-given table and column names are never pasted into SQL: they are quoted by the
engine's SQLAlchemy dialect. The names of our own objects (change tables, triggers) are
derived here, deterministically, so that they fit every engine's identifier limit and
two different channels never share one.
"""

from __future__ import annotations

import hashlib
import re

from airflow_provider_pdr.core.errors import ConfigurationError

PREFIX = "pdr_"
REGISTRY_TABLE = "pdr_channels"
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def short_hash(*parts: str, length: int = 8) -> str:
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=16)
    return digest.hexdigest()[:length]


def check_channel_name(channel: str) -> str:
    if not isinstance(channel, str) or not CHANNEL_NAME.match(channel):
        raise ConfigurationError(
            f"channel name {channel!r} is invalid: use 1 to 63 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return channel


def check_identifier(name: str, what: str) -> str:
    """Refuse names no engine can quote safely; everything else is quoted, not checked."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"{what} name {name!r} is empty")
    if "\x00" in name or len(name) > 128:
        raise ConfigurationError(f"{what} name {name!r} contains a NUL byte or exceeds 128 characters")
    return name


def fit(base: str, limit: int, *identity: str) -> str:
    """`base` if it fits `limit`, else a truncated form with a hash of `identity` (never a collision)."""
    if len(base) <= limit:
        return base
    tail = "_" + short_hash(*identity)
    return base[: limit - len(tail)] + tail


def change_table_name(channel: str, limit: int) -> str:
    slug = channel.lower().replace("-", "_")
    base = f"{PREFIX}c_{slug}"
    if slug != channel:  # "A-b" and "a_b" must not share a change table
        base += "_" + short_hash(channel, length=6)
    return fit(base, limit, channel)


def trigger_base_name(schema: str | None, table: str, body: str) -> str:
    """pdr_<table hash>_<body hash>: short, unique per table, new whenever the body changes."""
    return f"{PREFIX}{table_tag(schema, table)}_{short_hash(body)}"


def table_tag(schema: str | None, table: str) -> str:
    return short_hash(schema or "", table)


def lock_key(*parts: str) -> int:
    """A stable signed 63-bit integer for advisory locks."""
    return int(short_hash(*parts, length=15), 16)
