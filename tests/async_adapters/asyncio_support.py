"""Helpers for the asyncio-adapter tests: running coroutines, watching threads and the pool.

There is no pytest-asyncio: every test is a plain function that hands an
inner coroutine to :func:`run`, which also puts an upper bound on it so a
hang fails the test instead of the whole run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from tests.async_adapters.kit import HANG_TIMEOUT, QUIET, assert_clean, open_transactions, settle
from tests.support import internals

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = HANG_TIMEOUT) -> T:
    """``asyncio.run(coro)``, failing (not hanging) after ``timeout`` seconds."""

    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


# ------------------------------------------------------------------ threads
def worker_threads() -> set[threading.Thread]:
    """aiosqlite's connection worker threads that are alive now."""
    return {t for t in threading.enumerate() if t.is_alive() and "_connection_worker_thread" in t.name}


def threads_left(before: Iterable[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    """Worker threads started since ``before`` that are still alive after ``timeout`` seconds."""
    known = set(before)
    deadline = time.monotonic() + timeout
    while True:
        left = {t for t in threading.enumerate() if t.is_alive() and t not in known}
        left = {t for t in left if "_connection_worker_thread" in t.name}
        if not left or time.monotonic() > deadline:
            return left
        for t in left:
            t.join(0.05)


def reap_worker_threads(threads: Iterable[threading.Thread]) -> None:
    """Stop leaked aiosqlite workers (test hygiene after a failure or a known bug).

    A leaked worker is not a daemon: left alone it would keep the test process
    from exiting. Its connection object is found with the garbage collector
    and told to close and stop, as ``aiosqlite.Connection.stop`` does.
    """
    import gc

    import aiosqlite
    from aiosqlite.core import _STOP_RUNNING_SENTINEL

    targets = set(threads)
    for obj in gc.get_objects():
        if isinstance(obj, aiosqlite.Connection) and obj._thread in targets:

            def stop(conn: aiosqlite.Connection = obj) -> object:
                if conn._connection is not None:
                    conn._connection.close()
                    conn._connection = None
                return _STOP_RUNNING_SENTINEL

            obj._running = False
            obj._tx.put_nowait((None, stop))
    for t in targets:
        t.join(5)


# --------------------------------------------------------------------- pool
# The pool is watched through tests.support.internals, as in the merged suite.
registry = internals.open_connections
idle_count = internals.idle_connections
__all__ = ["QUIET", "assert_clean", "idle_count", "open_transactions", "registry", "settle"]
