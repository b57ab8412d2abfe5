"""The asyncio adapter: the core driven over ``aiosqlite`` with an ``aiosqlitepool`` pool.

Each pooled connection is an ``aiosqlite`` connection with its own worker
thread. A whole operation runs in that thread through the shared synchronous
driver, so it costs one thread hop, not one per statement::

    async with async_broker("app.db", pool_size=10) as broker:
        queue = AsyncQueue("tasks", broker)
        await queue.write("hello")
        print(await queue.read())

Cancellation: a task cancelled while its operation runs gets
``CancelledError`` at once. The worker thread stops the operation before its
next statement and rolls it back, so nothing is committed or claimed for a
cancelled caller, and the connection goes back to the pool only once it is
clean. If COMMIT had already started, the caller gets
:class:`CommitOutcomeUnknown` (a ``CancelledError``): the change may or may
not have landed, and nothing pretends to know which. Cancelling inside
``broker.transaction()`` waits for the rollback before the error surfaces.

On Python 3.11, ``asyncio.wait_for`` runs its awaitable in a new task, which
is not part of the caller's transaction; use ``asyncio.timeout`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import aiosqlite
from aiosqlitepool.exceptions import PoolClosedError
from aiosqlitepool.pool import Pool

from sansio_broker import BrokerClosedError, BrokerCore, Config, Session
from sansio_broker.commands import Operation
from sansio_broker.errors import OutcomeUnknownError
from sansio_broker.validation import check_broker, check_path, check_positive

from ._async_api import AsyncOperations, Done, QueueOperations, Supervisor, left_open, run_in_thread
from ._flight import Flight
from ._group import Group
from ._sync import LOG, SyncDriver, connect, prepare
from .blocking import DEFAULT_PATH, resolve_config

T = TypeVar("T")


class CommitOutcomeUnknown(OutcomeUnknownError, asyncio.CancelledError):
    """Cancelled while COMMIT was running: the change may or may not have
    landed. A ``CancelledError``, so timeouts and task groups treat it as the
    cancellation it is."""


class _Connection:
    """An aiosqlite connection, its driver and its core session.

    It also serves aiosqlitepool as the pooled connection object: the pool's
    per-checkout health check (``execute``) costs nothing, since the worker
    thread lives until ``close``, and its reset on release (``rollback``) only
    does work when an abandoned transaction must be rolled back.
    """

    def __init__(self, aio: aiosqlite.Connection, driver: SyncDriver, session: Session) -> None:
        self.aio = aio
        self.driver = driver
        self.session = session
        self.busy: Flight | None = None  # an operation its caller abandoned
        self.pool_entry: Any = None  # aiosqlitepool's wrapper, needed to release

    def submit(self, operation: Operation[T], flight: Supervisor) -> asyncio.Future[T]:
        return _in_thread(self.aio, run_in_thread, self.driver, operation, flight)

    async def execute(self, *args: Any, **kwargs: Any) -> None:
        """aiosqlitepool's health check: nothing to check, no thread hop."""

    async def rollback(self) -> None:
        """aiosqlitepool's reset before reuse: roll back only what was left open."""
        if left_open(self):
            await _in_thread(self.aio, self.driver.run, self.session.reset())

    async def close(self) -> None:
        try:
            await self.aio.close()
        finally:
            self.driver.forget_vacuum_lock()


class AsyncBroker(AsyncOperations["_Connection"]):
    """A broker on one SQLite file for asyncio; every operation of the core.

    Use :func:`async_broker` to open one. Operations of one task inside
    :meth:`transaction` share that transaction's connection; all others
    borrow a pooled connection for one operation.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        pool_size: int = 10,
        config: Config | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.path = check_path(path)  # "" and ":memory:" name no file: refused here
        self.pool_size = check_positive(pool_size, "pool_size")
        self.config = resolve_config(config)
        self._core = BrokerCore(self.config)
        self._pool = Pool(
            self._new_connection,
            pool_size=self.pool_size,
            acquisition_timeout=None,
            idle_timeout=86_400,
            operation_timeout=None,  # None: no wait_for task around every checkout
        )
        self._opened = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        # Clean connections between operations. They stay checked out of
        # aiosqlitepool, so taking and returning one never suspends; the pool
        # gets them back whenever a task is waiting on it (``_waiting``).
        self._idle: list[_Connection] = []
        self._waiting = 0
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------- connections
    async def _new_connection(self) -> _Connection:
        # The pool calls this under its own lock: one connection at a time.
        aio = aiosqlite.Connection(lambda: connect(self.path, self.config), iter_chunk_size=64)
        # A daemon worker: a program that forgets close() still exits (an
        # unfinished transaction never commits). Before 0.22 the connection
        # object is itself the thread.
        worker = getattr(aio, "_thread", aio)
        assert isinstance(worker, threading.Thread)
        worker.daemon = True
        await aio
        connection = _Connection(aio, SyncDriver(aio._conn, self.path), self._core.session())
        try:
            await _in_thread(aio, prepare, connection.driver, connection.session, self.path, not self._opened)
            self._opened = True
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        return connection

    async def _acquire(self, internal: bool = False) -> _Connection:
        if self._closed and not internal:
            raise BrokerClosedError(f"the broker on {self.path} is closed")
        if self._idle:
            return self._idle.pop()
        # Wait on aiosqlitepool, which creates connections up to pool_size.
        # aiosqlitepool 1.0.0 loses a connection when an acquisition that
        # waits is cancelled after it got one: wait in a task of our own that
        # is never cancelled; if our caller gives up, whatever that task gets
        # is given back.
        self._waiting += 1
        acquisition = asyncio.ensure_future(self._pool.acquire())
        try:
            pooled = await asyncio.shield(acquisition)
        except PoolClosedError:  # close() ran while this task waited: the library's error, not the pool's
            raise BrokerClosedError(f"the broker on {self.path} is closed") from None
        except BaseException:
            acquisition.add_done_callback(self._return_abandoned)
            raise
        finally:
            self._waiting -= 1
        connection: _Connection = pooled.raw_connection
        connection.pool_entry = pooled
        return connection

    def _return_abandoned(self, acquisition: asyncio.Future[Any]) -> None:
        if not acquisition.cancelled() and acquisition.exception() is None:
            self._in_background(self._pool.release(acquisition.result()))

    def _release(self, connection: _Connection) -> None:
        """Give a connection back, without ever suspending.

        So no cancellation can strike while a connection (or an operation's
        committed result) is on its way back. A clean connection goes on the
        idle list, or to aiosqlitepool if a task waits there; one whose
        abandoned operation is still running, or which must be rolled back,
        goes back in the background once ready.
        """
        busy = connection.busy
        if self._closed:
            connection.busy = None
            self._in_background(self._pool.release(connection.pool_entry))  # the pool retires it
        elif (busy is not None and not busy.finished) or left_open(connection):
            self._in_background(self._release_when_ready(connection))
        elif self._waiting:
            connection.busy = None
            self._in_background(self._pool.release(connection.pool_entry))
        else:
            connection.busy = None
            self._idle.append(connection)

    async def _release_when_ready(self, connection: _Connection) -> None:
        await _settled(connection)
        await self._pool.release(connection.pool_entry)  # rolls back what was left open

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        # Retrieved here, so a failure is logged once, never as an
        # exception "never retrieved" escaping into the event loop.
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            LOG.error("background work of the broker on %s failed: %r", self.path, error, exc_info=error)

    async def _run_on(self, connection: _Connection, operation: Operation[T], writes: bool = False) -> T:
        """Run one operation in the connection's thread: one hop."""
        flight = Flight()
        future = connection.submit(operation, flight)
        try:
            answer = await future
        except asyncio.CancelledError:
            # Our caller was cancelled: the worker stops the operation before
            # its next command and rolls it back; the connection is reused
            # only once the worker is done with it.
            connection.busy = flight
            if flight.cancel(connection.driver.connection.interrupt):
                error = await self._cancelled_in_commit(connection, flight, writes)
                if error is not None:
                    raise error from None
            raise
        self._housekeep()
        return answer

    async def close(self) -> None:
        """Close every connection and stop every worker thread.

        Shielded: a cancelled close still finishes, and any later call waits
        for that same close.
        """
        self._closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        # Give-backs promised by cancelled claims, groups still running and
        # background work all finish first, on connections still open.
        await self.wait_background()
        self._idle.clear()  # still registered with aiosqlitepool, which closes them
        await self._pool.close()

    async def wait_background(self) -> None:
        while self._obligations or self._background:
            if self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
            else:
                await asyncio.sleep(0.001)  # a flight in a worker thread reports soon

    async def _flight_ended(self, connection: _Connection) -> None:
        await _settled(connection)

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        # A task of its own, counted as background work: a second
        # cancellation releases the caller, never the work.
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return await asyncio.shield(task)

    async def _settle(self, connection: _Connection, operation: Operation[None]) -> None:
        """Run clean-up after any abandoned operation, shielded from cancellation."""
        await asyncio.shield(self._settle_now(connection, operation))

    async def _settle_now(self, connection: _Connection, operation: Operation[None]) -> None:
        await _settled(connection)
        await self._run_on(connection, operation)

    def _current_task(self) -> object:
        return asyncio.current_task()

    def _waiter(self) -> _Waiter:
        return _Waiter()

    async def _let_others_run(self) -> None:
        await asyncio.sleep(0)

    def _start(self, connection: _Connection, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        # The job hands its end straight to the loop: one loop iteration, as
        # an awaited operation takes (aiosqlite's own future is left unused).
        _in_thread(connection.aio, _run_group, asyncio.get_running_loop(), connection.driver, operation, group, done)

    def _outcome_unknown(self, what: str, message_ids: tuple[int, ...] = ()) -> BaseException:
        return CommitOutcomeUnknown(f"cancelled {what}", message_ids)


class _Waiter:
    """A group member's wait: a future the group's end completes."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def wake(self, value: object) -> bool:
        if self._future.done():  # its task was cancelled
            return False
        self._future.set_result(value)
        return True

    async def wait(self) -> object:
        return await self._future


def _run_group(
    loop: asyncio.AbstractEventLoop, driver: SyncDriver, operation: Operation[Any], group: Group[Any], done: Done
) -> None:
    """In the worker thread: run a group operation, then ``done`` in the loop."""
    answers: Any = None
    error: BaseException | None = None
    try:
        answers = run_in_thread(driver, operation, group)
    except BaseException as exc:
        error = exc
    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
        loop.call_soon_threadsafe(done, answers, error)


def _in_thread(aio: aiosqlite.Connection, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Queue ``function(*args)`` on the connection's worker thread.

    This is what aiosqlite's own ``_execute`` does, minus the coroutine
    around it: awaiting the bare future costs two loop iterations per
    operation instead of five. It relies on aiosqlite's worker queue
    (``_tx``: ``(future, callable)`` pairs, unchanged since 0.17;
    ``pyproject.toml`` bounds the version and the tests exercise it).
    """
    if aio._connection is None or not aio._running:
        raise BrokerClosedError("the connection is closed")
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    aio._tx.put_nowait((future, partial(function, *args)))
    return future


async def _settled(connection: _Connection) -> None:
    """Wait until an operation abandoned on ``connection`` has ended."""
    busy = connection.busy
    if busy is not None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if busy.when_finished(lambda: loop.call_soon_threadsafe(_set_done, done)):
            await done
        connection.busy = None


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@asynccontextmanager
async def async_broker(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    pool_size: int = 10,
    config: Config | Mapping[str, Any] | None = None,
) -> AsyncIterator[AsyncBroker]:
    """Open a broker on ``path`` with at most ``pool_size`` connections.

    ``config=None`` reads ``BROKER_*`` from the environment. Leaving the block,
    by an exception too, closes every connection and worker thread.
    """
    broker = AsyncBroker(path, pool_size=pool_size, config=config)
    try:
        await broker.open()
        yield broker
    finally:
        await broker.close()


class AsyncQueue(QueueOperations):
    """One queue of an :class:`AsyncBroker`, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    def __init__(self, name: str, broker: AsyncBroker) -> None:
        super().__init__(name, check_broker(broker, AsyncBroker, "AsyncQueue"))
