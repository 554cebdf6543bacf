"""Schema drift: the source table's columns or key changed since its channel was installed.

The channel registry keeps the source's columns (name -> compiled type) and key as they
were at install. A reflect compares them with the table as it is now: any difference fails
the run with a message naming it, so that nothing is written under a wrong assumption,
unless the reflection opts in to evolve. Evolving accepts added and removed columns (new
ones are added to the destination as nullable columns, filled by a copy of the table) and
missing capture triggers (reinstalled, then the table is resynced), and refreshes the
channel; a changed key or column type always needs a person (reinstall the channel and resync).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from airflow_provider_pdr.core.registry import Channel
from airflow_provider_pdr.core.errors import SchemaError
from airflow_provider_pdr.core.schema import primary_key


@dataclass
class Drift:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (at install, now)
    key: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # (at install, now)
    triggers_missing: bool = False  # e.g. the table was dropped and created again

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.retyped or self.key or self.triggers_missing)

    @property
    def evolvable(self) -> bool:
        return not (self.retyped or self.key)

    def __str__(self) -> str:
        parts = []
        if self.added:
            parts.append(f"new columns {self.added}")
        if self.removed:
            parts.append(f"dropped columns {self.removed}")
        parts += [f"column {name!r} changed type from {old} to {new}" for name, (old, new) in self.retyped.items()]
        if self.key:
            parts.append(f"primary key changed from {list(self.key[0])} to {list(self.key[1])}")
        if self.triggers_missing:
            parts.append("its capture triggers are gone (was it dropped and created again?), so changes "
                         "since then were not captured: evolving resyncs the whole table")
        return "; ".join(parts)


def detect(channel: Channel, table: sa.Table, dialect: sa.engine.Dialect, triggers_installed: bool) -> Drift:
    """Compare the table as reflected now (with io types, as at install) with the registry."""
    now = {c.name: str(c.type.compile(dialect=dialect)) for c in table.columns}
    before = channel.columns
    drift = Drift(
        added=[n for n in now if n not in before],
        removed=[n for n in before if n not in now],
        retyped={n: (before[n], now[n]) for n in now if n in before and before[n] != now[n]},
    )
    keys = primary_key(table)
    if keys != tuple(channel.table.key_columns):
        drift.key = (tuple(channel.table.key_columns), keys)
    drift.triggers_missing = not triggers_installed
    return drift


def refuse(channel: Channel, drift: Drift, evolve: bool) -> SchemaError:
    where = f"channel {channel.name!r}: source table {str(channel.table)!r} changed since the channel was installed"
    if evolve and not drift.evolvable:
        return SchemaError(
            f"{where}: {drift}. A changed key or column type cannot be evolved: check the destination, "
            "reinstall the channel and resync the reflection"
        )
    return SchemaError(
        f"{where}: {drift}. Nothing was written. Reinstall the channel (and resync) after adapting the "
        "destination, or let the reflection evolve (evolve: true) to add new columns to the destination"
    )
