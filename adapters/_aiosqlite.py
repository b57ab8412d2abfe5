"""The one place that touches private internals of aiosqlite and aiosqlitepool.

The asyncio adapter runs a whole operation on a connection's worker thread in
one hop: a bare future and the job go on aiosqlite's worker queue (``_tx``),
which costs two loop iterations where aiosqlite's public methods cost five and
run one statement each. It also checks connections in and out of
aiosqlitepool's ``Pool`` one at a time, where the public
``SQLiteConnectionPool`` offers only ``async with pool.connection()``.

Neither library promises those internals. At import this module checks that
they are there (names, signatures, attribute types of an unstarted connection)
and sets :data:`FAST_WORKER` and :data:`FAST_POOL`. Where a check fails, or
``SANSIO_BROKER_AIOSQLITE_FALLBACK=1`` is set, the adapter runs the fallback,
slower and just as correct:

- the worker: a daemon thread of our own that opens the sqlite3 connection and
  runs every job on it, in order, exactly as aiosqlite's worker does
  (aiosqlite's public API cannot run a callable on its thread, nor hand over
  its sqlite3 connection);
- the pool: aiosqlitepool's public ``SQLiteConnectionPool``, each checkout an
  entered ``connection()`` context that :meth:`PublicPool.release` exits.

Both paths keep what the adapter relies on: one thread per connection, jobs
in submission order (a clean-up queued behind an abandoned operation runs
after it), ``interrupt`` from the loop thread (the sqlite3 connection is made
with ``check_same_thread=False``), and a ``close`` that returns once the jobs
queued before it have run and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

import aiosqlite
import aiosqlitepool

from sansio_broker import BrokerClosedError

__all__ = [
    "FALLBACK_ENV",
    "FAST_POOL",
    "FAST_WORKER",
    "PoolClosedError",
    "Pooled",
    "Worker",
    "aiosqlite_internals_ok",
    "make_pool",
    "open_worker",
    "pool_internals_ok",
]

T = TypeVar("T")
C = TypeVar("C", bound="Pooled")

FALLBACK_ENV = "SANSIO_BROKER_AIOSQLITE_FALLBACK"
PoolClosedError: type[Exception] = aiosqlitepool.PoolClosedError
# SQLiteConnectionPool takes whole seconds and no None: "no limit" is ten years.
_FOREVER = 10 * 365 * 86_400
_IDLE_TIMEOUT = 86_400


# ------------------------------------------------------------------ checks
def _never() -> sqlite3.Connection:
    raise AssertionError("a probe connection is never opened")


async def _no_factory() -> Any:
    raise AssertionError("a probe pool never opens a connection")


def aiosqlite_internals_ok(module: ModuleType) -> bool:
    """Does ``module`` (aiosqlite) have the internals :class:`AiosqliteWorker` uses?

    An unstarted connection is built and looked at: it starts no thread and
    opens nothing.
    """
    try:
        connection_class = module.Connection
        parameters = list(inspect.signature(connection_class).parameters)
        if parameters[:2] != ["connector", "iter_chunk_size"]:
            return False
        probe = connection_class(_never, 64)
        worker = getattr(probe, "_thread", probe)  # before 0.22 the connection is the thread
        return (
            isinstance(worker, threading.Thread)
            and not worker.is_alive()
            and callable(getattr(probe._tx, "put_nowait", None))
            and probe._running is True
            and probe._connection is None
            and inspect.iscoroutinefunction(connection_class.close)
        )
    except Exception:
        return False


def pool_internals_ok(module: ModuleType) -> bool:
    """Does ``module`` (aiosqlitepool) have the ``Pool`` :class:`InternalPool` uses?"""
    try:
        pool_class = module.pool.Pool
        parameters = inspect.signature(pool_class).parameters
        needed = ("connection_factory", "pool_size", "acquisition_timeout", "idle_timeout", "operation_timeout")
        if any(name not in parameters for name in needed):
            return False
        probe = pool_class(_no_factory, pool_size=1)  # an asyncio.Queue, Lock and Event: no loop needed
        entry = module.connection.PoolConnection(probe)
        return (
            entry.raw_connection is probe
            and all(inspect.iscoroutinefunction(getattr(pool_class, name)) for name in ("acquire", "release", "close"))
            and probe.size == 0
            and probe._connection_registry == {}
        )
    except Exception:
        return False


def _fast_paths(environ: Mapping[str, str]) -> tuple[bool, bool]:
    if environ.get(FALLBACK_ENV, "") not in ("", "0"):
        return False, False
    return aiosqlite_internals_ok(aiosqlite), pool_internals_ok(aiosqlitepool)


# Read once, at import; tests may patch them (open_worker and make_pool look
# them up on every call).
FAST_WORKER, FAST_POOL = _fast_paths(os.environ)


# ------------------------------------------------------------------ worker
class Worker(Protocol):
    """One sqlite3 connection and the one thread that runs every job on it."""

    sqlite: sqlite3.Connection

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``function(*args)`` behind the jobs already queued; its
        future gets the outcome. :class:`BrokerClosedError` once closed."""
        ...

    async def close(self) -> None:
        """Run what is queued, close the connection, stop the thread."""
        ...


async def open_worker(connector: Callable[[], sqlite3.Connection]) -> Worker:
    """A started worker whose thread made its connection with ``connector``.

    The thread is a daemon: a program that forgets ``close()`` still exits
    (an unfinished transaction never commits).
    """
    if FAST_WORKER:
        return await AiosqliteWorker.open(connector)
    return await ThreadWorker.open(connector)


class AiosqliteWorker:
    """The fast path: aiosqlite's worker, fed bare futures through ``_tx``."""

    __slots__ = ("aio", "sqlite")

    def __init__(self, aio: aiosqlite.Connection, connection: sqlite3.Connection) -> None:
        self.aio = aio
        self.sqlite = connection

    @classmethod
    async def open(cls, connector: Callable[[], sqlite3.Connection]) -> AiosqliteWorker:
        made: list[sqlite3.Connection] = []

        def connect() -> sqlite3.Connection:
            made.append(connector())
            return made[-1]

        aio = aiosqlite.Connection(connect, iter_chunk_size=64)
        worker = getattr(aio, "_thread", aio)
        assert isinstance(worker, threading.Thread)
        worker.daemon = True
        await aio
        return cls(aio, made[-1])

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        # What aiosqlite's own ``_execute`` does, minus the coroutine around it.
        aio = self.aio
        if aio._connection is None or not aio._running:
            raise BrokerClosedError("the connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        aio._tx.put_nowait((future, partial(function, *args)))
        return future

    async def close(self) -> None:
        await self.aio.close()


_Job = tuple["asyncio.Future[Any] | None", Callable[[], Any]] | None


class ThreadWorker:
    """The fallback: a thread of our own, run as aiosqlite runs its worker."""

    __slots__ = ("_jobs", "_running", "_thread", "sqlite")

    sqlite: sqlite3.Connection

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._running = False
        self._thread = threading.Thread(target=_connection_worker_thread, args=(self._jobs,), daemon=True)

    @classmethod
    async def open(cls, connector: Callable[[], sqlite3.Connection]) -> ThreadWorker:
        worker = cls()
        worker._thread.start()
        worker._running = True
        made: list[sqlite3.Connection] = []
        try:
            worker.sqlite = await worker.submit(lambda: _append(made, connector()))
        except BaseException:  # a failed connector, or our caller cancelled while it ran
            worker._running = False
            worker._jobs.put_nowait((None, partial(_close_all, made)))
            worker._jobs.put_nowait(None)  # nothing left to tell the loop: the thread just ends
            raise
        return worker

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if not self._running:
            raise BrokerClosedError("the connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait((future, partial(function, *args)))
        return future

    async def close(self) -> None:
        if not self._running:
            return
        done = self.submit(self.sqlite.close)
        self._running = False
        self._jobs.put_nowait(None)
        await done


def _append(made: list[sqlite3.Connection], connection: sqlite3.Connection) -> sqlite3.Connection:
    made.append(connection)
    return connection


def _close_all(made: list[sqlite3.Connection]) -> None:
    for connection in made:
        connection.close()


def _connection_worker_thread(jobs: queue.SimpleQueue[_Job]) -> None:
    """Run jobs in order until told to stop (``None``). Named as aiosqlite's
    worker is, so a thread listing reads the same on either path."""
    while (job := jobs.get()) is not None:
        future, function = job
        try:
            result = function()
        except BaseException as exc:
            _tell(future, _set_exception, exc)
        else:
            _tell(future, _set_result, result)


def _tell(future: asyncio.Future[Any] | None, setter: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
    if future is not None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            future.get_loop().call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # its caller was cancelled
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


# -------------------------------------------------------------------- pool
class Pooled(Protocol):
    """What aiosqlitepool asks of a pooled connection."""

    async def execute(self, *args: Any, **kwargs: Any) -> Any: ...

    async def rollback(self) -> None: ...

    async def close(self) -> None: ...


class ConnectionPool(Protocol[C]):
    """Up to ``pool_size`` connections, made by ``factory`` on demand.

    ``release`` resets (``rollback``) a connection before it is handed out
    again; ``close`` closes every connection, including those checked out.
    """

    inner: Any  # the aiosqlitepool object, for tests

    async def acquire(self) -> C: ...

    async def release(self, connection: C) -> None: ...

    async def close(self) -> None: ...

    def connections(self) -> list[C]:
        """Every connection open now, checked out or not."""
        ...

    def ready(self) -> int:
        """How many wait in the pool to be checked out."""
        ...


def make_pool(factory: Callable[[], Awaitable[C]], pool_size: int) -> ConnectionPool[C]:
    if FAST_POOL:
        return InternalPool(factory, pool_size)
    return PublicPool(factory, pool_size)


class InternalPool(Generic[C]):
    """The fast path: aiosqlitepool's ``Pool``, checkouts without a context manager."""

    def __init__(self, factory: Callable[[], Awaitable[C]], pool_size: int) -> None:
        self.inner = aiosqlitepool.pool.Pool(
            factory,
            pool_size=pool_size,
            acquisition_timeout=None,
            idle_timeout=_IDLE_TIMEOUT,
            operation_timeout=None,  # None: no wait_for task around every checkout
        )
        self._entries: dict[C, Any] = {}  # a checked-out connection: its PoolConnection

    async def acquire(self) -> C:
        entry = await self.inner.acquire()
        connection: C = entry.raw_connection
        self._entries[connection] = entry
        return connection

    async def release(self, connection: C) -> None:
        await self.inner.release(self._entries.pop(connection))

    async def close(self) -> None:
        await self.inner.close()

    def connections(self) -> list[C]:
        return [entry.raw_connection for entry in self.inner._connection_registry.values()]

    def ready(self) -> int:
        size: int = self.inner.size
        return size


class PublicPool(Generic[C]):
    """The fallback: ``SQLiteConnectionPool``, each checkout an entered ``connection()``."""

    def __init__(self, factory: Callable[[], Awaitable[C]], pool_size: int) -> None:
        self._factory = factory
        self._open: dict[C, None] = {}
        self._ready: dict[C, None] = {}
        self._checkouts: dict[C, contextlib.AbstractAsyncContextManager[Any]] = {}
        self.inner = aiosqlitepool.SQLiteConnectionPool(
            self._create,
            pool_size=pool_size,
            acquisition_timeout=_FOREVER,
            idle_timeout=_IDLE_TIMEOUT,
            operation_timeout=_FOREVER,
        )

    async def _create(self) -> _Entry[C]:
        connection = await self._factory()
        self._open[connection] = None
        return _Entry(connection, self)

    async def acquire(self) -> C:
        checkout = self.inner.connection()
        entry: _Entry[C] = await checkout.__aenter__()
        self._checkouts[entry.connection] = checkout
        self._ready.pop(entry.connection, None)
        return entry.connection

    async def release(self, connection: C) -> None:
        checkout = self._checkouts.pop(connection)
        await checkout.__aexit__(None, None, None)
        if connection in self._open and connection not in self._checkouts:
            self._ready[connection] = None

    async def close(self) -> None:
        await self.inner.close()

    def connections(self) -> list[C]:
        return list(self._open)

    def ready(self) -> int:
        return len(self._ready)

    def _retired(self, connection: C) -> None:
        self._open.pop(connection, None)
        self._ready.pop(connection, None)


class _Entry(Generic[C]):
    """What ``PublicPool`` gives aiosqlitepool: the connection, and word when it is closed."""

    __slots__ = ("connection", "pool")

    def __init__(self, connection: C, pool: PublicPool[C]) -> None:
        self.connection = connection
        self.pool = pool

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self.connection.execute(*args, **kwargs)

    async def rollback(self) -> None:
        await self.connection.rollback()

    async def close(self) -> None:
        self.pool._retired(self.connection)
        await self.connection.close()
