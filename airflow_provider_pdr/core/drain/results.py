"""What a run reports: its counts, and where its time went."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Timed:
    """Where a run's time went. Reading and writing run side by side (Pace), so the larger of the
    two sets the pace: the side to look at when a run is slow."""

    seconds: float = 0.0  # the whole run
    reading_seconds: float = 0.0  # reading changes and rows from the source, acknowledging them
    writing_seconds: float = 0.0  # writing them into the destination

    def add_sides(self, other: Timed) -> None:
        """Count another run's reading and writing (a copy within a reflect, a reflect within a task)."""
        self.reading_seconds += other.reading_seconds
        self.writing_seconds += other.writing_seconds

    def timing(self) -> str:
        """Where the time went, for a log line."""
        return (f"in {self.seconds:.2f}s (reading the source {self.reading_seconds:.2f}s, "
                f"writing the destination {self.writing_seconds:.2f}s)")


@dataclass
class ReflectResult(Timed):
    upserted: int = 0
    deleted: int = 0  # destination rows removed
    batches: int = 0
    changes: int = 0  # change rows acknowledged
    copied: int = 0  # source rows copied by an initial load, a resync or a schema evolution
    drained: bool = False  # True when the channel was empty at the end
    lag_seconds: float = 0.0  # age of the oldest change still pending afterwards

    def as_dict(self) -> dict:
        return asdict(self)

    def counts(self) -> str:
        """The counts under their XCom names, for a run's summary line."""
        return (f"copied {self.copied}, upserted {self.upserted}, deleted {self.deleted}, changes {self.changes}, "
                f"batches {self.batches}, lag {self.lag_seconds:.3f}s")
