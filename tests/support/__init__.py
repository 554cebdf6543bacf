"""Helpers the tests share: databases, tables, faults, a throwaway Airflow."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root
