"""CPU time that a piece of work costs: this process's (every thread), and the database servers'
read from /proc. It is what a drain takes from the machines it runs on, its source above all.
/proc counts in clock ticks (10 ms): only the full benchmark's sizes make it mean something.

A server's work is its processes' CPU time: PostgreSQL's backends serving the one database (so
that a source and a destination on the same server are told apart), the whole MariaDB or
Firebird server. SQLite runs inside this process. A server that is not on this machine cannot
be read: its work is None.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import sqlalchemy as sa

LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}
SERVER_COMMANDS = {"mysql": {"mariadbd", "mysqld"}, "firebird": {"firebird"}}  # by /proc/<pid>/comm
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: str) -> float:
    """User and system CPU time of a process (all its threads); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def server_processes(engine: sa.Engine) -> set[str] | None:
    """The pids doing `engine`'s database's work on this machine; empty for SQLite, None where
    they cannot be read (a server elsewhere)."""
    url, name = engine.url, engine.dialect.name
    if name == "sqlite":
        return set()
    if url.host not in LOCAL_HOSTS or not os.path.isdir("/proc/self"):
        return None
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().decode(errors="replace").replace("\0", " ").split()
            with open(f"/proc/{pid}/comm") as comm:
                command = comm.read().strip()
        except OSError:
            continue
        # A PostgreSQL backend names itself "postgres: <cluster>: <user> <database> <client> ...".
        backend = name == "postgresql" and words[:1] == ["postgres:"] and url.database in words
        if backend or command in SERVER_COMMANDS.get(name, ()):
            found.add(pid)
    return found if found or name == "postgresql" else None


class Work(dict):
    """CPU seconds by who spent them: "process", and each side's server ("source", "destination")."""

    @property
    def total(self) -> float | None:
        return None if None in self.values() else sum(self.values())


@contextlib.contextmanager
def measured(**engines: sa.Engine) -> Iterator[Work]:
    """The CPU time of the block: this process's, and each engine's server's (by keyword). A
    server shared by two engines (one MariaDB for both sides) counts once, for the first."""
    counted, sides = set(), {}
    for side, engine in engines.items():
        pids = server_processes(engine)
        if pids is not None and engine.dialect.name != "postgresql":
            pids -= counted  # the same server process serves both sides
            counted |= pids
        sides[side] = (engine, pids, {pid: cpu_seconds(pid) for pid in pids or ()})
    work = Work()
    began = time.process_time()  # after reading /proc, which is not the block's work
    yield work
    work["process"] = time.process_time() - began
    for side, (engine, before_pids, before) in sides.items():
        if before_pids is None:
            work[side] = None
            continue
        # Backends that started meanwhile count from zero; the whole-server ones are as before.
        now = server_processes(engine) if engine.dialect.name == "postgresql" else before_pids
        work[side] = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in now or ())
