"""Hooks: any supported connection id to a SQLAlchemy engine (PdrHook), and Firebird connections."""

from airflow_provider_pdr.hooks.database import PdrHook
from airflow_provider_pdr.hooks.firebird import FirebirdHook

__all__ = ["FirebirdHook", "PdrHook"]
