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

from sansio_broker.adapters.asyncio import AsyncBroker

T = TypeVar("T")

# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
# Generous "does not hang" bound for a whole test body.
HANG_TIMEOUT = 40.0


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
def registry(broker: AsyncBroker) -> list[Any]:
    """Every connection the pool has open (aiosqlitepool's ``PoolConnection`` objects)."""
    return list(broker._pool._connection_registry.values())


def open_transactions(broker: AsyncBroker) -> list[bool]:
    """For each pooled connection: does its sqlite3 connection have a transaction open?"""
    return [c.raw_connection.driver.connection.in_transaction for c in registry(broker)]


def idle_count(broker: AsyncBroker) -> int:
    """Connections ready to be handed out: on the broker's idle list or in
    aiosqlitepool's queue."""
    return len(broker._idle) + broker._pool.size


async def settle(broker: AsyncBroker, timeout: float = 5.0) -> None:
    """Wait until background clean-up has finished and every connection is back in the pool.

    Returns after ``timeout`` seconds even if that never happens; the caller asserts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not broker._background and idle_count(broker) == len(registry(broker)):
            # One more look after a short pause: a release may be between steps.
            await asyncio.sleep(0.02)
            if not broker._background and idle_count(broker) == len(registry(broker)):
                return
        await asyncio.sleep(0.01)


async def assert_clean(broker: AsyncBroker) -> None:
    """After a settle: no transaction is open anywhere, nothing leaked, the broker still works."""
    await settle(broker)
    assert not any(open_transactions(broker)), open_transactions(broker)
    assert idle_count(broker) == len(registry(broker)), (
        f"{len(registry(broker)) - idle_count(broker)} connection(s) never returned to the pool"
    )
    assert not broker._held, broker._held
    assert len(registry(broker)) <= broker.pool_size
    probe = await asyncio.wait_for(broker.write("_probe", "still works"), 10)
    message = await asyncio.wait_for(broker.claim("_probe", message_id=probe), 10)
    assert message is not None and message.body == "still works"
