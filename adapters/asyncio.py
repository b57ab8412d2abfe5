"""The asyncio adapter: the core driven over ``aiosqlite`` with an ``aiosqlitepool`` pool.

Each pooled connection is an ``aiosqlite`` connection with its own worker
thread (``_aiosqlite`` holds every use of the two libraries' internals, and
their public-API fallback). A whole operation runs in that thread through the
shared synchronous driver, so it costs one thread hop, not one per statement::

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

__all__ = [
    "AsyncBroker",
    "AsyncMessageStream",
    "AsyncQueue",
    "AsyncWatch",
    "CommitOutcomeUnknown",
    "async_broker",
]

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from sansio_broker import BrokerClosedError, Config, OutcomeUnknownError
from sansio_broker.driver import BrokerCore, Operation, Session
from sansio_broker.validation import check_path, check_positive

from ._aiosqlite import PoolClosedError, Worker, make_pool, open_worker
from ._async_operations import AsyncMessageStream, AsyncOperations, AsyncQueueOperations, AsyncWatch
from ._flight import Flight
from ._group import Group
from ._pooled import AsyncWaiter, Done, PooledEngine, Supervisor, give_up, left_open, opened, run_in_thread
from ._sync import LOG, AsyncOpener, Backend, SyncDriver, backend, connect, prepare
from ._waiting import TIMED_OUT
from .blocking import DEFAULT_PATH, resolve_config

if TYPE_CHECKING:  # psycopg is imported only when a PostgreSQL target is opened
    from ._pgasync import AsyncPgDriver

T = TypeVar("T")


class CommitOutcomeUnknown(OutcomeUnknownError, asyncio.CancelledError):
    """Cancelled while COMMIT was running: the change may or may not have
    landed. A ``CancelledError``, so timeouts and task groups treat it as the
    cancellation it is."""


class _Connection:
    """A connection's worker thread, its driver and its core session.

    It also serves aiosqlitepool as the pooled connection object: the pool's
    per-checkout health check (``execute``) costs nothing, since the worker
    thread lives until ``close``, and its reset on release (``rollback``) only
    does work when an abandoned transaction must be rolled back.
    """

    def __init__(self, aio: Worker, driver: SyncDriver, session: Session) -> None:
        self.aio = aio
        self.driver = driver
        self.session = session
        self.busy: Flight | None = None  # an operation its caller abandoned
        self.closing = False

    def submit(self, operation: Operation[T], flight: Supervisor) -> asyncio.Future[T]:
        return self.aio.submit(run_in_thread, self.driver, operation, flight)

    async def execute(self, *args: Any, **kwargs: Any) -> None:
        """aiosqlitepool's health check: nothing to check, no thread hop."""

    async def rollback(self) -> None:
        """aiosqlitepool's reset before reuse: roll back only what was left open."""
        if left_open(self):
            await self.aio.submit(self.driver.run, self.session.reset())

    async def close(self) -> None:
        # Once only: aiosqlitepool closes a connection checked out when it
        # closed, and again when that connection is released (to a closed
        # pool); a second close would wait for a worker thread that is gone.
        if self.closing:
            return
        self.closing = True
        try:
            await self.aio.close()
        finally:
            self.driver.forget_vacuum_lock()

    def start(self, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        # The job hands its end straight to the loop: one loop iteration, as
        # an awaited operation takes (aiosqlite's own future is left unused).
        self.aio.submit(_run_group, asyncio.get_running_loop(), self.driver, operation, group, done)


class _LoopConnection:
    """A connection whose driver is async (psycopg's ``AsyncConnection`` on
    PostgreSQL): its operations run as tasks of this loop, no thread.

    As with a worker thread, each operation runs in a task of its own, one
    at a time in order, and its caller only awaits it: a caller cancelled
    midway leaves, and the operation stops at its next command (or its
    statement is cancelled), never in the middle of the connection's
    protocol. The same pool object as :class:`_Connection`.
    """

    def __init__(self, driver: AsyncPgDriver, session: Session) -> None:
        self.driver = driver
        self.session = session
        self.busy: Flight | None = None  # an operation its caller abandoned
        self.closing = False
        self._turn = asyncio.Lock()  # jobs in the order they came (FIFO)
        self._jobs: set[asyncio.Task[Any]] = set()  # running: kept from the garbage collector

    def _job(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(self._in_turn(work))
        self._jobs.add(task)
        task.add_done_callback(self._job_done)
        return task

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self._jobs.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that left gets its outcome from the flight, as from a thread

    async def _in_turn(self, work: Coroutine[Any, Any, T]) -> T:
        async with self._turn:
            # A cancel request sent for an earlier job must reach the server
            # first: it is ignored by an idle connection, but one still on its
            # way could cancel this job's statement.
            cancelling = self.driver.cancelling
            if isinstance(cancelling, asyncio.Future) and not cancelling.done():
                await asyncio.wait([cancelling])
            return await work

    def submit(self, operation: Operation[T], flight: Supervisor) -> asyncio.Future[T]:
        # Shielded: cancelling the caller's wait leaves the operation running.
        return asyncio.shield(self._job(run_in_loop(self.driver, operation, flight)))

    async def execute(self, *args: Any, **kwargs: Any) -> None:
        """aiosqlitepool's health check: nothing to check."""

    async def rollback(self) -> None:
        """aiosqlitepool's reset before reuse: roll back only what was left open."""
        if left_open(self):
            await self._job(self.driver.run(self.session.reset()))

    async def close(self) -> None:
        if self.closing:  # once only (see _Connection.close)
            return
        self.closing = True
        await self._job(self.driver.close())

    def start(self, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        self._job(_run_group_in_loop(self.driver, operation, group, done))


async def run_in_loop(driver: AsyncPgDriver, operation: Operation[T], flight: Supervisor) -> T:
    """The job of an operation on a :class:`_LoopConnection` (``run_in_thread``'s counterpart)."""
    try:
        flight.answer = answer = await driver.run(operation, flight.guard, flight.seal)
        return answer
    finally:
        flight.finish()


async def _run_group_in_loop(driver: AsyncPgDriver, operation: Operation[Any], group: Group[Any], done: Done) -> None:
    answers: Any = None
    error: BaseException | None = None
    try:
        answers = await run_in_loop(driver, operation, group)
    except BaseException as exc:
        error = exc
    done(answers, error)


Pooled = _Connection | _LoopConnection


class AsyncBroker(AsyncOperations):
    """A broker on one SQLite file or PostgreSQL schema for asyncio; every operation of the core.

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
        self.path = check_path(path)  # "" and ":memory:" name no file: refused here
        self.pool_size = check_positive(pool_size, "pool_size")
        self.config = resolve_config(config)
        chosen = backend(self.path, self.config)
        core = BrokerCore(self.config, dialect=chosen.dialect)
        self._engine = PooledEngine(core, _Runtime(self.path, self.config, self.pool_size, core, chosen))


class _Runtime:
    """asyncio's side of :class:`~._pooled.PooledEngine`: aiosqlitepool-pooled
    connections (SQLite's each with its worker thread, PostgreSQL's run by
    tasks of this loop), and tasks of this loop."""

    def __init__(self, path: str, config: Config, pool_size: int, core: BrokerCore, chosen: Backend) -> None:
        self.path = path
        self.config = config
        self.backend = chosen
        self.label = chosen.label  # names the database in errors (a URL without its password)
        self._core = core
        self._pool = make_pool(self._new_connection, pool_size)
        self._opened = False
        self.closed = False
        self._closing: asyncio.Task[None] | None = None
        # Clean connections between operations. They stay checked out of
        # aiosqlitepool, so taking and returning one never suspends; the pool
        # gets them back whenever a task is waiting on it (``_waiting``).
        self._idle: list[Pooled] = []
        self._waiting = 0
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------- connections
    async def _new_connection(self) -> Pooled:
        # The pool calls this under its own lock: one connection at a time.
        if self.backend.open_async is not None:
            return await self._new_loop_connection(self.backend.open_async)
        aio = await open_worker(lambda: connect(self.path, self.config))
        connection = _Connection(aio, SyncDriver(aio.sqlite, self.path), self._core.session())
        try:
            await aio.submit(prepare, connection.driver, connection.session, self.path, not self._opened)
            self._opened = True
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        return connection

    async def _new_loop_connection(self, open_async: AsyncOpener) -> _LoopConnection:
        session = self._core.session()
        driver = await open_async(self.path, self.config, session, not self._opened)
        self._opened = True
        return _LoopConnection(driver, session)

    async def acquire(self, internal: bool = False) -> Pooled:
        if self.closed and not internal:
            raise BrokerClosedError(f"the broker on {self.label} is closed")
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
            connection = await asyncio.shield(acquisition)
        except PoolClosedError:  # close() ran while this task waited: the library's error, not the pool's
            raise BrokerClosedError(f"the broker on {self.label} is closed") from None
        except BaseException:
            acquisition.add_done_callback(self._return_abandoned)
            raise
        finally:
            self._waiting -= 1
        if self.closed and not internal:  # close() began while it waited: the connection is closing
            self.release(connection)  # in the background, which close() waits for
            raise BrokerClosedError(f"the broker on {self.label} is closed")
        return connection

    def _return_abandoned(self, acquisition: asyncio.Future[Any]) -> None:
        if not acquisition.cancelled() and acquisition.exception() is None:
            self.in_background(self._pool.release(acquisition.result()))

    def release(self, connection: Pooled) -> None:
        """Give a connection back, without ever suspending.

        So no cancellation can strike while a connection (or an operation's
        committed result) is on its way back. A clean connection goes on the
        idle list, or to aiosqlitepool if a task waits there; one whose
        abandoned operation is still running, or which must be rolled back,
        goes back in the background once ready.
        """
        busy = connection.busy
        if self.closed:
            connection.busy = None
            self.in_background(self._pool.release(connection))  # the pool retires it
        elif (busy is not None and not busy.finished) or left_open(connection):
            self.in_background(self._release_when_ready(connection))
        elif self._waiting:
            connection.busy = None
            self.in_background(self._pool.release(connection))
        else:
            connection.busy = None
            self._idle.append(connection)

    async def _release_when_ready(self, connection: Pooled) -> None:
        await _settled(connection)
        await self._pool.release(connection)  # rolls back what was left open

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        # Retrieved here, so a failure is logged once, never as an
        # exception "never retrieved" escaping into the event loop.
        self._background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            LOG.error("background work of the broker on %s failed: %r", self.label, error, exc_info=error)

    async def call(self, connection: Pooled, operation: Operation[T], flight: Flight) -> T:
        future = connection.submit(operation, flight)
        try:
            return await future
        except asyncio.CancelledError:
            give_up(connection, flight)
            raise

    async def close(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Close every connection and stop every worker thread.

        Shielded: a cancelled close still finishes, and any later call waits
        for that same close.
        """
        self.closed = True
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(drain))
        await asyncio.shield(self._closing)

    async def _close(self, drain: Callable[[], Awaitable[None]]) -> None:
        # Give-backs promised by cancelled claims, groups still running and
        # background work all finish first, on connections still open.
        await drain()
        self._idle.clear()  # still registered with aiosqlitepool, which closes them
        await self._pool.close()
        # Connections handed back while the pool closed (callers that were
        # queued for one) are retired in the background: done before we return.
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def drain(self, pending: Callable[[], int]) -> None:
        while pending() or self._background:
            if self._background:
                await asyncio.gather(*list(self._background), return_exceptions=True)
            else:
                await asyncio.sleep(0.001)  # a flight in a worker thread reports soon

    async def flight_ended(self, connection: Pooled) -> None:
        await _settled(connection)

    async def shield(self, work: Awaitable[T]) -> T:
        return await asyncio.shield(work)

    async def shield_counted(self, work: Coroutine[Any, Any, T]) -> T:
        # A task of its own, counted as background work: a second
        # cancellation releases the caller, never the work.
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return await asyncio.shield(task)

    def current_task(self) -> object:
        return asyncio.current_task()

    def portal(self) -> Callable[[Callable[[], object]], None]:
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def call_soon(callback: Callable[[], object]) -> None:
            if threading.get_ident() == loop_thread:  # this loop's own commit: no wake-up needed
                loop.call_soon(callback)
                return
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(callback)

        return call_soon

    async def wait(self, waiter: AsyncWaiter, timeout: float | None) -> object:
        if timeout is None:
            return await waiter.wait()
        try:
            async with asyncio.timeout(timeout):
                return await waiter.wait()
        except TimeoutError:
            return TIMED_OUT

    def waiter(self) -> _Waiter:
        return _Waiter()

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    def start(self, connection: Pooled, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        # The job hands its end straight to the loop: one loop iteration, as
        # an awaited operation takes (aiosqlite's own future is left unused).
        connection.start(operation, group, done)

    def outcome_unknown(self, what: str, message_ids: tuple[int, ...] = ()) -> BaseException:
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


async def _settled(connection: Pooled) -> None:
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


def async_broker(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    pool_size: int = 10,
    config: Config | Mapping[str, Any] | None = None,
) -> AbstractAsyncContextManager[AsyncBroker]:
    """A broker on ``path`` with at most ``pool_size`` connections, to use as
    ``async with ...(path) as broker:``. Entering creates or checks the file
    (a bad one fails there); leaving the block, by an exception or a
    cancellation too, closes every connection and worker thread. ``config=None`` reads ``BROKER_*``
    from the environment."""
    return opened(partial(AsyncBroker, path, pool_size=pool_size, config=config))


class AsyncQueue(AsyncQueueOperations):
    """One queue of an :class:`AsyncBroker`, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    _broker_type = AsyncBroker
