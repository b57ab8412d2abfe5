"""The engine of the async adapters: a pool of connections, each with its
worker thread, driven from one event loop (asyncio or trio).

:class:`PooledEngine` is written once. What differs between asyncio and
trio is a small :class:`Runtime` object: how a task is named, sleeps,
yields and is shielded, how work runs in a connection's thread and in the
background, how connections are pooled, and which error says "outcome
unknown". An operation's path: ``AsyncOperations.write`` (what it means)
-> ``PooledEngine.write`` (group commit, cancellation) -> ``Runtime.call``
(the thread hop) -> ``run_in_thread`` -> ``SyncDriver.run`` (the commands).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Generic, Protocol, Self, TypeVar

from sansio_broker import BrokerClosedError, Config, Message, OutcomeUnknownError, TransactionError
from sansio_broker.driver import BrokerCore, Command, Operation, Session, Stream
from sansio_broker.driver import State as SessionState

from ._driver import Driver
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
from ._sync import LOG, Backend, written_ids
from ._waiting import CLOSED, TIMED_OUT, Listener, Waits, received

T = TypeVar("T")
R = TypeVar("R")


def _same(answer: T) -> T:
    return answer


def _claim_many(queue: str, limit: int, session: Session) -> Operation[list[Message]]:
    return session.claim_many(queue, limit)


class Supervisor(Protocol):
    """What watches an operation in its worker thread: a :class:`Flight`
    (one caller) or a :class:`~._group.Group` (many)."""

    def guard(self, command: Command) -> BaseException | None: ...

    answer: object

    def should_stop(self) -> bool: ...
    def seal(self) -> frozenset[int]: ...
    def finish(self) -> None: ...


def run_in_thread(driver: Driver, operation: Operation[T], flight: Supervisor) -> T:
    """The job an async adapter sends to a connection's worker thread.

    The driver may cut a long statement short once the caller is cancelled
    (``stop_when``), never once COMMIT has begun.
    """
    driver.stop_when(flight.should_stop)
    try:
        flight.answer = answer = driver.run(operation, flight.guard, flight.seal)
        return answer
    finally:
        driver.stop_when(None)
        flight.finish()


class DriverState(Protocol):
    """What the engine reads of a connection's driver, sync or async (its
    operations run elsewhere: in a worker thread, or a task of their own)."""

    claimed: list[tuple[str, int]] | None
    claim_queue: str

    @property
    def in_transaction(self) -> bool: ...
    def interrupt(self) -> None: ...
    def committed(self) -> bool: ...
    def committed_claims(self) -> list[Message]: ...


class Connection(Protocol):
    """What the engine needs of a runtime's connection."""

    session: Session
    busy: Flight | None  # an operation its caller abandoned

    @property
    def driver(self) -> DriverState: ...


def left_open(connection: Connection) -> bool:
    """Whether an abandoned transaction or batch must be rolled back before
    the connection is reused (ask only while no operation runs on it)."""
    return connection.session.state is not SessionState.IDLE or connection.driver.in_transaction


def give_up(connection: Connection, flight: Flight) -> bool:
    """The caller of ``flight`` was cancelled (in the event loop's thread):
    stop its operation at its next command; True if COMMIT already began.
    The connection is reused only once the operation has ended."""
    connection.busy = flight
    return flight.cancel(connection.driver.interrupt)


C = TypeVar("C", bound=Connection)


Done = Callable[[Any, BaseException | None], None]
"""Called in the event loop's thread when a started operation ends: (answer, error)."""


class AsyncWaiter(Protocol):
    """How a group member sleeps in an async runtime (see :mod:`._group`)."""

    def wake(self, value: object) -> bool: ...
    async def wait(self) -> object: ...


class Runtime(Protocol[C]):
    """What asyncio and trio each provide to :class:`PooledEngine`."""

    closed: bool  # refusing callers (close() has begun)
    path: str
    label: str
    config: Config
    backend: Backend

    def current_task(self) -> object: ...

    def portal(self) -> Callable[[Callable[[], object]], None]:
        """From the event loop's thread: a function any thread may call to
        run a callback soon in this loop (never raises; dropped once the loop is gone)."""
        ...

    async def wait(self, waiter: AsyncWaiter, timeout: float | None) -> object:
        """``waiter.wait()``, or :data:`~._waiting.TIMED_OUT` once ``timeout`` seconds passed."""
        ...

    def waiter(self) -> AsyncWaiter: ...

    async def checkpoint(self) -> None:
        """One pass of the scheduler, so tasks woken together reach their next call."""
        ...

    async def acquire(self, internal: bool = False) -> C:
        """A connection; ``internal`` (give-backs, housekeeping) still gets
        one while the broker closes."""
        ...

    def release(self, connection: C) -> None:
        """Give a connection back; never suspends (nothing can be lost there)."""
        ...

    async def call(self, connection: C, operation: Operation[T], flight: Flight) -> T:
        """Run ``operation`` in the connection's thread (one hop). If the
        caller is cancelled meanwhile, :func:`give_up` runs at once and the
        cancellation propagates without waiting for the thread."""
        ...

    def start(self, connection: C, operation: Operation[Any], group: Group[Any], done: Done) -> None:
        """Queue a group operation in the connection's thread; ``done`` gets its end."""
        ...

    async def flight_ended(self, connection: C) -> None:
        """Wait until an operation abandoned on ``connection`` has ended."""
        ...

    async def shield(self, work: Awaitable[T]) -> T:
        """Run ``work`` to its end even if the caller is cancelled meanwhile."""
        ...

    async def shield_counted(self, work: Coroutine[Any, Any, T]) -> T:
        """:meth:`shield`, and ``close()`` waits for ``work`` even if its
        caller was released by a second cancellation."""
        ...

    def in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` on its own; a failure is logged, never raised."""
        ...

    async def drain(self, pending: Callable[[], int]) -> None:
        """Wait until background work has ended and ``pending()`` is 0."""
        ...

    async def close(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Refuse callers, await ``drain()``, then close every connection."""
        ...

    def outcome_unknown(self, what: str, message_ids: tuple[int, ...] = ()) -> BaseException:
        """The adapter's outcome-unknown error, "cancelled <what>", naming ``message_ids``."""
        ...


class _Ticket:
    __slots__ = ("handed", "waiter")

    def __init__(self, waiter: AsyncWaiter) -> None:
        self.waiter = waiter
        self.handed = False


class Turn:
    """One write transaction of the engine's own at a time: group writes and
    claims, lone writes and claims, dispatches for waiting getters.

    They queue here, in order, instead of meeting in SQLite's busy handler,
    whose sleeps (1, 2, 5 ms, ...) last far longer than the transaction they
    wait for: a write group and a getters' dispatch arriving together would
    otherwise cost a millisecond or more each time.
    """

    __slots__ = ("_held", "_queue")

    def __init__(self) -> None:
        self._held = False
        self._queue: deque[_Ticket] = deque()

    async def take(self, runtime: Runtime[Any]) -> None:
        """Wait for the turn (no wait when it is free); the caller must :meth:`give` it."""
        if not self._held:
            self._held = True
            return
        ticket = _Ticket(runtime.waiter())
        self._queue.append(ticket)
        try:
            await ticket.waiter.wait()
        except BaseException:
            if ticket.handed:  # handed over as it was cancelled: pass it on
                self.give()
            elif ticket in self._queue:
                self._queue.remove(ticket)
            raise

    def give(self) -> None:
        """Hand the turn to the oldest caller still waiting, or free it."""
        queue = self._queue
        while queue:
            ticket = queue.popleft()
            if ticket.waiter.wake(None):
                ticket.handed = True
                return
        self._held = False


class PooledEngine(Generic[C]):
    """How an async broker runs the operations: on a pooled connection (or
    the one its task holds for a transaction or stream batch), in group
    commits, with cancellation at any await leaving nothing behind.

    Runs in the event loop's thread only, so its state needs no lock.
    """

    def __init__(self, core: BrokerCore, runtime: Runtime[C]) -> None:
        self.core = core
        self.runtime = runtime
        # Connections held by a task for a transaction or an open stream batch.
        self.held: dict[object, C] = {}
        # Group commit: every write waiting at one moment; shared claims per queue.
        self._writes: Combiner[tuple[str, str]] = Combiner()
        self._claims: dict[str, Combiner[None]] = {}
        # Give-backs of cancelled claims and groups under way: close() waits for them.
        self.obligations = 0
        # The engine's own write transactions, one at a time.
        self.turn = Turn()
        # Waiting consumers (see _waiting and _news).
        self.waits = Waits()
        self.news = runtime.backend.news(runtime.path, runtime.config, self._hint_from_anywhere)
        self._portal: Callable[[Callable[[], object]], None] | None = None

    # ------------------------------------------------- what operations use
    async def open(self) -> None:
        self.runtime.release(await self.runtime.acquire())

    async def close(self) -> None:
        for waiter in self.waits.close():  # get() raises BrokerClosedError, watch() ends
            waiter.wake(CLOSED)
        self.news.close()
        await self.runtime.close(self.wait_background)

    async def wait_background(self) -> None:
        await self.runtime.drain(lambda: self.obligations)

    async def run(self, make: Callable[[Session], Operation[T]], writes: bool = False, internal: bool = False) -> T:
        """Run ``make(session)`` on this task's held connection or a pooled one."""
        held = self.held.get(self.runtime.current_task())
        if held is not None:
            return await self.run_on(held, make(held.session), writes)
        connection = await self.runtime.acquire(internal)
        try:
            return await self.run_on(connection, make(connection.session), writes)
        finally:
            self.runtime.release(connection)

    async def claiming(self, make: Callable[[Session], Operation[T]], shape: Callable[[T], R]) -> R:
        # Nothing can interrupt between the answer and its shape: no await.
        return shape(await self.run(make))

    async def write(self, queue: str, message: str) -> int:
        if self._joins_transaction():
            return await self.run(lambda s: s.write(queue, message), writes=True)
        if self._writes.run_alone():
            return await self._alone(self._writes, lambda s: s.write(queue, message), writes=True)  # write() checks
        item = self.core.check_write(queue, message)
        written: int = await self._in_group(self._writes, item, write_group)
        return written

    async def claim(self, queue: str, shape: Callable[[Message | None], R]) -> R:
        if self._joins_transaction():
            return shape(await self.run(lambda s: s.claim(queue)))
        self.core.plain_claim(queue)  # validates the name before anything waits
        combiner = self._claims.get(queue)
        if combiner is None:
            combiner = self._claims[queue] = new_combiner(self._claims)
        if combiner.run_alone():
            return shape(await self._alone(combiner, lambda s: s.claim(queue)))
        claimed: Message | None = await self._in_group(combiner, None, partial(claim_group, queue), queue)
        return shape(claimed)

    def stream(self, make: Callable[[Session], Stream], shape: Callable[[Message], R]) -> PooledStream[R]:
        return PooledStream(self, make, shape)

    @asynccontextmanager
    async def transaction(self, owner: T) -> AsyncIterator[T]:
        """This task's operations inside the block share one transaction.

        Only the task that opened it joins: other tasks, even ones it starts,
        use their own connections. An exception or cancellation rolls back.
        """
        runtime = self.runtime
        task = runtime.current_task()
        held = self.held.get(task)
        if held is not None:
            await self.run_on(held, held.session.begin_transaction())  # raises: nested
        connection = await runtime.acquire()
        self.held[task] = connection
        try:
            await self.run_on(connection, connection.session.begin_transaction())
            try:
                yield owner
            except BaseException:
                if not runtime.closed:  # else its connection was closed, ending the transaction
                    await self.settle(connection, connection.session.rollback_transaction())
                raise
            await self.run_on(connection, connection.session.commit_transaction())
        finally:
            del self.held[task]
            runtime.release(connection)

    # ------------------------------------------------- waiting consumers
    async def wait_claim(self, queue: str, timeout: float | None, shape: Callable[[Message], R]) -> R | None:
        """Claim the oldest message of ``queue``, waiting (see :mod:`._waiting`)
        until there is one or ``timeout`` seconds passed (then ``None``)."""
        self._refuse_waiting_in_transaction()
        waits = self.waits
        if waits.nobody_waits_on(queue):  # an idle consumer that finds a message pays nothing more
            found: Message | None = await self.claim(queue, _same)
            if found is not None:
                return shape(found)
            if timeout == 0:
                return None
        if self.runtime.closed or waits.closed:  # close() has woken every waiter already
            raise BrokerClosedError(f"the broker on {self.runtime.label} is closed")
        runtime = self.runtime
        waiter = runtime.waiter()
        member: Member[None] = Member(None, waiter)
        self._listen()
        try:
            if waits.join(queue, member):  # a look after joining: nothing written meanwhile is missed
                self._dispatch(queue)
            try:
                answer = await runtime.wait(waiter, timeout)
            except BaseException:
                if waits.leave(queue, member) is State.DONE and isinstance(member.answer, Message):
                    self.give_back(queue, [member.answer])  # handed over, never taken
                raise
        finally:
            self._quiet_if_idle()
        if answer is TIMED_OUT:
            if waits.leave(queue, member) is not State.DONE:
                return None
            answer = member.answer  # handed over as the time ran out: take it
        return shape(received(answer, self.runtime.path))

    async def wait_first(self, queues: list[str], timeout: float | None) -> tuple[str, str] | None:
        """``broker.get``: claim from the first of ``queues`` with a message,
        looking again on every hint for them, until ``timeout`` (then ``None``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self.listening(frozenset(queues)) as listener:
            while True:
                listener.hinted = False  # a change from now on makes it look again
                for queue in queues:
                    found: Message | None = await self.claim(queue, _same)
                    if found is not None:  # no await between the claim and its caller
                        return queue, found.body
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining == 0 or not await self.wait_listener(listener, remaining):
                    return None

    @asynccontextmanager
    async def listening(self, queues: frozenset[str] | None) -> AsyncIterator[Listener]:
        """Hear of changes to ``queues`` while inside the block (see :meth:`wait_listener`)."""
        self._refuse_waiting_in_transaction()
        if self.runtime.closed or self.waits.closed:
            raise BrokerClosedError(f"the broker on {self.runtime.label} is closed")
        listener = Listener(queues)
        self.waits.listen(listener)
        self._listen()
        try:
            yield listener
        finally:
            self.waits.stop_listening(listener)
            self._quiet_if_idle()

    async def wait_listener(self, listener: Listener, timeout: float | None) -> bool:
        """Wait for a change since ``listener`` was last reset; False once ``timeout`` passed."""
        if listener.hinted:
            return True
        if self.waits.closed:
            raise BrokerClosedError(f"the broker on {self.runtime.label} closed while waiting")
        waiter = self.runtime.waiter()
        listener.waiter = waiter
        try:
            answer = await self.runtime.wait(waiter, timeout)
        finally:
            listener.waiter = None
        if answer is CLOSED:
            raise BrokerClosedError(f"the broker on {self.runtime.label} closed while waiting")
        return answer is not TIMED_OUT

    def _refuse_waiting_in_transaction(self) -> None:
        if self._joins_transaction():
            raise TransactionError(
                "get() and watch() wait for other writers, who cannot write while this task's "
                "transaction or stream batch holds the write lock: use claim() there"
            )

    def _listen(self) -> None:
        if self._portal is None:
            self._portal = self.runtime.portal()
        self.news.listen()

    def _quiet_if_idle(self) -> None:
        if not self.waits.waiting:
            self.news.quiet()

    def _hint_from_anywhere(self, queues: frozenset[str] | None) -> None:
        # Called by the file's signal (in a committing thread) or the watcher
        # (its own thread): hop into the event loop.
        portal = self._portal
        if portal is not None:
            portal(partial(self._hint, queues))

    def _hint(self, queues: frozenset[str] | None) -> None:
        for queue in self.waits.hinted(queues):
            self._dispatch(queue)

    def _dispatch(self, queue: str) -> None:
        self.runtime.in_background(self._dispatcher(queue))

    async def _dispatcher(self, queue: str) -> None:
        """Claim for the getters of ``queue`` in one transaction, hand the
        messages out oldest getter first, and look again while that may find more."""
        waits = self.waits
        while True:
            wanted = waits.wait_list(queue).wanted if not waits.closed else 0
            claimed: list[Message] = []
            if wanted:
                try:
                    await self.turn.take(self.runtime)
                    try:
                        claimed = await self.run(partial(_claim_many, queue, wanted))
                    finally:
                        self.turn.give()
                except BrokerClosedError:
                    pass
                except Exception as exc:  # the getters it claimed for hear it, as a failed claim's callers do
                    waits.fail(queue, exc, wanted)
                rest = [m for m in claimed if not waits.hand_over(queue, m)]
                if rest:
                    self.give_back(queue, rest)
            if not waits.dispatch_ended(queue, len(claimed), wanted):
                return

    # ------------------------------------------------- one operation, one hop
    async def run_on(self, connection: C, operation: Operation[T], writes: bool = False) -> T:
        """Run ``operation`` on ``connection``; ``writes``: its answer is the IDs it wrote.

        Cancelled while its COMMIT runs, it raises what
        :meth:`_cancelled_in_commit` says.
        """
        flight = Flight()
        try:
            answer = await self.runtime.call(connection, operation, flight)
        except BaseException:
            if flight.cancelled and flight.committing:  # the caller left during COMMIT
                error = await self._cancelled_in_commit(connection, flight, writes)
                if error is not None:
                    raise error from None
            raise
        self.news.committed(connection.session)
        self._housekeep()
        return answer

    async def settle(self, connection: C, operation: Operation[None]) -> None:
        """Run clean-up after any abandoned operation, shielded from cancellation."""
        await self.runtime.shield(self._settle_now(connection, operation))

    async def _settle_now(self, connection: C, operation: Operation[None]) -> None:
        await self.runtime.flight_ended(connection)
        await self.run_on(connection, operation)

    async def _cancelled_in_commit(self, connection: C, flight: Flight, writes: bool) -> BaseException | None:
        """The caller was cancelled while COMMIT ran; it waits (shielded) for
        the operation to end, so what it is told is what happened.

        A claim's messages are given back, to readers waiting on that queue
        or to pending, and the caller gets the plain cancellation (None). A
        change that landed is the adapter's outcome-unknown error, naming
        the IDs a write wrote; one that did not land, the plain cancellation.
        """
        runtime = self.runtime
        if connection.driver.claimed is not None:
            await runtime.shield_counted(self._give_back_late(connection))
            return None
        await runtime.shield_counted(runtime.flight_ended(connection))
        if flight.answer is not NO_ANSWER:
            ids = written_ids(flight.answer) if writes else ()
            return runtime.outcome_unknown("while its COMMIT ran: the change took effect", ids)
        if connection.driver.committed():  # failed after an earlier transaction of it committed
            return runtime.outcome_unknown("while it ran: part of the change took effect")
        return None  # rolled back: nothing happened

    async def _give_back_late(self, connection: C) -> None:
        self.obligations += 1  # close() waits for it
        try:
            await self.runtime.flight_ended(connection)
            driver = connection.driver  # done with the operation: its ledger is final
            queue = driver.claim_queue
            rest = self._hand_over(queue, driver.committed_claims())
            if rest:
                try:
                    await self.run_on(connection, connection.session.return_claims(queue, rest))
                except Exception as exc:
                    ids = tuple(m.id for m in rest)
                    raise OutcomeUnknownError(f"claimed, then cancelled, and giving back failed: {exc!r}", ids) from exc
        finally:
            self.obligations -= 1

    def _hand_over(self, queue: str, messages: list[Message]) -> list[Message]:
        """Give claimed messages nobody took to readers waiting on ``queue``
        (getters first); returns those left over, which must go back to pending."""
        combiner = self._claims.get(queue)
        waits = self.waits
        return [
            m for m in messages if not waits.hand_over(queue, m) and (combiner is None or not combiner.hand_over(m))
        ]

    def give_back(self, queue: str, messages: list[Message]) -> None:
        """Claimed messages their readers never took: to the next waiting
        readers of ``queue``, else pending again (in the background)."""
        rest = self._hand_over(queue, messages)
        if rest:
            self.runtime.in_background(self.run(lambda s: s.return_claims(queue, rest), internal=True))

    def _housekeep(self) -> None:
        """Start a due auto-vacuum check in the background: never inside a
        caller's operation, so a committed answer never waits or fails for it."""
        if self.core.take_auto_vacuum():
            try:
                self.runtime.in_background(self._auto_vacuum())
            except Exception:  # never into the caller's committed operation
                self.core.auto_vacuum_ended()
                LOG.warning("could not start an auto-vacuum check", exc_info=True)

    async def _auto_vacuum(self) -> None:
        try:
            await self.run(lambda s: s.auto_vacuum(), internal=True)
        finally:
            self.core.auto_vacuum_ended()

    # ------------------------------------------------------------ groups
    def _joins_transaction(self) -> bool:
        """Whether this task holds a connection (transaction, stream batch):
        its operations run there, never in a group."""
        return self.runtime.current_task() in self.held

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
        runtime = self.runtime
        give_back = keep_write if queue is None else partial(self._give_back_answer, queue)
        waiter = runtime.waiter()
        member: Member[Any] = Member(item, waiter)
        try:
            lead = combiner.join(member)
            if not lead:
                answer = await waiter.wait()
                lead = answer is LEAD
                if lead:  # its waiter is spent
                    member.waiter = waiter = runtime.waiter()
            if lead:
                if combiner.busy:
                    await runtime.checkpoint()
                await self.turn.take(runtime)
                try:
                    connection = await runtime.acquire()
                except BaseException:
                    self.turn.give()
                    raise
                group = combiner.take(member)
                group.owner = connection
                self.obligations += 1  # close() waits for its end: members may leave late

                def done(answers: Any, error: BaseException | None) -> None:
                    # One callback, so nothing runs between these steps; the
                    # tasks it wakes find the connection back in the pool.
                    self.turn.give()
                    try:
                        wake(settle(group, answers, error, give_back))
                        combiner.hand_on()
                    finally:
                        self.obligations -= 1
                        self.news.committed(connection.session)
                        runtime.release(connection)
                    if error is None:
                        self._housekeep()

                try:
                    runtime.start(connection, make(connection.session, group.items), group, done)
                except BaseException as exc:  # nothing started (a closed connection)
                    done(None, exc)
                answer = await waiter.wait()
        except BaseException:
            left = member.group
            if queue is None:  # a writer
                state = combiner.leave(member)
                late = runtime.waiter() if state is State.LATE else None
                if late is not None:
                    rejoin(member, late)  # its group sealed: the group's end tells it its ID after all
            else:  # a reader: a message it can no longer take goes on in the background
                abandon(combiner, member, give_back)
            if left is not None and left.abandoned:
                give_up(left.owner, left)  # no caller is left: stop it as an abandoned operation is stopped
            if queue is None and (late is not None or state is State.DONE):  # it may have landed
                written = await runtime.shield_counted(self._answer_left(member, late))
                if isinstance(written, int):
                    raise runtime.outcome_unknown("after its group sealed: the write took effect", (written,)) from None
            raise
        return raise_error(answer)

    async def _answer_left(self, member: Member[Any], late: AsyncWaiter | None) -> object:
        """The answer of a writer that left after its group sealed (``late``:
        once the group ends, which needs no connection of the pool) or that
        was handed it but never took it."""
        self.obligations += 1  # close() waits for it
        try:
            return member.answer if late is None else await late.wait()
        finally:
            self.obligations -= 1

    async def _alone(self, combiner: Combiner[Any], make: Callable[[Session], Operation[T]], writes: bool = False) -> T:
        """Run a plain operation for a caller that came alone (``run_alone``);
        callers arriving meanwhile form the next group. (A claim cancelled
        while its COMMIT runs hands on after its message was given back, so
        a reader that came meanwhile gets it.)"""
        try:
            await self.turn.take(self.runtime)
            try:
                return await self.run(make, writes=writes)
            finally:
                self.turn.give()
        finally:
            combiner.hand_on()

    def _give_back_answer(self, queue: str, answer: object) -> None:
        """A group member's claimed message that its reader never took."""
        if isinstance(answer, Message):
            self.give_back(queue, [answer])


B = TypeVar("B", bound=AbstractAsyncContextManager[Any])


@asynccontextmanager
async def opened(make: Callable[[], B]) -> AsyncIterator[B]:
    """``async with`` a broker made only on entry (so inside the event
    loop: trio's broker needs its token) and opened there."""
    async with make() as broker:
        yield broker


class PooledStream(Generic[R]):
    """A stream on one connection for its life; yields ``shape(message)``.

    Close it (``await stream.aclose()``, ``async with``, or iterate to the
    end); a stream dropped without closing is closed in the background, and
    its hold on the task is released at once, so a write right after
    ``break`` proceeds (after the abandoned batch rolls back) instead of
    failing or joining it.
    """

    def __init__(
        self, engine: PooledEngine[Any], make: Callable[[Session], Stream], shape: Callable[[Message], R]
    ) -> None:
        self._engine = engine
        self._make = make
        self._shape = shape
        self._task: object | None = None
        self._connection: Any = None
        self._owned = False  # the connection came from the pool, not a transaction
        self._source: Stream | None = None
        self._batch: list[Message] = []
        self._position = 0
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> R:
        if self._position < len(self._batch):
            self._position += 1
            return self._shape(self._batch[self._position - 1])
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
        return self._shape(batch[0])

    async def _next_batch(self) -> list[Message]:
        engine = self._engine
        if self._source is None:
            self._task = engine.runtime.current_task()
            held = engine.held.get(self._task)
            self._owned = held is None
            connection = held if held is not None else await engine.runtime.acquire()
            self._connection = connection
            try:
                self._source = self._make(connection.session)
            except BaseException:  # refused arguments: nothing ran
                self._connection = None
                if self._owned:
                    engine.runtime.release(connection)
                raise
        connection = self._connection
        assert connection is not None
        self._release_hold()
        batch = await engine.run_on(connection, self._source.next_batch())
        if self._owned and connection.session.stream_holding_lock is not None:
            # This task's own writes must meet the batch's lock on this
            # connection (and fail at once), not wait for it elsewhere.
            engine.held[self._task] = connection
        return batch

    def _release_hold(self) -> None:
        connection = self._connection
        if self._owned and connection is not None and self._engine.held.get(self._task) is connection:
            del self._engine.held[self._task]

    async def aclose(self) -> None:
        """Stop: an uncommitted at-least-once batch is rolled back and delivered again."""
        if self._closed:
            return
        self._closed = True
        self._batch = []
        self._release_hold()
        engine = self._engine
        connection, source = self._connection, self._source
        if connection is None or source is None or engine.runtime.closed:
            return  # nothing ran, or the broker closed it (its batch ended with it)
        try:
            await engine.settle(connection, source.close())
        finally:
            if self._owned:
                engine.runtime.release(connection)

    def __del__(self) -> None:
        if self._closed or self._connection is None:
            return
        self._release_hold()
        closing = self.aclose()
        try:
            self._engine.runtime.in_background(closing)
        except RuntimeError:  # no running loop: the pool's close rolls back
            closing.close()
