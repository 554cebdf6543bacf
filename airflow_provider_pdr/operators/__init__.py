"""Operators: install and remove channels, reflect a channel into a destination table, reconcile."""

from airflow_provider_pdr.operators.channel import InstallTriggersOperator, UninstallTriggersOperator
from airflow_provider_pdr.operators.reconcile import ReconcileOperator
from airflow_provider_pdr.operators.reflect import ReflectOperator

__all__ = ["InstallTriggersOperator", "ReconcileOperator", "ReflectOperator", "UninstallTriggersOperator"]
