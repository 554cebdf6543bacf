"""Fault injection for the reliability tests: killable reflect processes, a TCP proxy that
makes a server unreachable on demand, and writer threads that keep writing meanwhile.

Reflect processes are forked from a *zygote*: one child process that has imported the
provider once and forks a fresh worker per request, so killing and restarting a reflect
costs a fork, not a Python start-up. Workers report what they did on the zygote's stdout
as ``<pid> <event>`` lines (short lines: a pipe writes them whole even from many workers).
"""

from __future__ import annotations

import decimal
import json
import os
import queue
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict

import sqlalchemy as sa

# -- the worker side (runs in the forked children) ------------------------------------------


def _emit(event: str) -> None:
    os.write(1, f"{os.getpid()} {event}\n".encode())


def _work(job: dict) -> None:
    """One worker: reflect in a loop (mode "loop"), once ("once"), or hold the channel lock ("hold")."""
    from airflow_provider_pdr.core import ReflectionSpec
    from airflow_provider_pdr.core.drain.ack import Acknowledger
    from airflow_provider_pdr.core.drain.write import Writer
    from airflow_provider_pdr.core.engines import engine_module
    from airflow_provider_pdr.core.reflect import reflect

    zygote = os.getppid()  # gone when the test process is: then stop, never run on as an orphan
    source, destination = sa.create_engine(job["source"]), sa.create_engine(job["destination"])
    if job["mode"] == "hold":
        with engine_module(source).channel_lock(source, job["schema"], job["channel"], 30):
            _emit("locked")
            while os.getppid() == zygote:
                time.sleep(0.2)
        return
    apply, acknowledge = Writer.apply, Acknowledger.acknowledge

    def applied(self, conn, upserts, deletes, *text):
        removed = apply(self, conn, upserts, deletes, *text)
        _emit("applied")  # the destination committed; the change rows are not yet acknowledged
        return removed

    def acknowledged(self, conn, seqs):
        acknowledge(self, conn, seqs)
        _emit("acked")

    Writer.apply, Acknowledger.acknowledge = applied, acknowledged
    _emit("ready")
    while os.getppid() == zygote:
        spec = ReflectionSpec(job["channel"], job["table"], create_table=True, lock_timeout=job.get("lock_timeout", 30))
        result = reflect(source, destination, spec, batch_size=job["batch_size"])
        if job["mode"] == "once":
            _emit("done " + json.dumps(result.as_dict()))
            return


def zygote() -> None:
    # Imported once here, shared by every fork: a worker starts in milliseconds.
    import MySQLdb  # noqa: F401
    import psycopg2  # noqa: F401
    import sqlalchemy.dialects.mysql.mysqldb  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg2  # noqa: F401
    import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401

    import airflow_provider_pdr.core.engines.mysql  # noqa: F401
    import airflow_provider_pdr.core.engines.postgresql  # noqa: F401
    import airflow_provider_pdr.core.engines.sqlite  # noqa: F401
    import airflow_provider_pdr.core.reflect  # noqa: F401

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _work(job)
            except BaseException as error:  # report, then leave without running the zygote's cleanup
                _emit(f"error {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
                code = 1
            os._exit(code)
        os.write(1, f"0 spawned {pid}\n".encode())
    os._exit(0)


# -- the test side ---------------------------------------------------------------------------


class ReflectWorkers:
    """Starts reflect workers in separate processes, follows their events, SIGKILLs them."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "zygote"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.events: dict[int, queue.Queue] = defaultdict(queue.Queue)
        self.spawned: queue.Queue = queue.Queue()
        self.killed = 0
        self.pids: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            pid, _, event = line.strip().partition(" ")
            if pid == "0":
                self.spawned.put(int(event.split()[1]))
            elif pid.isdigit():
                if event.startswith(("done", "error")):
                    self.pids.discard(int(pid))  # exited by itself: never signal that pid again
                self.events[int(pid)].put(event)

    def start(self, source: sa.Engine, destination: sa.Engine, channel: str, table: str, *,
              mode: str = "loop", batch_size: int = 20, schema: str | None = None, **extra) -> int:
        job = {"source": source.url.render_as_string(hide_password=False),
               "destination": destination.url.render_as_string(hide_password=False),
               "channel": channel, "table": table, "mode": mode, "batch_size": batch_size,
               "schema": schema, **extra}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        pid = self.spawned.get(timeout=10)
        self.pids.add(pid)
        return pid

    def next_event(self, pid: int, timeout: float = 20.0) -> str:
        return self.events[pid].get(timeout=timeout)

    def wait_for(self, pid: int, prefix: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(pid, max(0.01, deadline - time.monotonic()))
            if event.startswith(prefix):
                return event
            if event.startswith("error"):
                raise AssertionError(f"worker {pid} failed: {event}")

    def kill(self, pid: int) -> None:
        """SIGKILL, and wait until the process is really gone (its sockets closed)."""
        if pid not in self.pids:
            return
        self.pids.discard(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed += 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.005)
        raise AssertionError(f"worker {pid} survived SIGKILL")

    def close(self):
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.stdin.close()
        self.process.wait(timeout=10)


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 that can go down (listener and every connection closed,
    so new connections are refused) and come back on the same port."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.lock = threading.Lock()
        self.sockets: set[socket.socket] = set()
        self.listener = None
        self.port = 0
        self.up()

    def url(self, engine: sa.Engine) -> sa.URL:
        return engine.url.set(host="127.0.0.1", port=self.port)

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        self.acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self.acceptor.start()

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            doomed, self.sockets = self.sockets, set()
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            listener.close()
            self.acceptor.join(5)
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:
                    client.close()
                    server.close()
                    return
                self.sockets |= {client, server}
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass
            with self.lock:
                self.sockets -= {a, b}


# -- writers ---------------------------------------------------------------------------------

# Errors that writers meet between themselves (lock conflicts, racing inserts), not ours.
BENIGN = ("deadlock", "lock wait timeout", "locked", "duplicate", "unique", "could not serialize")


class Writers:
    """Threads writing random inserts, updates, deletes and key updates to a table (id, note, amount)
    with `keys` possible ids, some rolled back, some held open for a while. Counts what committed."""

    def __init__(self, engine: sa.Engine, table: sa.Table, *, threads: int = 4, keys: int = 200,
                 rollback_rate: float = 0.1, long_rate: float = 0.02, seed: int = 0):
        self.engine, self.table, self.keys = engine, table, keys
        self.rollback_rate, self.long_rate = rollback_rate, long_rate
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.counts = defaultdict(int)
        self.count_lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(seed * 1000 + n,), daemon=True)
                        for n in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)

    @property
    def committed(self) -> int:
        return self.counts["committed"]

    def _count(self, what: str, n: int = 1) -> None:
        with self.count_lock:
            self.counts[what] += n

    def _statement(self, rng: random.Random, conn) -> str:
        t, key = self.table, rng.randrange(self.keys)
        op = rng.random()
        if op < 0.35:
            conn.execute(t.insert(), {"id": key, "note": f"i{rng.random():.6f}", "amount": decimal.Decimal(rng.randrange(10**6)).scaleb(-2)})
            return "insert"
        if op < 0.7:
            conn.execute(t.update().where(t.c.id == key).values(note=f"u{rng.random():.6f}"))
            return "update"
        if op < 0.85:
            conn.execute(t.delete().where(t.c.id == key))
            return "delete"
        conn.execute(t.update().where(t.c.id == key).values(id=self.keys + rng.randrange(self.keys)))
        return "key update"

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop_event.is_set():
            long = rng.random() < self.long_rate
            try:
                with self.engine.connect() as conn:
                    done = [self._statement(rng, conn) for _ in range(rng.randint(3, 8) if long else 1)]
                    if long:
                        time.sleep(rng.uniform(0.1, 0.4))  # a long transaction, open across reflect runs
                    if rng.random() < self.rollback_rate:
                        conn.rollback()
                        self._count("rolled back")
                        continue
                    conn.commit()
                    self._count("committed")
                    self._count("statements", len(done))
                    if long:
                        self._count("long")
            except sa.exc.DBAPIError as error:
                if any(word in str(error.orig).lower() for word in BENIGN):
                    self._count("conflicts")
                else:
                    self.errors.append(error)
                    return


def same_rows(source: sa.Engine, source_table: str, destination: sa.Engine, destination_table: str):
    """Both tables' rows, in key order, as plain tuples (for an exact comparison)."""
    def read(engine, name):
        with engine.connect() as conn:
            t = sa.Table(name, sa.MetaData(), autoload_with=conn)
            return [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
    return read(source, source_table), read(destination, destination_table)


if __name__ == "__main__" and sys.argv[1:] == ["zygote"]:
    zygote()
