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
not have landed, and nothing pretends to know which.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Literal, TypeVar, overload

import aiosqlite
from aiosqlitepool.pool import Pool

from sansio_broker import BrokerClosedError, BrokerCore, Config, Message, QueueStats, Session
from sansio_broker.commands import Command, Commit, Operation, Rollback, UnlockVacuumFile
from sansio_broker.errors import OperationCancelled, OutcomeUnknownError
from sansio_broker.streams import Stream, open_stream
from sansio_broker.validation import check_positive, check_queue_name

from ._sync import SyncDriver, connect
from .blocking import DEFAULT_PATH, resolve_config

T = TypeVar("T")


class CommitOutcomeUnknown(OutcomeUnknownError, asyncio.CancelledError):
    """Cancelled while COMMIT was running: the change may or may not have
    landed. A ``CancelledError``, so timeouts and task groups treat it as the
    cancellation it is."""


class _Flight:
    """One operation in a worker thread, and whether its caller gave up on it.

    The loop side may cancel it; the worker thread checks before every
    command (``guard``) and reports when it is done (``finish``), so a
    cancelled caller never waits, yet its connection is reused only after.
    """

    __slots__ = ("_lock", "_waiter", "cancelled", "committing", "finished")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self.committing = False
        self.finished = False
        self._waiter: asyncio.Future[None] | None = None

    def cancel(self) -> bool:
        """Stop the operation at its next command; True if COMMIT already began."""
        with self._lock:
            self.cancelled = True
            return self.committing

    def guard(self, command: Command) -> BaseException | None:
        """Runs in the worker thread before each command.

        Only COMMIT needs the lock: it decides, against :meth:`cancel`,
        whether the caller is told "outcome unknown". Elsewhere a cancel
        seen one command late costs nothing but that command.
        """
        kind = type(command)
        if kind is Commit:
            with self._lock:
                if self.cancelled:
                    return _cancelled()
                self.committing = True
            return None
        if self.cancelled and kind is not Rollback and kind is not UnlockVacuumFile:
            return _cancelled()  # clean-up always runs
        return None

    def finish(self) -> None:
        """Runs in the worker thread when the operation has ended."""
        with self._lock:
            self.finished = True
            waiter = self._waiter
        if waiter is not None:
            waiter.get_loop().call_soon_threadsafe(_set_done, waiter)

    def wait(self) -> asyncio.Future[None]:
        """A future done once the worker thread has finished the operation."""
        with self._lock:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
                if self.finished:
                    self._waiter.set_result(None)
            return self._waiter


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
        self.busy: _Flight | None = None  # an operation its caller abandoned
        self.pool_entry: Any = None  # aiosqlitepool's wrapper, needed to release

    def submit(self, operation: Operation[T], flight: _Flight) -> asyncio.Future[T]:
        return _in_thread(self.aio, _run_in_thread, self.driver, operation, flight)

    async def execute(self, *args: Any, **kwargs: Any) -> None:
        """aiosqlitepool's health check: nothing to check, no thread hop."""

    def needs_reset(self) -> bool:
        """Whether something was left open (only while no operation runs)."""
        session = self.session
        return (
            session.in_transaction or session.stream_holding_lock is not None or self.driver.connection.in_transaction
        )

    async def rollback(self) -> None:
        """aiosqlitepool's reset before reuse: roll back only what was left open."""
        if self.needs_reset():
            await _in_thread(self.aio, self.driver.run, self.session.reset())

    async def close(self) -> None:
        try:
            await self.aio.close()
        finally:
            self.driver.forget_vacuum_lock()


class AsyncBroker:
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
        self.path = os.fspath(path)
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
        # Connections held by a task for a transaction or an open stream batch.
        self._held: dict[asyncio.Task[Any], _Connection] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------- connections
    async def open(self) -> AsyncBroker:
        """Create or check the database now, so a bad file fails here."""
        await self._release(await self._acquire())
        return self

    async def _new_connection(self) -> _Connection:
        # The pool calls this under its own lock: one connection at a time.
        aio = aiosqlite.Connection(lambda: connect(self.path, self.config), iter_chunk_size=64)
        await aio
        connection = _Connection(aio, SyncDriver(aio._conn, self.path), self._core.session())
        try:
            await _in_thread(aio, connection.driver.run, connection.session.setup_connection(self.path))
            if not self._opened:
                await _in_thread(aio, connection.driver.run, connection.session.open_database(self.path))
                self._opened = True
        except BaseException:
            await asyncio.shield(connection.close())
            raise
        return connection

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise BrokerClosedError(f"the broker on {self.path} is closed")
        if self._pool.size > 0:
            # An idle connection is waiting: acquisition completes without
            # suspending, so no cancellation can interrupt it half-way.
            pooled = await self._pool.acquire()
        else:
            # aiosqlitepool 1.0.0 loses a connection when an acquisition that
            # waits is cancelled after it got one. Wait in a task of our own
            # that is never cancelled; if our caller gives up, whatever that
            # task gets is given back.
            acquisition = asyncio.ensure_future(self._pool.acquire())
            try:
                pooled = await asyncio.shield(acquisition)
            except BaseException:
                acquisition.add_done_callback(self._return_abandoned)
                raise
        connection: _Connection = pooled.raw_connection
        connection.pool_entry = pooled
        return connection

    def _return_abandoned(self, acquisition: asyncio.Future[Any]) -> None:
        if not acquisition.cancelled() and acquisition.exception() is None:
            self._in_background(self._pool.release(acquisition.result()))

    async def _release(self, connection: _Connection) -> None:
        """Give a connection back to the pool.

        A clean connection goes back at once (aiosqlitepool does not suspend
        for it). One whose abandoned operation is still running in its thread,
        or which must be rolled back, goes back in the background when ready.
        """
        busy = connection.busy
        if (busy is not None and not busy.finished) or connection.needs_reset():
            self._in_background(self._release_when_ready(connection))
            return
        connection.busy = None
        await self._pool.release(connection.pool_entry)

    async def _release_when_ready(self, connection: _Connection) -> None:
        await _settled(connection)
        await self._pool.release(connection.pool_entry)  # rolls back what was left open

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_on(self, connection: _Connection, operation: Operation[T]) -> T:
        """Run one operation in the connection's thread: one hop."""
        flight = _Flight()
        future = connection.submit(operation, flight)
        try:
            return await future
        except asyncio.CancelledError:
            # Our caller was cancelled: the worker stops the operation before
            # its next command and rolls it back; the connection is reused
            # only once the worker is done with it.
            connection.busy = flight
            if flight.cancel():
                raise CommitOutcomeUnknown(
                    "cancelled while COMMIT was running: the operation may or may not have taken effect"
                ) from None
            raise

    async def _run(self, make: Callable[[Session], Operation[T]]) -> T:
        """Run ``make(session)`` on this task's held connection or a pooled one."""
        held = self._held.get(asyncio.current_task())  # type: ignore[arg-type]
        if held is not None:
            return await self._run_on(held, make(held.session))
        connection = await self._acquire()
        try:
            return await self._run_on(connection, make(connection.session))
        finally:
            await self._release(connection)

    async def close(self) -> None:
        """Close every connection and stop every worker thread."""
        if self._closed:
            return
        self._closed = True
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self._pool.close()

    async def __aenter__(self) -> AsyncBroker:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------- transactions
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncBroker]:
        """Make this task's operations inside the block commit or roll back together.

        Only the task that opened it joins: other tasks, even ones it starts,
        use their own connections. An exception or cancellation rolls back.
        """
        task = asyncio.current_task()
        assert task is not None
        held = self._held.get(task)
        if held is not None:
            await self._run_on(held, held.session.begin_transaction())  # raises: nested
        connection = await self._acquire()
        self._held[task] = connection
        try:
            await self._run_on(connection, connection.session.begin_transaction())
            try:
                yield self
            except BaseException:
                await asyncio.shield(self._settle(connection, connection.session.rollback_transaction()))
                raise
            await self._run_on(connection, connection.session.commit_transaction())
        finally:
            del self._held[task]
            await self._release(connection)

    async def _settle(self, connection: _Connection, operation: Operation[None]) -> None:
        """Run clean-up after any abandoned operation on the connection."""
        await _settled(connection)
        await self._run_on(connection, operation)

    # ---------------------------------------------------------------- writes
    async def write(self, queue: str, message: str) -> int:
        """Append ``message`` to ``queue``; returns its ID once committed."""
        return await self._run(lambda s: s.write(queue, message))

    async def write_many(self, queue: str, messages: Iterable[str]) -> list[int]:
        """Append messages in order in one transaction; returns their IDs."""
        items = list(messages) if not isinstance(messages, str | bytes) else messages
        return await self._run(lambda s: s.write_many(queue, items))

    async def broadcast(self, message: str, *, pattern: str | None = None) -> int:
        """Write to every existing queue (or those matching the glob); returns how many."""
        return await self._run(lambda s: s.broadcast(message, pattern=pattern))

    # ---------------------------------------------------------------- claims
    async def claim(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> Message | None:
        """Claim the oldest pending message (or the one with ``message_id``)."""
        return await self._run(
            lambda s: s.claim(queue, message_id=message_id, after=after_timestamp, before=before_timestamp)
        )

    async def claim_many(
        self, queue: str, limit: int, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim up to ``limit`` messages in one transaction."""
        return await self._run(lambda s: s.claim_many(queue, limit, after=after_timestamp, before=before_timestamp))

    async def claim_all(
        self, queue: str, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim every pending message in one transaction (all returned, or none claimed)."""
        return await self._run(lambda s: s.claim_all(queue, after=after_timestamp, before=before_timestamp))

    # ----------------------------------------------------------------- peeks
    async def peek(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> Message | None:
        """The oldest pending message (or one by ID), not claimed."""
        return await self._run(
            lambda s: s.peek(
                queue,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
            )
        )

    async def peek_many(
        self,
        queue: str,
        limit: int,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> list[Message]:
        """Up to ``limit`` oldest messages, not claimed."""
        return await self._run(
            lambda s: s.peek_many(
                queue, limit, after=after_timestamp, before=before_timestamp, include_claimed=include_claimed
            )
        )

    # --------------------------------------------------------------- streams
    def stream(
        self,
        queue: str,
        *,
        peek: bool = False,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> AsyncIterator[Message]:
        """Every message of ``queue``, oldest first, as an async iterator.

        ``commit_interval=1`` claims exactly once, one transaction per
        message. ``commit_interval=N>1`` claims batches of N at least once:
        a batch commits when the next one is asked for and is rolled back
        (delivered again) on ``break``, an exception or cancellation. While a
        batch is open it holds the database's write lock; a write by the same
        task raises ``TransactionError`` at once instead of waiting on it.
        ``peek=True`` pages through without claiming.
        """
        return MessageStream(
            self,
            lambda s: open_stream(
                s,
                queue,
                peek=peek,
                commit_interval=commit_interval,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
            ),
        )

    # ----------------------------------------------------------------- moves
    async def move(
        self,
        source_queue: str,
        dest_queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool | None = None,
    ) -> Message | None:
        """Move the oldest pending message (or one by its public ID, even if claimed)."""
        return await self._run(
            lambda s: s.move(
                source_queue,
                dest_queue,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                require_unclaimed=require_unclaimed,
            )
        )

    async def move_many(
        self,
        source_queue: str,
        dest_queue: str,
        limit: int,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> list[Message]:
        """Move up to ``limit`` pending messages in one transaction."""
        return await self._run(
            lambda s: s.move_many(source_queue, dest_queue, limit, after=after_timestamp, before=before_timestamp)
        )

    async def move_all(
        self,
        source_queue: str,
        dest_queue: str,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> int:
        """Move every pending message; returns how many moved."""
        return await self._run(
            lambda s: s.move_all(source_queue, dest_queue, after=after_timestamp, before=before_timestamp)
        )

    # ---------------------------------------------------------------- delete
    async def delete(self, queue: str | None = None) -> int:
        """Delete a queue's messages, or every queue's when ``queue`` is None."""
        return await self._run(lambda s: s.delete_all() if queue is None else s.delete_queue(queue))

    async def delete_messages(self, queue: str, message_ids: Iterable[int | str]) -> int:
        """Delete messages of ``queue`` by ID; returns how many existed."""
        ids = list(message_ids) if not isinstance(message_ids, str | bytes | int) else message_ids
        return await self._run(lambda s: s.delete_messages(queue, ids))

    # ------------------------------------------------------------ inspection
    async def list_queues(self) -> list[str]:
        return await self._run(lambda s: s.list_queues())

    async def get_queue_stats(self) -> list[QueueStats]:
        """``(queue, pending, total)`` for every queue."""
        return await self._run(lambda s: s.all_queue_stats())

    async def queue_stats(self, queue: str) -> QueueStats:
        return await self._run(lambda s: s.queue_stats(queue))

    async def queue_exists(self, queue: str) -> bool:
        return await self._run(lambda s: s.queue_exists(queue))

    async def vacuum(self, *, compact: bool = False) -> int:
        """Remove claimed rows now; returns how many (0 if another process is vacuuming)."""
        return await self._run(lambda s: s.vacuum(compact=compact))

    # ------------------------------------------- the async example's shapes
    async def read(
        self,
        queue: str,
        peek: bool = False,
        all_messages: bool = False,
        exact_timestamp: int | str | None = None,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> list[str]:
        """Bodies, as the original async example's ``read`` returns them: the
        oldest message, or every one (claimed in one transaction) with
        ``all_messages``; ``peek`` claims nothing."""
        return await self._run(
            lambda s: s.read_bodies(
                queue,
                peek=peek,
                all_messages=all_messages,
                message_id=exact_timestamp,
                after=after_timestamp,
                before=before_timestamp,
            )
        )

    def stream_read(
        self,
        queue: str,
        peek: bool = False,
        all_messages: bool = False,
        exact_timestamp: int | str | None = None,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
    ) -> AsyncIterator[str]:
        """Bodies, as the original async example's ``stream_read`` yields them."""
        return BodyStream(
            self,
            lambda s: open_stream(
                s,
                queue,
                peek=peek,
                all_messages=all_messages,
                commit_interval=commit_interval,
                message_id=exact_timestamp,
                after=after_timestamp,
            ),
        )


class MessageStream:
    """An async iterator over a core stream, on one connection for its life.

    Close it (``await stream.aclose()``, ``async with``, or iterate to the
    end); a stream dropped without closing is closed in the background, and
    its hold on the task is released at once, so a write right after
    ``break`` proceeds (after the abandoned batch rolls back) instead of
    failing or joining it.
    """

    def __init__(self, broker: AsyncBroker, make: Callable[[Session], Stream]) -> None:
        self._broker = broker
        self._make = make
        self._task: asyncio.Task[Any] | None = None
        self._connection: _Connection | None = None
        self._owned = False  # the connection came from the pool, not a transaction
        self._source: Stream | None = None
        self._batch: list[Message] = []
        self._position = 0
        self._closed = False

    def __aiter__(self) -> MessageStream:
        return self

    async def __aenter__(self) -> MessageStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> Message:
        if self._position < len(self._batch):
            self._position += 1
            return self._batch[self._position - 1]
        if self._closed:
            raise StopAsyncIteration
        try:
            batch = await self._next_batch()
        except BaseException:
            await self.aclose()
            raise
        if not batch:
            await self.aclose()
            raise StopAsyncIteration
        self._batch, self._position = batch, 1
        return batch[0]

    async def _next_batch(self) -> list[Message]:
        broker = self._broker
        if self._source is None:
            self._task = asyncio.current_task()
            held = broker._held.get(self._task)  # type: ignore[arg-type]
            self._owned = held is None
            self._connection = held if held is not None else await broker._acquire()
            self._source = self._make(self._connection.session)
        connection = self._connection
        assert connection is not None
        self._release_hold()
        batch = await broker._run_on(connection, self._source.next_batch())
        if self._owned and connection.session.stream_holding_lock is not None:
            # This task's own writes must meet the batch's lock on this
            # connection (and fail at once), not wait for it elsewhere.
            broker._held[self._task] = connection  # type: ignore[index]
        return batch

    def _release_hold(self) -> None:
        if self._owned and self._task is not None and self._broker._held.get(self._task) is self._connection:
            del self._broker._held[self._task]

    async def aclose(self) -> None:
        """Stop: an uncommitted at-least-once batch is rolled back and delivered again."""
        if self._closed:
            return
        self._closed = True
        self._batch = []
        self._release_hold()
        connection, source = self._connection, self._source
        if connection is None or source is None:
            return
        try:
            await asyncio.shield(self._broker._settle(connection, source.close()))
        finally:
            if self._owned:
                await self._broker._release(connection)

    def __del__(self) -> None:
        if self._closed or self._connection is None:
            return
        self._release_hold()
        closing = self.aclose()
        try:
            self._broker._in_background(closing)
        except RuntimeError:  # no running loop: the pool's close rolls back
            closing.close()


class BodyStream:
    """A :class:`MessageStream` that yields bodies, as the async example does."""

    def __init__(self, broker: AsyncBroker, make: Callable[[Session], Stream]) -> None:
        self._messages = MessageStream(broker, make)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> str:
        return (await self._messages.__anext__()).body

    async def __aenter__(self) -> BodyStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._messages.aclose()


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


def _cancelled() -> OperationCancelled:
    return OperationCancelled("the caller was cancelled; rolled back")


def _run_in_thread(driver: SyncDriver, operation: Operation[T], flight: _Flight) -> T:
    try:
        return driver.run(operation, flight.guard)
    finally:
        flight.finish()


async def _settled(connection: _Connection) -> None:
    """Wait until an operation abandoned on ``connection`` has ended."""
    busy = connection.busy
    if busy is not None:
        await busy.wait()
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


class AsyncQueue:
    """One queue of an :class:`AsyncBroker`, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    def __init__(self, name: str, broker: AsyncBroker) -> None:
        self.name = check_queue_name(name)
        self.broker = broker

    async def write(self, message: str) -> int:
        return await self.broker.write(self.name, message)

    async def write_many(self, messages: Iterable[str]) -> list[int]:
        return await self.broker.write_many(self.name, messages)

    @overload
    async def read(
        self,
        *,
        peek: bool = ...,
        all_messages: Literal[False] = ...,
        message_id: int | str | None = ...,
        after_timestamp: int | None = ...,
        before_timestamp: int | None = ...,
    ) -> str | None: ...
    @overload
    async def read(
        self,
        *,
        peek: bool = ...,
        all_messages: Literal[True],
        message_id: None = ...,
        after_timestamp: int | None = ...,
        before_timestamp: int | None = ...,
    ) -> list[str]: ...
    async def read(
        self,
        *,
        peek: bool = False,
        all_messages: bool = False,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> str | list[str] | None:
        """The oldest message's body (claimed unless ``peek``), or ``None``.

        ``all_messages=True`` returns every body: claimed in one transaction,
        so either all are handed over or none is claimed.
        """
        bodies = await self.broker.read(
            self.name,
            peek=peek,
            all_messages=all_messages,
            exact_timestamp=message_id,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
        )
        if all_messages:
            return bodies
        return bodies[0] if bodies else None

    async def read_all(self, *, peek: bool = False) -> list[str]:
        return await self.read(peek=peek, all_messages=True)

    def stream(
        self,
        *,
        peek: bool = False,
        all_messages: bool = True,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
    ) -> AsyncIterator[str]:
        """Bodies until the queue is empty (``all_messages=False``: at most one).

        ``commit_interval > 1`` is at-least-once: see :meth:`AsyncBroker.stream`.
        """
        return self.broker.stream_read(
            self.name,
            peek=peek,
            all_messages=all_messages,
            commit_interval=commit_interval,
            after_timestamp=after_timestamp,
        )

    async def claim(self, *, message_id: int | str | None = None) -> Message | None:
        return await self.broker.claim(self.name, message_id=message_id)

    async def claim_many(self, limit: int) -> list[Message]:
        return await self.broker.claim_many(self.name, limit)

    async def peek(self, *, message_id: int | str | None = None, include_claimed: bool = False) -> Message | None:
        return await self.broker.peek(self.name, message_id=message_id, include_claimed=include_claimed)

    async def peek_many(self, limit: int, *, include_claimed: bool = False) -> list[Message]:
        return await self.broker.peek_many(self.name, limit, include_claimed=include_claimed)

    def messages(self, *, peek: bool = False, commit_interval: int = 1) -> AsyncIterator[Message]:
        """Like :meth:`stream`, with IDs."""
        return self.broker.stream(self.name, peek=peek, commit_interval=commit_interval)

    async def size(self) -> int:
        """Pending (unclaimed) messages."""
        return (await self.broker.queue_stats(self.name)).pending

    async def stats(self) -> QueueStats:
        return await self.broker.queue_stats(self.name)

    async def exists(self) -> bool:
        return await self.broker.queue_exists(self.name)

    async def move_to(self, dest_queue: str, *, message_id: int | str | None = None) -> Message | None:
        """Move the oldest pending message, or the one with the public ``message_id``."""
        return await self.broker.move(self.name, dest_queue, message_id=message_id)

    async def move_many(self, dest_queue: str, limit: int) -> list[Message]:
        return await self.broker.move_many(self.name, dest_queue, limit)

    async def move_all(self, dest_queue: str) -> int:
        return await self.broker.move_all(self.name, dest_queue)

    async def delete(self, *, message_id: int | str | None = None) -> bool:
        """Delete the whole queue, or one message; True if anything was deleted."""
        if message_id is None:
            return await self.broker.delete(self.name) > 0
        return await self.broker.delete_messages(self.name, [message_id]) > 0
