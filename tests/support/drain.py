"""Running a drain as the tests need it: into a mirror made on first use."""

from __future__ import annotations

import dataclasses

from airflow_provider_pdr.core import ReflectionSpec, reflect

SPEC_FIELDS = [field.name for field in dataclasses.fields(ReflectionSpec)]


def mirror(source, destination, channel="orders", table="mirror", **options):
    """Reflect `channel` into `table`, created on the first run; `options` are the spec's fields
    and the run's limits."""
    spec = {"create_table": True, **{name: options.pop(name) for name in SPEC_FIELDS if name in options}}
    return reflect(source, destination, ReflectionSpec(channel, table, **spec), **options)
