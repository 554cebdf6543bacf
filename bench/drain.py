"""Child process of the memory benchmark: drain one channel, report this process's peak RSS.

Linux carries the parent's high-water mark into ru_maxrss across fork and exec, so the peak
is also read from VmHWM (this process's own memory only); both are reported.

    python -m bench.drain SOURCE_URL DESTINATION_URL CHANNEL BATCH_SIZE
"""

import json
import resource
import sys
import time

import sqlalchemy as sa

from airflow_provider_pdr.core import ReflectionSpec, reflect


def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux


def peak_kb() -> int:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return maxrss_kb()


def main(source_url: str, destination_url: str, channel: str, batch_size: str) -> None:
    source, destination = sa.create_engine(source_url), sa.create_engine(destination_url)
    start_kb = peak_kb()
    began = time.perf_counter()
    result = reflect(source, destination, ReflectionSpec(channel, create_table=True), batch_size=int(batch_size))
    seconds = time.perf_counter() - began
    if not result.drained:
        raise SystemExit(f"channel {channel!r} not drained: {result}")
    print(json.dumps({"start_kb": start_kb, "peak_kb": peak_kb(), "ru_maxrss_kb": maxrss_kb(), "seconds": seconds,
                      "upserted": result.upserted, "batches": result.batches}))


if __name__ == "__main__":
    main(*sys.argv[1:])
