"""What tests read or patch of an adapter's private state, in one place.

Tests ask questions ("which connections are open?", "is every one idle?");
the answers need the adapters' private attributes, whose names change as the
adapters are refactored. Every such access is here, named by what the test
wants to know, so that when an internal moves only this module changes.
Outside this module, tests use no ``broker._...`` attribute.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _engine(broker: Any) -> Any:
    """The engine behind the broker's operations (blocking: connections,
    groups, fork; asyncio and trio: the shared pooled engine)."""
    return broker._engine


def _runtime(broker: Any) -> Any:
    """asyncio, trio: the runtime object under the pooled engine (its pool)."""
    return broker._engine.runtime


def _is_asyncio(broker: Any) -> bool:
    """The asyncio adapter keeps its connections in an aiosqlitepool pool."""
    return hasattr(_runtime(broker), "_pool") if hasattr(_engine(broker), "runtime") else False


# ------------------------------------------------------------ connections
def pool_entries(broker: Any) -> list[Any]:
    """asyncio: every connection the pool has open (the adapter's connection objects)."""
    return _runtime(broker)._pool.connections()  # type: ignore[no-any-return]


def open_connections(broker: Any) -> list[Any]:
    """The adapter's connection objects (each with ``.driver``) that are open now."""
    if _is_asyncio(broker):
        return pool_entries(broker)
    engine = _engine(broker)
    return list(engine.runtime._connections if hasattr(engine, "runtime") else engine._connections)


def sqlite_connections(broker: Any) -> list[sqlite3.Connection]:
    """The sqlite3 connection under each open connection of an async broker."""
    return [connection.driver.connection for connection in open_connections(broker)]


def thread_sqlite_connection(broker: Any) -> sqlite3.Connection:
    """blocking: the sqlite3 connection of the calling thread (opened on first use)."""
    return _engine(broker)._connection().driver.connection  # type: ignore[no-any-return]


def idle_connections(broker: Any) -> int:
    """How many connections are ready to be handed out (asyncio: the broker's
    idle list plus aiosqlitepool's queue)."""
    if _is_asyncio(broker):
        return len(_runtime(broker)._idle) + _runtime(broker)._pool.ready()  # type: ignore[no-any-return]
    return len(_runtime(broker)._idle)


def busy_after_cancel(broker: Any) -> list[bool]:
    """trio: for each connection, is an operation its caller abandoned still running?
    (asyncio: none is; a connection with one is not counted idle.)"""
    if _is_asyncio(broker):
        return []
    return [c.busy is not None and not c.busy.finished for c in _runtime(broker)._connections]


def worker_thread(connection: Any) -> Any:
    """trio: the worker thread that runs a connection's operations."""
    return connection.worker._thread


def wrap_worker_jobs(connection: Any, wrap: Callable[[Any], Any]) -> Any:
    """trio: put ``wrap(queue)`` in place of the job queue of a connection's worker thread."""
    connection.worker._jobs = wrapped = wrap(connection.worker._jobs)
    return wrapped


def cleaning_up(broker: Any) -> bool:
    """Is background clean-up (a rollback, a give-back) still running?"""
    return bool(_runtime(broker)._background if _is_asyncio(broker) else _runtime(broker)._cleaning)


def in_background(broker: Any, work: Any) -> None:
    """asyncio, trio: hand ``work`` (a coroutine) to the runtime's background clean-up."""
    _runtime(broker).in_background(work)


def held_by_task(broker: Any) -> dict[Any, Any]:
    """The connections held by a task's transaction or stream batch, by task."""
    return dict(_engine(broker).held)


def is_closed(broker: Any) -> bool:
    return bool(_runtime(broker).closed)


def unusable(broker: Any) -> bool:
    """blocking: does the broker refuse calls (it was closed, or forked inside a transaction)?"""
    return _engine(broker)._unusable is not None


def current_task(broker: Any) -> object:
    """The task the broker would attribute a call to, as its transactions do."""
    return _runtime(broker).current_task()


def waiting(broker: Any) -> int:
    """How many callers wait now: getters queued for a message, plus listeners
    (``broker.get``, a peeking ``watch``) between two looks."""
    return _engine(broker).waits.waiting  # type: ignore[no-any-return]


# ------------------------------------------------------------ acquisition
async def acquire(broker: Any) -> Any:
    """Take a connection from the pool, as an operation does."""
    return await _runtime(broker).acquire()


def release(broker: Any, connection: Any) -> None:
    _runtime(broker).release(connection)


def pool_lock(broker: Any) -> Any:
    """asyncio: aiosqlitepool's lock, held while it opens or resets a connection
    (its ``Pool``'s, also under the public ``SQLiteConnectionPool``)."""
    inner = _runtime(broker)._pool.inner
    return getattr(inner, "_pool", inner)._lock


def connect_function(broker: Any) -> Callable[[Any], Any]:
    """trio: how the broker opens a connection on a worker thread."""
    return _runtime(broker)._connect  # type: ignore[no-any-return]


def replace_connect(broker: Any, connect: Callable[[Any], Any]) -> None:
    _runtime(broker)._connect = connect


# ---------------------------------------------------------------- drivers
def driver_handlers(driver: Any) -> dict[type, Callable[[Any], Any]]:
    """The driver's table of command handlers (patched to inject faults and delays)."""
    return driver._handlers  # type: ignore[no-any-return]


@contextmanager
def patched_handler(
    broker: Any, command: type, make: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]
) -> Iterator[None]:
    """Replace the driver's handler for ``command`` on every open connection of ``broker``."""
    tables = [driver_handlers(c.driver) for c in open_connections(broker)]
    originals = [table[command] for table in tables]
    for table, original in zip(tables, originals, strict=True):
        table[command] = make(original)
    try:
        yield
    finally:
        for table, original in zip(tables, originals, strict=True):
            table[command] = original
