"""airflow-provider-pdr: live, trigger-fed mirrors of SQL tables, run by Airflow."""

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """What Airflow's providers manager reads through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "airflow-provider-pdr",
        "name": "PDR",
        "description": "Live, trigger-fed mirrors of SQL tables across database engines.",
        "versions": [__version__],
    }
