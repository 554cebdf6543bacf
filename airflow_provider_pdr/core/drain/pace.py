"""Reading and writing side by side: the thread that writes while the source is read, and where
a drain's or a copy's time goes."""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from airflow_provider_pdr.core.engines import EngineModule


@contextlib.contextmanager
def young_collections_only():
    """Pause the garbage collector's automatic runs while batches are drained; the drain runs a
    young-generation collection after each batch instead. Every row read is a new object, and
    the automatic runs that so many new objects set off include full ones, which walk every
    object of the process (an Airflow task holds millions): a sixth of a narrow drain's time."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def writing_thread(src: EngineModule, dst: EngineModule) -> ThreadPoolExecutor | InPlace:
    """The thread that writes into the destination while the source is read. SQLite's driver
    gives up the interpreter lock for every row, so it crawls beside a busy thread: with it on
    either side, each write runs in the reading thread, in turn."""
    if src.overlaps and dst.overlaps:
        return ThreadPoolExecutor(1, thread_name_prefix="pdr-apply")
    return InPlace()


class InPlace:
    """An executor that runs what it is given in the calling thread, when its result is asked
    for: a batch is written after the one before it was acknowledged, as in a plain loop."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def submit(function, *args) -> Deferred:
        return Deferred(function, args)


class Deferred:
    """A call made the first time its result is asked for."""

    def __init__(self, function, args):
        self.call = functools.partial(function, *args)

    def result(self):
        if self.call is not None:
            self.value, self.call = self.call(), None
        return self.value


class Pace:
    """Where a drain's or a copy's time goes: `writing` in the writer (destination writes), and
    `reading` in the reader, less its waits for the writer (source reads, acknowledgements)."""

    def __init__(self):
        self.began, self.writing, self.waiting = time.perf_counter(), 0.0, 0.0

    def writer(self, function: Callable) -> Callable:
        """`function`, its run time counted as writing (only the writer adds to it)."""
        def timed(*args):
            began = time.perf_counter()
            try:
                return function(*args)
            finally:
                self.writing += time.perf_counter() - began

        return timed

    def wait(self, applying: Future | Deferred):
        """The writer's result, the wait for it not counted as reading."""
        began = time.perf_counter()
        try:
            return applying.result()
        finally:
            self.waiting += time.perf_counter() - began

    def inline(self, function: Callable, *args):
        """`function` run here, in the reader, counted as writing."""
        return self.wait(InPlace.submit(self.writer(function), *args))

    def add_to(self, result) -> None:
        """Count the time in a result (results.Timed)."""
        result.reading_seconds += time.perf_counter() - self.began - self.waiting
        result.writing_seconds += self.writing
