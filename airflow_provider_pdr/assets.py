"""Mirror tables as Airflow Assets: ``pdr://<connection id>/<schema>/<table>``.

The schema part is left out when the destination uses its connection's default schema
(``pdr://<connection id>/<table>``). Names are percent-encoded, so any table name fits.
"""

from __future__ import annotations

from urllib.parse import SplitResult, quote

from airflow.sdk import Asset

SCHEME = "pdr"


def table_uri(conn_id: str, table: str, schema: str | None = None) -> str:
    parts = [schema, table] if schema else [table]
    return f"{SCHEME}://{conn_id}/" + "/".join(quote(part, safe="") for part in parts)


def table_asset(conn_id: str, table: str, schema: str | None = None) -> Asset:
    """The Asset a ReflectOperator writing `table` through `conn_id` updates; schedule DAGs on it."""
    return Asset(uri=table_uri(conn_id, table, schema), group="pdr")


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI check for the pdr scheme (registered in get_provider_info)."""
    parts = uri.path.strip("/").split("/")
    if not uri.netloc or not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(
            f"PDR asset URI {uri.geturl()!r} must be pdr://<connection id>/<table> or "
            "pdr://<connection id>/<schema>/<table>"
        )
    return uri
