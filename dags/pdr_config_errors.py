"""Reports invalid reflection config files as an Airflow import error of this file.

It defines no DAG: it fails to import, naming each invalid file, reflection and key, for as long
as one config file in the folder of `pdr_reflections.py` is invalid. Check files before deploying
with `pdr-lint FILE...`.
"""

from pathlib import Path

from airflow_provider_pdr.factory import raise_config_errors

raise_config_errors(default_dir=Path(__file__).parent / "reflections")
