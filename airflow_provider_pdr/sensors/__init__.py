"""Sensors."""

from airflow_provider_pdr.sensors.pending import PendingChangesSensor

__all__ = ["PendingChangesSensor"]
