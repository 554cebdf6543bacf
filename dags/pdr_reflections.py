"""One Airflow DAG per reflection (`pdr_<name>`) in the config files of a folder.

The folder is $PDR_CONFIG_DIR, or `reflections/` next to this file. Invalid files are left out
here and reported by `pdr_config_errors.py` as an import error, so they never hide the others.
"""

from pathlib import Path

from airflow_provider_pdr.factory import register_dags

register_dags(globals(), default_dir=Path(__file__).parent / "reflections")
