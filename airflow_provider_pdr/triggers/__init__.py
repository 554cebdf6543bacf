"""Triggers that run in Airflow's triggerer."""

from airflow_provider_pdr.triggers.pending import PendingChangesTrigger

__all__ = ["PendingChangesTrigger"]
