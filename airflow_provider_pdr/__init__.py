"""airflow-provider-pdr: live, trigger-fed mirrors of SQL tables, run by Airflow."""

__version__ = "0.1.0"

INTEGRATION = "PDR"


def get_provider_info() -> dict:
    """What Airflow's providers manager reads through the `apache_airflow_provider` entry point."""
    return {
        "package-name": "airflow-provider-pdr",
        "name": "PDR",
        "description": "Live, trigger-fed mirrors of SQL tables across database engines.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": INTEGRATION, "external-doc-url": "https://pypi.org/project/airflow-provider-pdr/",
             "tags": ["software"]},
            {"integration-name": "Firebird", "external-doc-url": "https://firebirdsql.org/", "tags": ["software"]},
        ],
        "hooks": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_pdr.hooks.database"]},
            {"integration-name": "Firebird", "python-modules": ["airflow_provider_pdr.hooks.firebird"]},
        ],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": [
                "airflow_provider_pdr.operators.channel", "airflow_provider_pdr.operators.reflect",
                "airflow_provider_pdr.operators.reconcile",
            ]},
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_pdr.sensors.pending"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_pdr.triggers.pending"]}],
        "connection-types": [
            {"connection-type": "firebird", "hook-class-name": "airflow_provider_pdr.hooks.firebird.FirebirdHook",
             "hook-name": "Firebird"},
        ],
        "asset-uris": [{"schemes": ["pdr"], "handler": "airflow_provider_pdr.assets.sanitize_uri"}],
    }
