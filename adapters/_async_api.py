"""What the async adapters share: the operations, the queue, the streams,
and the flight that links an awaiting task to its operation in a worker thread.

An adapter supplies only its runtime: how to run an operation on a
connection (one thread hop), how to acquire, release and settle a
connection, which task is current, and how to run clean-up in the
background. Everything users call is written once, here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, overload

from sansio_broker import BrokerCore, Message, QueueStats, Session
from sansio_broker.commands import Command, Operation
from sansio_broker.errors import OutcomeUnknownError
from sansio_broker.streams import Stream, open_stream
from sansio_broker.validation import check_bodies, check_id_list, check_queue_name

from ._flight import NO_ANSWER, Flight
from ._group import (
    LEAD,
    Combiner,
    Group,
    Member,
    State,
    abandon,
    claim_group,
    keep_write,
    new_combiner,
    raise_error,
    rejoin,
    settle,
    wake,
    write_group,
)
from ._sync import LOG, SyncDriver, written_ids

T = TypeVar("T")


class Supervisor(Protocol):
    """What watches an operation in its worker thread: a :class:`Flight`
    (one caller) or a :class:`~._group.Group` (many)."""

    def guard(self, command: Command) -> BaseException | None: ...

    answer: object

    def should_stop(self) -> bool: ...
    def seal(self) -> frozenset[int]: ...
    def finish(self) -> None: ...


def run_in_thread(driver: SyncDriver, operation: Operation[T], flight: Supervisor) -> T:
    """The job an async adapter sends to a connection's worker thread.

    A progress handler stops a long statement (``executemany`` of many rows,
    where ``interrupt`` is lost between rows) once the caller is cancelled,
    never once COMMIT has begun.
    """
    connection = driver.connection
    connection.set_progress_handler(flight.should_stop, PROGRESS_STEPS)
    try:
        flight.answer = answer = driver.run(operation, flight.guard, flight.seal)
        return answer
    finally:
        connection.set_progress_handler(None, 0)
        flight.finish()


# SQLite virtual-machine steps between two looks at the cancel flag.
PROGRESS_STEPS = 20_000


class Connection(Protocol):
    """What the shared code needs of an adapter's connection."""

    session: Session
    driver: SyncDriver
    busy: Flight | None  # an operation its caller abandoned


def left_open(connection: Connection) -> bool:
    """Whether an abandoned transaction or batch must be rolled back before
    the connection is reused (ask only while no operation runs on it)."""
    session = connection.session
    return (
        session.in_transaction or session.stream_holding_lock is not None or connection.driver.connection.in_transaction
    )


C = TypeVar("C", bound=Connection)


Done = Callable[[Any, BaseException | None], None]
"""Called in the event loop's thread when a started operation ends: (answer, error)."""


class AsyncWaiter(Protocol):
    """How a group member sleeps in an async runtime (see :mod:`._group`)."""

    def wake(self, value: object) -> bool: ...
    async def wait(self) -> object: ...


class AsyncOperations(Generic[C]):
    """Every broker operation, awaitable; subclasses provide the runtime."""

    _core: BrokerCore
    _closed: bool

    def __init__(self) -> None:
        # Connections held by a task for a transaction or an open stream batch.
        self._held: dict[object, C] = {}
        # Group commit: every write waiting at one moment; shared claims per queue.
        self._writes: Combiner[tuple[str, str]] = Combiner()
        self._claims: dict[str, Combiner[None]] = {}
        # Give-backs of cancelled claims and groups under way: close() waits for them.
        self._obligations = 0

    # --- the runtime an adapter provides ------------------------------------
    def _current_task(self) -> object:
        raise NotImplementedError

    async def _run_on(self, connection: C, operation: Operation[T], writes: bool = False) -> T:
        """Run ``operation`` on ``connection`` (one thread hop); ``writes``:
        its answer is the IDs it wrote.

        Cancelled while its COMMIT runs, it raises what
        :meth:`_cancelled_in_commit` says.
        """
        raise NotImplementedError

    async def _flight_ended(self, connection: C) -> None:
        """Wait until an operation abandoned on ``connection`` has ended."""
        raise NotImplementedError

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to its end, even if the caller is cancelled meanwhile."""
        raise NotImplementedError

    async def _acquire(self, internal: bool = False) -> C:
        """A connection; ``internal`` (give-backs, housekeeping) still gets
        one while the broker closes."""
        raise NotImplementedError

    def _release(self, connection: C) -> None:
        """Give a connection back; must never suspend (nothing can be lost there)."""
        raise NotImplementedError

    async def _settle(self, connection: C, operation: Operation[None]) -> None:
        """Run clean-up after any abandoned operation, shielded from cancellation."""
        raise NotImplementedError

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        raise NotImplementedError

    def _waiter(self) -> AsyncWaiter:
        raise NotImplementedError

    async def _let_others_run(self) -> None:
        """One pass of the scheduler, so tasks woken together reach their next call."""
        raise NotImplementedError

    def _start(self, connection: C, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        """Queue a group operation in the connection's thread; ``done`` gets its end."""
        raise NotImplementedError

    def _outcome_unknown(self, what: str, message_ids: tuple[int, ...] = ()) -> BaseException:
        """The adapter's outcome-unknown error, "cancelled <what>", naming ``message_ids``."""
        raise NotImplementedError

    # --- what every async adapter does with that runtime ---------------------
    async def wait_background(self) -> None:
        """Wait until work in the background has ended: give-backs of
        cancelled claims, groups still running, an auto-vacuum check."""
        raise NotImplementedError

    async def open(self) -> Self:
        """Create or check the database now, so a bad file fails here."""
        self._release(await self._acquire())
        return self

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, make: Callable[[Session], Operation[T]], internal: bool = False, writes: bool = False) -> T:
        """Run ``make(session)`` on this task's held connection or a pooled one."""
        held = self._held.get(self._current_task())
        if held is not None:
            return await self._run_on(held, make(held.session), writes)
        connection = await self._acquire(internal)
        try:
            return await self._run_on(connection, make(connection.session), writes)
        finally:
            self._release(connection)

    async def _cancelled_in_commit(self, connection: C, flight: Flight, writes: bool) -> BaseException | None:
        """The caller was cancelled while COMMIT ran; it waits (shielded) for
        the operation to end, so what it is told is what happened.

        A claim's messages are given back, to readers waiting on that queue
        or to pending, and the caller gets the plain cancellation (None). A
        change that landed is the adapter's outcome-unknown error, naming
        the IDs a write wrote; one that did not land, the plain cancellation.
        """
        if connection.driver.claimed is not None:
            await self._shielded(self._give_back_late(connection))
            return None
        await self._shielded(self._flight_ended(connection))
        if flight.answer is not NO_ANSWER:
            ids = written_ids(flight.answer) if writes else ()
            return self._outcome_unknown("while its COMMIT ran: the change took effect", ids)
        if connection.driver.committed():  # failed after an earlier transaction of it committed
            return self._outcome_unknown("while it ran: part of the change took effect")
        return None  # rolled back: nothing happened

    async def _give_back_late(self, connection: C) -> None:
        self._obligations += 1  # close() waits for it
        try:
            await self._flight_ended(connection)
            driver = connection.driver  # done with the operation: its ledger is final
            queue = driver.claim_queue
            rest = self._hand_over(queue, driver.committed_claims())
            if rest:
                try:
                    await self._run_on(connection, connection.session.return_claims(queue, rest))
                except Exception as exc:
                    ids = tuple(m.id for m in rest)
                    raise OutcomeUnknownError(f"claimed, then cancelled, and giving back failed: {exc!r}", ids) from exc
        finally:
            self._obligations -= 1

    def _hand_over(self, queue: str, messages: list[Message]) -> list[Message]:
        """Give claimed messages nobody took to readers waiting on ``queue``;
        returns those left over, which must go back to pending."""
        combiner = self._claims.get(queue)
        return [m for m in messages if combiner is None or not combiner.hand_over(m)]

    def _give_back(self, queue: str, messages: list[Message]) -> None:
        """Claimed messages their readers never took: to the next waiting
        readers of ``queue``, else pending again (in the background)."""
        rest = self._hand_over(queue, messages)
        if rest:
            self._in_background(self._run(lambda s: s.return_claims(queue, rest), internal=True))

    def _housekeep(self) -> None:
        """Start a due auto-vacuum check in the background: never inside a
        caller's operation, so a committed answer never waits or fails for it."""
        if self._core.take_auto_vacuum():
            try:
                self._in_background(self._auto_vacuum())
            except Exception:  # never into the caller's committed operation
                self._core.auto_vacuum_ended()
                LOG.warning("could not start an auto-vacuum check", exc_info=True)

    async def _auto_vacuum(self) -> None:
        try:
            await self._run(lambda s: s.auto_vacuum(), internal=True)
        finally:
            self._core.auto_vacuum_ended()

    def _joins_transaction(self) -> bool:
        """Whether this task holds a connection (transaction, stream batch):
        its operations run there, never in a group."""
        return self._current_task() in self._held

    async def _in_group(
        self,
        combiner: Combiner[Any],
        item: object,
        make: Callable[[Session, list[Any]], Operation[list[Any]]],
        queue: str | None = None,
    ) -> Any:
        """Run this caller's part of a group operation (see :mod:`._group`); its answer.

        ``queue``: the queue of a group claim, whose messages its readers can
        no longer take are given back; writes (``None``) that may have landed
        are outcome-unknown instead.
        """
        give_back = keep_write if queue is None else partial(self._give_back_answer, queue)
        waiter = self._waiter()
        member: Member[Any] = Member(item, waiter)
        try:
            lead = combiner.join(member)
            if not lead:
                answer = await waiter.wait()
                lead = answer is LEAD
                if lead:  # its waiter is spent
                    member.waiter = waiter = self._waiter()
            if lead:
                if combiner.busy:
                    await self._let_others_run()
                connection = await self._acquire()
                group = combiner.take(member)
                group.owner = connection
                self._obligations += 1  # close() waits for its end: members may leave late

                def done(answers: Any, error: BaseException | None) -> None:
                    # One callback, so nothing runs between these steps; the
                    # tasks it wakes find the connection back in the pool.
                    try:
                        wake(settle(group, answers, error, give_back))
                        combiner.hand_on()
                    finally:
                        self._obligations -= 1
                        self._release(connection)
                    if error is None:
                        self._housekeep()

                try:
                    self._start(connection, make(connection.session, group.items), group, done)
                except BaseException as exc:  # nothing started (a closed connection)
                    done(None, exc)
                answer = await waiter.wait()
        except BaseException:
            left = member.group
            if queue is None:  # a writer
                state = combiner.leave(member)
                late = self._waiter() if state is State.LATE else None
                if late is not None:
                    rejoin(member, late)  # its group sealed: the group's end tells it its ID after all
            else:  # a reader: a message it can no longer take goes on in the background
                abandon(combiner, member, give_back)
            if left is not None and left.abandoned:
                # No caller is left: stop it as an abandoned operation is stopped.
                left.owner.busy = left
                left.cancel(left.owner.driver.connection.interrupt)
            if queue is None and (late is not None or state is State.DONE):  # it may have landed
                written = await self._shielded(self._answer_left(member, late))
                if isinstance(written, int):
                    raise self._outcome_unknown("after its group sealed: the write took effect", (written,)) from None
            raise
        return raise_error(answer)

    async def _answer_left(self, member: Member[Any], late: AsyncWaiter | None) -> object:
        """The answer of a writer that left after its group sealed (``late``:
        once the group ends, which needs no connection of the pool) or that
        was handed it but never took it."""
        self._obligations += 1  # close() waits for it
        try:
            return member.answer if late is None else await late.wait()
        finally:
            self._obligations -= 1

    async def _alone(self, combiner: Combiner[Any], make: Callable[[Session], Operation[T]], writes: bool = False) -> T:
        """Run a plain operation for a caller that came alone (``run_alone``);
        callers arriving meanwhile form the next group. (A claim cancelled
        while its COMMIT runs hands on after its message was given back, so
        a reader that came meanwhile gets it.)"""
        try:
            return await self._run(make, writes=writes)
        finally:
            combiner.hand_on()

    async def _write_grouped(self, queue: str, message: str) -> int:
        if self._writes.run_alone():
            return await self._alone(self._writes, lambda s: s.write(queue, message), writes=True)  # write() checks
        item = self._core.check_write(queue, message)
        written: int = await self._in_group(self._writes, item, write_group)
        return written

    async def _claim_shared(self, queue: str) -> Message | None:
        self._core.plain_claim(queue)  # validates the name before anything waits
        combiner = self._claims.get(queue)
        if combiner is None:
            combiner = self._claims[queue] = new_combiner(self._claims)
        if combiner.run_alone():
            return await self._alone(combiner, lambda s: s.claim(queue))
        claimed: Message | None = await self._in_group(combiner, None, partial(claim_group, queue), queue)
        return claimed

    def _give_back_answer(self, queue: str, answer: object) -> None:
        """A group member's claimed message that its reader never took."""
        if isinstance(answer, Message):
            self._give_back(queue, [answer])

    # ----------------------------------------------------------- transactions
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncOperations[C]]:
        """Make this task's operations inside the block commit or roll back together.

        Only the task that opened it joins: other tasks, even ones it starts,
        use their own connections. An exception or cancellation rolls back.
        """
        task = self._current_task()
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
                if not self._closed:  # else its connection was closed, ending the transaction
                    await self._settle(connection, connection.session.rollback_transaction())
                raise
            await self._run_on(connection, connection.session.commit_transaction())
        finally:
            del self._held[task]
            self._release(connection)

    # ---------------------------------------------------------------- writes
    async def write(self, queue: str, message: str) -> int:
        """Append ``message`` to ``queue``; returns its ID once committed.

        Writes of other tasks waiting at the same moment share its
        transaction (group commit); each gets its own ID, in arrival order.
        """
        if self._joins_transaction():
            return await self._run(lambda s: s.write(queue, message), writes=True)
        return await self._write_grouped(queue, message)

    async def write_many(self, queue: str, messages: Iterable[str]) -> list[int]:
        """Append messages in order in one transaction; returns their IDs."""
        items = list(check_bodies(messages))  # read once, here; None or a str is refused first
        return await self._run(lambda s: s.write_many(queue, items), writes=True)

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
        """Claim the oldest pending message (or the one with ``message_id``).

        Plain claims of tasks waiting on the same queue at the same moment
        share one transaction, each getting a distinct message.
        """
        plain = message_id is None and after_timestamp is None and before_timestamp is None
        if plain and not self._joins_transaction():
            return await self._claim_shared(queue)
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
        ids = check_id_list(message_ids)  # read once, here
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
        plain = exact_timestamp is None and after_timestamp is None and before_timestamp is None
        if plain and not peek and not all_messages and not self._joins_transaction():
            claimed = await self._claim_shared(queue)
            return [] if claimed is None else [claimed.body]
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

    def __init__(self, broker: AsyncOperations[Any], make: Callable[[Session], Stream]) -> None:
        self._broker = broker
        self._make = make
        self._task: object | None = None
        self._connection: Any = None
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
            self._task = broker._current_task()
            held = broker._held.get(self._task)
            self._owned = held is None
            connection = held if held is not None else await broker._acquire()
            self._connection = connection
            try:
                self._source = self._make(connection.session)
            except BaseException:  # refused arguments: nothing ran
                self._connection = None
                if self._owned:
                    broker._release(connection)
                raise
        connection = self._connection
        assert connection is not None
        self._release_hold()
        batch = await broker._run_on(connection, self._source.next_batch())
        if self._owned and connection.session.stream_holding_lock is not None:
            # This task's own writes must meet the batch's lock on this
            # connection (and fail at once), not wait for it elsewhere.
            broker._held[self._task] = connection
        return batch

    def _release_hold(self) -> None:
        connection = self._connection
        if self._owned and connection is not None and self._broker._held.get(self._task) is connection:
            del self._broker._held[self._task]

    async def aclose(self) -> None:
        """Stop: an uncommitted at-least-once batch is rolled back and delivered again."""
        if self._closed:
            return
        self._closed = True
        self._batch = []
        self._release_hold()
        connection, source = self._connection, self._source
        if connection is None or source is None or self._broker._closed:
            return  # nothing ran, or the broker closed it (its batch ended with it)
        try:
            await self._broker._settle(connection, source.close())
        finally:
            if self._owned:
                self._broker._release(connection)

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

    def __init__(self, broker: AsyncOperations[Any], make: Callable[[Session], Stream]) -> None:
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


class QueueOperations:
    """One queue of an broker, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    def __init__(self, name: str, broker: AsyncOperations[Any]) -> None:
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

        ``commit_interval > 1`` is at-least-once: see :meth:`the broker's ``stream```.
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

    async def read_many(self, limit: int) -> list[str]:
        """Up to ``limit`` oldest bodies, claimed in one transaction (SimpleBroker's ``read_many``)."""
        return [m.body for m in await self.broker.claim_many(self.name, limit)]

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
