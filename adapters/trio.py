"""The trio adapter: the core driven under trio, one thread hop per operation.

Each pooled connection is a ``sqlite3`` connection with its own worker
thread (never trio's global thread limiter or cache). A whole operation runs
there through the blocking adapter's synchronous driver, one thread hop::

    async with trio_broker("app.db", pool_size=4) as broker:
        queue = TrioQueue("tasks", broker)
        await queue.write("x")
        msg = await queue.read()

Cancellation (``move_on_after``, a cancelled nursery) at any point: the
caller is released at once; the worker stops the operation before its next
statement, interrupts a long statement where that is safe, and rolls back, so
nothing is committed or claimed for it, and the connection is reused only
once clean. If COMMIT had already begun, the caller gets
:class:`CommitOutcomeUnknown` instead of ``Cancelled``: the change may or may
not have landed. (``trio.Cancelled`` cannot be subclassed, so this is a plain
exception, which a cancel scope does not swallow.)
"""

from __future__ import annotations

__all__ = [
    "AsyncMessageStream",
    "AsyncWatch",
    "CommitOutcomeUnknown",
    "TrioBroker",
    "TrioQueue",
    "trio_broker",
]

import contextlib
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, TypeVar

import outcome
import trio

from sansio_broker import BrokerClosedError, Config, OutcomeUnknownError
from sansio_broker.driver import BrokerCore, Operation, Session
from sansio_broker.validation import check_path, check_positive

from ._async_operations import AsyncMessageStream, AsyncOperations, AsyncQueueOperations, AsyncWatch
from ._driver import Driver
from ._flight import Flight
from ._group import Group
from ._pooled import AsyncWaiter, Done, PooledEngine, give_up, left_open, opened, run_in_thread
from ._sync import LOG, Backend, backend
from ._waiting import TIMED_OUT
from .blocking import DEFAULT_PATH, resolve_config

T = TypeVar("T")


class CommitOutcomeUnknown(OutcomeUnknownError):
    """Cancelled while COMMIT was running: the change may or may not have landed."""


class _Connection:
    """A sqlite3 connection, its driver and core session, and the one worker
    thread that uses it: jobs run there in order, one at a time."""

    def __init__(self, worker: _Worker, driver: Driver, session: Session) -> None:
        self.worker = worker
        self.driver = driver
        self.session = session
        self.busy: Flight | None = None  # an operation its caller abandoned


class _Job:
    """One call for a worker thread, and the trio task waiting for its result."""

    __slots__ = ("args", "function", "on_cancel", "task", "token", "waiting")

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        on_cancel: Callable[[], object] | None,
    ) -> None:
        self.token = token
        self.function = function
        self.args = args
        self.on_cancel = on_cancel
        self.task = trio.lowlevel.current_task()
        self.waiting = True

    def __call__(self) -> None:  # in the worker thread
        self.token.run_sync_soon(self.deliver, outcome.capture(self.function, *self.args))

    def deliver(self, result: outcome.Outcome[Any]) -> None:  # in the trio thread
        if self.waiting:
            self.waiting = False
            trio.lowlevel.reschedule(self.task, result)

    def abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:  # in the trio thread
        if self.on_cancel is None:
            return trio.lowlevel.Abort.FAILED
        self.waiting = False  # the result, arriving later, is dropped
        self.on_cancel()
        return trio.lowlevel.Abort.SUCCEEDED


class _Worker:
    """A daemon thread running jobs in order. A submitted job always runs,
    even if its caller was cancelled meanwhile, so every flight finishes."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._stopped = False
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="sansio-broker-trio-worker", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def stop(self) -> None:
        self._stopped = True
        self._jobs.put(None)

    def start(self, function: Callable[..., Any], args: tuple[Any, ...], done: Done) -> None:
        """Run ``function(*args)`` here; ``done(answer, error)`` then runs in the trio thread."""
        if self._stopped:
            raise BrokerClosedError("the broker was closed; this connection is gone")
        token = self._token

        def job() -> None:
            result = outcome.capture(function, *args)
            token.run_sync_soon(_report, done, result)

        self._jobs.put(job)

    @trio.lowlevel.enable_ki_protection
    async def call(self, function: Callable[..., T], *args: Any, on_cancel: Callable[[], object] | None = None) -> T:
        """Run ``function(*args)`` here and wait for it: one thread hop.

        Without ``on_cancel`` the wait cannot be cancelled. With it, a
        cancelled caller is released at once after ``on_cancel`` ran.
        Protected from KeyboardInterrupt between queueing the job and
        waiting for it, where an unwound task would later be woken by it
        (as ``trio.to_thread.run_sync`` is).
        """
        if self._stopped:  # a stopped thread would never run it
            raise BrokerClosedError("the broker was closed; this connection is gone")
        job = _Job(self._token, function, args, on_cancel)
        self._jobs.put(job)
        result: T = await trio.lowlevel.wait_task_rescheduled(job.abort)
        return result


class TrioBroker(AsyncOperations):
    """A broker on one SQLite file or PostgreSQL schema for trio; every operation of the core.

    Open it with :func:`trio_broker` (inside ``trio.run``). Operations of one
    task inside :meth:`transaction` share that transaction's connection; all
    others borrow a pooled connection for one operation.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        pool_size: int = 4,
        config: Config | Mapping[str, Any] | None = None,
    ) -> None:
        self.path = check_path(path)  # "" and ":memory:" name no file: refused here
        self.pool_size = check_positive(pool_size, "pool_size")
        self.config = resolve_config(config)
        chosen = backend(self.path, self.config)
        core = BrokerCore(self.config, dialect=chosen.dialect)
        self._runtime = _Runtime(self.path, self.config, self.pool_size, core, chosen)
        self._engine = PooledEngine(core, self._runtime)

    @property
    def last_background_error(self) -> Exception | None:
        """The last failure of background clean-up (also logged), for inspection."""
        return self._runtime.last_background_error


class _Runtime:
    """trio's side of :class:`~._pooled.PooledEngine`: connections with a
    worker thread each, pooled here, and trio system tasks for clean-up."""

    def __init__(self, path: str, config: Config, pool_size: int, core: BrokerCore, chosen: Backend) -> None:
        self.path = path
        self.config = config
        self.backend = chosen
        self.label = chosen.label  # names the database in errors (a URL without its password)
        self.pool_size = pool_size
        self._core = core
        self._open_driver = chosen.open
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()
        self._connections: list[_Connection] = []
        self._idle: list[_Connection] = []
        self._opening = 0  # connections being created, counted against pool_size
        self._returned = trio.lowlevel.ParkingLot()
        self._open_lock = trio.Lock()  # one connection opened at a time
        self._opened = False
        self.closed = False  # refusing callers; the connections stay open until _shut
        self._shut = False
        self._cleaning = 0  # background clean-ups running
        self._cleaned = trio.lowlevel.ParkingLot()
        self.last_background_error: Exception | None = None

    # ----------------------------------------------------------- connections
    async def acquire(self, internal: bool = False) -> _Connection:
        try:
            while True:
                if self._shut or (self.closed and not internal):
                    raise BrokerClosedError(f"the broker on {self.label} is closed")
                if self._idle:
                    return self._idle.pop()  # no checkpoint: a wake-up is never dropped
                if len(self._connections) + self._opening < self.pool_size:
                    return await self._new_connection()
                await self._returned.park()
        except BaseException:
            self._wake_one()  # pass on a wake-up this task can no longer use
            raise

    def _wake_one(self) -> None:
        if len(self._returned) and (self._idle or len(self._connections) + self._opening < self.pool_size):
            self._returned.unpark()

    async def _new_connection(self) -> _Connection:
        self._opening += 1
        try:
            async with self._open_lock:
                worker = _Worker(self._token)
                try:
                    # Not cancellable: the connection it makes is never lost.
                    connection = await worker.call(self._connect, worker)
                except BaseException:
                    worker.stop()
                    raise
        except BaseException:
            self._opening -= 1
            self._wake_one()  # the room it held is free again
            raise
        self._opening -= 1
        if self._shut:  # close() ran while it opened: nobody will close it but us
            with trio.CancelScope(shield=True):
                await worker.call(connection.driver.close)
            worker.stop()
            raise BrokerClosedError(f"the broker on {self.label} is closed")
        self._connections.append(connection)
        return connection

    def _connect(self, worker: _Worker) -> _Connection:
        """In the new connection's worker thread: open, set up, admit the file once."""
        session = self._core.session()
        connection = _Connection(worker, self._open_driver(self.path, self.config, session, not self._opened), session)
        self._opened = True
        return connection

    def release(self, connection: _Connection) -> None:
        """Give a connection back without suspending; clean it first if needed."""
        if self._shut:
            return  # close() closed it; its transaction ended with it
        busy = connection.busy
        if (busy is not None and not busy.finished) or left_open(connection):
            self.in_background(self._release_when_ready(connection))
            return
        connection.busy = None
        self._idle.append(connection)
        if len(self._returned):
            self._returned.unpark()

    async def _release_when_ready(self, connection: _Connection) -> None:
        if self._shut:
            return  # close() closes it once its thread is done
        try:
            with trio.CancelScope(shield=True):
                await self.flight_ended(connection)
                await connection.worker.call(connection.driver.run, connection.session.reset())
        except Exception:
            # It cannot be made clean: retire it rather than hand it out.
            self._connections.remove(connection)
            with trio.CancelScope(shield=True):
                await connection.worker.call(connection.driver.close)
            connection.worker.stop()
            self._returned.unpark()
            return
        self.release(connection)

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        # A system task, scheduled through the trio token: safe from other
        # threads and from finalizers (a stream dropped after ``break``), and
        # no nursery of ours wraps the user's exceptions.
        # Counted at once when asked from trio's thread, so close() waits
        # for it even before it starts.
        counted = threading.get_ident() == self._trio_thread
        if counted:
            self._cleaning += 1

        def start() -> None:
            if not counted:
                self._cleaning += 1
            try:
                trio.lowlevel.spawn_system_task(self._clean_up, work)
            except RuntimeError:  # the run is ending (its system nursery closed)
                self._cleaning -= 1
                work.close()
                LOG.warning("background work of the broker on %s dropped: the trio run ended first", self.label)

        try:
            self._token.run_sync_soon(start)
        except trio.RunFinishedError:
            if counted:
                self._cleaning -= 1
            work.close()

    async def _clean_up(self, work: Coroutine[Any, Any, Any]) -> None:
        # A failed clean-up must not crash the user's nursery; it is kept
        # for inspection, and its connection was retired.
        try:
            await work
        except Exception as exc:
            self.last_background_error = exc
            LOG.error("background work of the broker on %s failed: %r", self.label, exc, exc_info=exc)
        finally:
            self._cleaning -= 1
            if not self._cleaning:
                self._cleaned.unpark_all()

    async def call(self, connection: _Connection, operation: Operation[T], flight: Flight) -> T:
        result: T = await connection.worker.call(
            run_in_thread, connection.driver, operation, flight, on_cancel=lambda: give_up(connection, flight)
        )
        return result

    async def shield(self, work: Awaitable[T]) -> T:
        with trio.CancelScope(shield=True):
            result = await work
        return result

    async def flight_ended(self, connection: _Connection) -> None:
        busy = connection.busy
        if busy is not None:
            done = trio.Event()
            if busy.when_finished(lambda: self._token.run_sync_soon(done.set)):
                await done.wait()
            connection.busy = None

    async def shield_counted(self, work: Coroutine[Any, Any, T]) -> T:
        with trio.CancelScope(shield=True):
            result = await work
        return result

    def current_task(self) -> object:
        return trio.lowlevel.current_task()

    def portal(self) -> Callable[[Callable[[], object]], None]:
        token = self._token

        def run_soon(callback: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the run ended: nobody waits any more
                token.run_sync_soon(callback)

        return run_soon

    async def wait(self, waiter: AsyncWaiter, timeout: float | None) -> object:
        if timeout is None:
            return await waiter.wait()
        with trio.move_on_after(timeout):
            return await waiter.wait()
        return TIMED_OUT

    def waiter(self) -> _Waiter:
        return _Waiter()

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    def start(self, connection: _Connection, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        connection.worker.start(run_in_thread, (connection.driver, operation, group), done)

    def outcome_unknown(self, what: str, message_ids: tuple[int, ...] = ()) -> BaseException:
        return CommitOutcomeUnknown(f"cancelled {what}", message_ids)

    async def drain(self, pending: Callable[[], int]) -> None:
        while self._cleaning or pending():
            if self._cleaning:
                await self._cleaned.park()
            else:
                await trio.sleep(0.001)  # a flight in a worker thread reports soon

    async def close(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Close every connection once its worker thread is done with it.

        Shielded, so a cancelled close still finishes.
        """
        with trio.CancelScope(shield=True):
            if self.closed:
                return
            self.closed = True
            self._returned.unpark_all()
            await trio.lowlevel.checkpoint()  # let clean-ups already scheduled start
            # Give-backs promised by cancelled claims, groups still running and
            # background work all finish first, on connections still open.
            await drain()
            self._shut = True
            for connection in self._connections:
                # Queued behind any abandoned operation, so it runs after it.
                await connection.worker.call(connection.driver.close)
                connection.worker.stop()
            self._connections.clear()
            self._idle.clear()


class _Waiter:
    """A group member's wait: its task sleeps until the group's end reschedules it."""

    __slots__ = ("_left", "_task", "_value", "_woken")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._woken = False
        self._left = False
        self._value: object = None

    def wake(self, value: object) -> bool:
        if self._left or self._woken:
            return False
        self._woken, self._value = True, value
        if self._task is not None:
            trio.lowlevel.reschedule(self._task, outcome.Value(value))
        return True

    async def wait(self) -> object:
        if self._woken:  # answered before it slept: no checkpoint may lose it
            await trio.lowlevel.cancel_shielded_checkpoint()
            return self._value
        self._task = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self._left = True
        return trio.lowlevel.Abort.SUCCEEDED


def _report(done: Done, result: outcome.Outcome[Any]) -> None:
    if isinstance(result, outcome.Value):
        done(result.value, None)
    elif isinstance(result, outcome.Error):
        done(None, result.error)


def trio_broker(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    pool_size: int = 4,
    config: Config | Mapping[str, Any] | None = None,
) -> AbstractAsyncContextManager[TrioBroker]:
    """A broker on ``path`` with at most ``pool_size`` connections, to use as
    ``async with ...(path) as broker:``. Entering creates or checks the file
    (a bad one fails there); leaving the block, by an exception or a
    cancellation too, closes every connection. ``config=None`` reads ``BROKER_*``
    from the environment."""
    return opened(partial(TrioBroker, path, pool_size=pool_size, config=config))


class TrioQueue(AsyncQueueOperations):
    """One queue of a :class:`TrioBroker`, with the same methods as ``AsyncQueue``.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    _broker_type = TrioBroker
