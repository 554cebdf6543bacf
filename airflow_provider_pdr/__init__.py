"""airflow-provider-pdr: live, trigger-fed mirrors of SQL tables, run by Airflow."""

__version__ = "0.1.0"
