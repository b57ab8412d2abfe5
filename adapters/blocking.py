"""The blocking adapter: the core driven on the standard ``sqlite3`` module.

Each thread gets its own connection (and core session), so a ``Broker`` is
safe to share between threads. After ``fork()`` the child opens fresh
connections and never touches the parent's.

    with Broker("app.db") as broker:
        queue = Queue("tasks", broker)
        queue.write("hello")
        print(queue.read())
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal, Protocol, TypeVar, overload

from sansio_broker import BrokerClosedError, BrokerCore, BrokerError, Config, Message, QueueStats, Session
from sansio_broker.commands import Operation
from sansio_broker.errors import OperationCancelled, OutcomeUnknownError, TransactionError
from sansio_broker.streams import Stream, open_stream
from sansio_broker.validation import check_broker, check_path, check_queue_name

from ._group import (
    LEAD,
    Combiner,
    Member,
    abandon,
    claim_group,
    keep_write,
    new_combiner,
    raise_error,
    settle,
    wake,
    write_group,
)
from ._sync import LOG, NOT_LANDED, Seal, Settled, SyncDriver, no_withdrawals, open_driver, written_ids

T = TypeVar("T")
R = TypeVar("R")


class Lock(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...


DEFAULT_PATH = ".broker.db"

# Connections inherited across fork(): kept referenced so they are never
# finalized (closing them in the child could drop the parent's locks).
_INHERITED: list[object] = []
_BROKERS: weakref.WeakSet[Broker] = weakref.WeakSet()


def resolve_config(config: Config | Mapping[str, Any] | None) -> Config:
    """``None`` reads ``BROKER_*`` from the environment (other keys ignored);
    an explicit mapping is parsed strictly, so a misspelt key is refused."""
    if isinstance(config, Config):
        return config
    if config is None:
        return Config.from_mapping(os.environ)
    return Config.from_mapping(config, strict=True)


class CommitOutcomeUnknown(OutcomeUnknownError, KeyboardInterrupt):
    """Interrupted (Ctrl-C) once its COMMIT had landed: the change took
    effect, but its answer never reached the caller. ``message_ids`` names
    the messages written, where known. A ``KeyboardInterrupt``, so the
    program still stops."""


class _Connection:
    """One sqlite3 connection with its driver and core session, used by one
    thread; ``lock`` is held while an operation runs on it, so ``close()``
    and ``fork()`` never touch it mid-operation."""

    __slots__ = ("broker", "closing", "driver", "lock", "main", "session", "thread")

    def __init__(self, broker: Broker, driver: SyncDriver, session: Session) -> None:
        self.broker = broker
        self.driver = driver
        self.session = session
        # Reentrant: a fork() from inside this thread's own operation (a
        # callback, a signal handler) must not wait for itself.
        self.lock = threading.RLock()
        self.closing = False
        self.thread = threading.current_thread()
        # Signals reach the main thread only: it never waits in a group, so
        # an interrupt never lands in another thread's bookkeeping.
        self.main = self.thread is threading.main_thread()

    def run(self, operation: Operation[T], seal: Seal = no_withdrawals, writes: bool = False) -> T:
        """Run ``operation``; whatever ends it early, leave nothing behind.

        A transaction left open is rolled back; messages whose claim
        committed go back to pending; a change that landed is reported as
        such (:class:`CommitOutcomeUnknown`), never as a plain failure,
        naming the IDs when ``writes`` says the answer is written IDs.
        """
        driver = self.driver
        runs = driver.runs
        answer: Any = None
        try:
            with self.lock:
                if self.closing:
                    raise self.broker._closed_error()
                answer = driver.run(operation, None, seal)
                if driver.connection.in_transaction and self.unowned:
                    driver.rollback_if_open()  # its own ROLLBACK failed: nobody else would
            self.broker._housekeep()
            return answer  # type: ignore[no-any-return]
        except BaseException as exc:
            _close_quietly(operation)  # abandoned mid-way by an interrupt: nothing may run later
            if driver.runs != runs:  # else it never started, and what the driver holds is older
                self._recover(exc, answer if writes else None)
            raise

    @property
    def unowned(self) -> bool:
        """No explicit transaction or stream batch owns this connection's transaction."""
        session = self.session
        return not session.in_transaction and session.stream_holding_lock is None

    def _recover(self, exc: BaseException, answer: object) -> None:
        if isinstance(exc, BrokerClosedError) or not self.unowned:
            return  # closed with its connection, or the transaction's or stream's owner rolls back
        found: list[Settled] = []

        def settle() -> None:
            if not found:
                found.append(self.driver.settle())
            if found[0].claimed:
                self._return(found[0].claimed, found[0].queue)

        self._steadily(settle, exc, lambda: found[0].claimed or [] if found else [])
        settled = found[0] if found else NOT_LANDED
        if not settled.landed or settled.claimed is not None:
            return
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, OutcomeUnknownError):
            ids = written_ids(answer)
            raise CommitOutcomeUnknown("interrupted after its COMMIT landed: the change took effect", ids) from exc

    def give_back(self, messages: list[Message], exc: BaseException) -> None:
        """Messages claimed for a caller who never received them: pending again."""
        if messages and self.unowned:
            self._steadily(lambda: self._return(messages, self.driver.claim_queue), exc, lambda: messages)

    def give_back_last(self, exc: BaseException) -> None:
        """The last operation's committed claims, which never reached the caller."""
        messages = self.driver.committed_claims()
        self.give_back(messages, exc)

    def abandon_transaction(self, exc: BaseException | None) -> None:
        """Roll back an explicit transaction left by an exception, however many interrupts follow."""
        if not self.closing:  # else closing the connection ended it
            self._steadily(lambda: self.driver.run(self.session.reset()), exc, list)

    def _return(self, messages: list[Message], queue: str) -> None:
        self.driver.run(self.session.return_claims(queue, messages))  # an upsert: safe to repeat

    def _steadily(
        self, step: Callable[[], None], exc: BaseException | None, claimed: Callable[[], list[Message]]
    ) -> None:
        """Run an idempotent clean-up ``step`` under the lock to its end,
        again if another interrupt (Ctrl-C pressed twice) cuts it short.
        If it cannot, the caller hears which ``claimed`` messages are stuck."""
        for _ in range(RECOVERY_ATTEMPTS):
            try:
                with self.lock:
                    if self.closing:
                        raise self.broker._closed_error() from exc
                    step()
                return
            except BrokerClosedError:
                raise
            except Exception as failed:
                ids = tuple(m.id for m in claimed())
                LOG.error("could not restore claimed messages %s after %r: %r", ids, exc, failed)
                raise OutcomeUnknownError(f"{exc!r}, then the clean-up failed: {failed!r}", ids) from failed
            except BaseException:
                continue
        ids = tuple(m.id for m in claimed())
        LOG.error("gave up restoring claimed messages %s after %d interrupts", ids, RECOVERY_ATTEMPTS)
        raise OutcomeUnknownError(
            f"{exc!r}, then interrupted {RECOVERY_ATTEMPTS} times while cleaning up", ids
        ) from exc

    def close(self) -> None:
        """Close once no operation runs here; a long statement is cut short."""
        self.closing = True
        self.driver.connection.interrupt()
        with self.lock:
            self.driver.close()

    @property
    def groupable(self) -> bool:
        """Outside a transaction and a stream batch, in a thread signals never
        reach: its calls may join a group."""
        session = self.session
        return not self.main and not session.in_transaction and session.stream_holding_lock is None


def _close_quietly(operation: Operation[Any]) -> None:
    try:
        operation.close()
    except Exception:  # an operation that yields on GeneratorExit: a bug, but not the caller's
        LOG.exception("an abandoned operation did not close cleanly")


# Interrupts a clean-up absorbs before it gives up (Ctrl-C held down).
RECOVERY_ATTEMPTS = 50

# How long a leader waits for the threads of its last group to come back.
GATHER_SECONDS = 0.001


class _ThreadWaiter:
    """A group member's wait in a thread: a lock taken twice (cheaper than an Event)."""

    __slots__ = ("_lock", "_value", "left")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: object = None
        self.left = False

    def wake(self, value: object) -> bool:
        if self.left:
            return False
        self._value = value
        self._lock.release()
        return True

    def wait(self) -> object:
        self._lock.acquire()
        return self._value


class Broker:
    """A broker on one SQLite file; every operation of the core, blocking.

    ``config=None`` reads ``BROKER_*`` environment variables. The file is
    created (schema v6) or checked when the broker is constructed, so a
    foreign or incompatible file fails here, with nothing written.

    Safe to share between threads (each gets its own connection, closed once
    the thread has ended) and across ``fork()``. ``close()`` waits for the
    operations in flight. An interrupt (Ctrl-C) at any point leaves the
    broker usable, and never strands a claimed message.
    """

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_PATH, *, config: Config | Mapping[str, Any] | None = None
    ) -> None:
        self.path = check_path(path)  # "" and ":memory:" name no file: refused here
        self.config = resolve_config(config)
        self._core = BrokerCore(self.config)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[_Connection] = []
        self._opened = False
        self._vacuum_thread: threading.Thread | None = None
        self._reset_groups()
        # Set once the broker must refuse all use: it makes the error to raise.
        self._unusable: Callable[[], BrokerError] | None = None
        _BROKERS.add(self)
        self._connection()

    # ----------------------------------------------------------- connections
    def _connection(self) -> _Connection:
        if self._unusable is not None:
            raise self._unusable()
        try:
            return self._local.connection  # type: ignore[no-any-return]
        except AttributeError:
            return self._new_connection()

    def _new_connection(self) -> _Connection:
        # Under the broker's lock: fork() takes it first, so no connection
        # is half-open when the process forks.
        with self._lock:
            if self._unusable is not None:
                raise self._unusable()
            self._close_orphans()
            session = self._core.session()
            connection = _Connection(self, open_driver(self.path, self.config, session, not self._opened), session)
            self._opened = True
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _close_orphans(self) -> None:
        """Close the connections of threads that have ended (under ``_lock``),
        so descriptors stay proportional to the threads alive."""
        ended = [c for c in self._connections if not c.thread.is_alive()]
        for connection in ended:
            self._connections.remove(connection)
            connection.close()

    def _closed_error(self) -> BrokerError:
        unusable = self._unusable
        return unusable() if unusable is not None else BrokerClosedError(f"the broker on {self.path} is closed")

    def _run(self, make: Callable[[Session], Operation[T]]) -> T:
        """Run ``make(session)`` on this thread's connection (looked up once)."""
        connection = self._connection()
        return connection.run(make(connection.session))

    def _claiming(self, connection: _Connection, make: Callable[[Session], Operation[T]], shape: Callable[[T], R]) -> R:
        """Run a claim and hand over ``shape(answer)``; if the caller is
        interrupted before it has it, the claimed messages go back."""
        runs = connection.driver.runs
        try:
            return shape(connection.run(make(connection.session)))
        except BaseException as exc:
            if connection.driver.runs != runs:  # else the claim never ran
                connection.give_back_last(exc)
            raise

    # ------------------------------------------------------------ housekeeping
    def _housekeep(self) -> None:
        """Start an auto-vacuum check in a thread of its own when one is due:
        housekeeping never runs inside a caller's operation."""
        if not self._core.take_auto_vacuum():
            return
        try:
            thread = threading.Thread(target=self._auto_vacuum, name="sansio-broker-vacuum", daemon=True)
            thread.start()
            self._vacuum_thread = thread
        except Exception:
            self._core.auto_vacuum_ended()
            LOG.warning("could not start the auto-vacuum thread", exc_info=True)

    def _auto_vacuum(self) -> None:
        try:
            self._run(lambda s: s.auto_vacuum())
        except BrokerClosedError:
            pass
        except Exception:
            LOG.warning("auto-vacuum of %s failed", self.path, exc_info=True)
        finally:
            self._core.auto_vacuum_ended()
            self._drop_thread_connection()

    def wait_background(self) -> None:
        """Wait for housekeeping under way (an auto-vacuum check) to end,
        for example before inspecting the file in a test."""
        vacuum = self._vacuum_thread
        if vacuum is not None and vacuum is not threading.current_thread():
            vacuum.join()

    def _drop_thread_connection(self) -> None:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            return
        del self._local.connection
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
                connection.close()

    # ------------------------------------------------------------ groups
    def _reset_groups(self) -> None:
        # Group commit: every write waiting at one moment; shared claims per queue.
        self._group_lock = threading.Lock()
        # Held while a group runs: groups of this broker run one at a time,
        # and never meet each other in SQLite's busy handler.
        self._group_running = threading.Lock()
        # A leader gathering its group sleeps on this lock, released by the
        # thread whose arrival completes it (lighter than a Condition).
        self._gate = threading.Lock()
        self._gate.acquire()
        self._gathering: Combiner[Any] | None = None
        self._writes: Combiner[tuple[str, str]] = Combiner()
        self._claims: dict[str, Combiner[None]] = {}

    def _run_alone(self, combiner: Combiner[Any]) -> bool:
        """Whether this thread, alone lately, may run its plain operation now;
        if so it must call :meth:`_hand_on` after. Threads arriving meanwhile
        wait for the next group."""
        with self._group_lock:
            return combiner.run_alone()

    def _hand_on(self, combiner: Combiner[Any]) -> None:
        with self._group_lock:
            combiner.hand_on()

    def _in_group(
        self,
        connection: _Connection,
        combiner: Combiner[Any],
        item: object,
        make: Callable[[Session, list[Any]], Operation[list[Any]]],
        queue: str | None = None,
    ) -> Any:
        """This thread's part of a group operation (see ``_group``); its answer.

        The first thread leads: it runs the group on its own connection.
        Threads arriving meanwhile wait; the first of them leads the next
        group, which runs as soon as this one has committed. Only threads
        other than the main one get here, and signals never reach them.
        """
        lock = self._group_lock
        returned: list[object] = []
        give_back = keep_write if queue is None else returned.append
        waiter = _ThreadWaiter()
        member: Member[Any] = Member(item, waiter)
        try:
            with lock:
                lead = combiner.join(member)
                if not lead and self._gathering is combiner and combiner.gathered:
                    self._gathering = None
                    self._gate.release()
            if not lead and waiter.wait() is not LEAD:
                return raise_error(member.answer)
            # A pipeline: while the previous group runs, this leader waits
            # here and the callers arriving meanwhile join its group.
            with self._group_running:
                self._gather(combiner)
                with lock:
                    group = combiner.take(member)
                    combiner.hand_on()  # whoever comes now leads the next group
                operation = make(connection.session, group.items)
                interrupted: BaseException | None = None
                try:
                    answers, error = connection.run(operation, group.seal), None
                except Exception as exc:
                    answers, error = None, exc
                except BaseException as exc:  # not expected here; the others must not wait forever
                    answers, error, interrupted = None, OperationCancelled(f"{exc!r} in the thread running it"), exc
            with lock:
                answered = settle(group, answers, error, give_back)
            wake(answered)  # outside the lock, which the woken threads need next
            if interrupted is not None:
                raise interrupted
        except BaseException:  # never leave a member behind
            waiter.left = True
            with lock:
                landed = abandon(combiner, member, give_back)
            if landed and queue is None:
                raise OutcomeUnknownError(
                    "interrupted after its group commit sealed: the write may have landed"
                ) from None
            raise
        finally:
            if returned and queue is not None:
                self._return_claims(connection, queue, combiner, returned)
        return raise_error(member.answer)

    def _gather(self, combiner: Combiner[Any]) -> None:
        """Wait briefly for the threads of the last group, on their way back
        (each needs the GIL), so they join this group rather than the next."""
        with self._group_lock:
            if not combiner.busy or combiner.gathered:
                return
            self._gathering = combiner
        if not self._gate.acquire(timeout=GATHER_SECONDS):
            with self._group_lock:
                if self._gathering is None:  # released just after the timeout
                    self._gate.acquire()
                self._gathering = None

    def _return_claims(
        self, connection: _Connection, queue: str, combiner: Combiner[None], answers: list[object]
    ) -> None:
        """Claimed messages nobody took: to waiting readers, else pending again."""
        with self._group_lock:
            kept = [a for a in answers if isinstance(a, Message) and not combiner.hand_over(a)]
        if kept:
            connection.run(connection.session.return_claims(queue, kept))

    # ------------------------------------------------------------- fork
    def _quiesce(self) -> list[Lock]:
        """Before ``fork()``: wait until no connection of this broker is being
        opened or runs an operation, and keep it so; returns the locks held."""
        held: list[Lock] = [self._lock]
        self._lock.acquire()
        for connection in self._connections:
            connection.lock.acquire()
            held.append(connection.lock)
        return held

    def _forget_after_fork(self) -> None:
        """In a forked child: never touch the parent's connections again.

        They stay referenced (finalizing them could disturb the parent's
        file state); their vacuum-lock descriptors are closed so a lock the
        parent holds is released when the parent releases it. No operation
        was running on any of them (:meth:`_quiesce`).
        """
        inherited, self._connections = self._connections, []
        _INHERITED.extend(inherited)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._vacuum_thread = None
        self._core.auto_vacuum_ended()  # a check running in the parent does not exist here
        self._reset_groups()  # threads waiting in the parent do not exist here
        for connection in inherited:
            connection.driver.forget_vacuum_lock()
        if any(c.driver.connection.in_transaction for c in inherited):
            # SQLite keeps one lock table per process; the copy in this child
            # still shows the parent's transaction and cannot be cleared here.
            path = self.path
            self._unusable = lambda: TransactionError(
                f"this process was forked while the broker on {path} had a transaction or "
                "at-least-once stream batch open between two calls; SQLite's inherited lock state "
                "makes the file unusable in the child: fork outside transactions and streams, or use "
                "multiprocessing's 'spawn' start method"
            )

    # ------------------------------------------------------------- close
    def close(self) -> None:
        """Close every connection this broker opened (in every thread).

        Later calls, in any thread, raise :class:`BrokerClosedError`.
        Operations in flight finish first (a long statement is interrupted
        and its operation fails with :class:`BrokerClosedError`), as does a
        running auto-vacuum. Safe to call again, also after an interrupt.
        """
        path = self.path
        with self._lock:
            if self._unusable is None:
                self._unusable = lambda: BrokerClosedError(f"the broker on {path} is closed")
        self.wait_background()
        while True:
            with self._lock:
                if not self._connections:
                    break
                connection = self._connections[-1]
            connection.close()  # outside the broker's lock: it waits for the operation
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
        self._local = threading.local()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------- transactions
    @contextmanager
    def transaction(self) -> Iterator[Broker]:
        """Make the operations inside commit or roll back together.

        Claims, writes and moves this thread makes inside the block are one
        ``BEGIN IMMEDIATE`` transaction: "take a message, write the result
        elsewhere" is atomic. An exception (Ctrl-C too) rolls everything back.
        """
        connection = self._connection()
        session = connection.session
        begin = session.begin_transaction()  # refuses a nested one before anything runs
        try:
            connection.run(begin)
            yield self
            connection.run(session.commit_transaction())  # the last line: nothing runs after it lands
        except BaseException as exc:
            try:
                connection.abandon_transaction(exc)
            finally:
                if session.in_transaction:  # an interrupt cut the clean-up short
                    connection.abandon_transaction(None)
            raise

    # ---------------------------------------------------------------- writes
    def write(self, queue: str, message: str) -> int:
        """Append ``message`` to ``queue``; returns its ID once committed.

        Writes of other threads waiting at the same moment share its
        transaction (group commit); each gets its own ID, in arrival order.
        """
        connection = self._connection()
        if not connection.groupable:
            return connection.run(connection.session.write(queue, message), writes=True)
        writes = self._writes
        if self._run_alone(writes):
            try:
                return connection.run(connection.session.write(queue, message), writes=True)
            finally:
                self._hand_on(writes)
        written: int = self._in_group(connection, writes, self._core.check_write(queue, message), write_group)
        return written

    def _claim_shared(self, connection: _Connection, queue: str) -> Message | None:
        self._core.plain_claim(queue)  # validates the name before anything waits
        with self._group_lock:
            combiner = self._claims.get(queue)
            if combiner is None:
                combiner = self._claims[queue] = new_combiner(self._claims)
            alone = combiner.run_alone()
        if alone:
            try:
                return connection.run(connection.session.claim(queue))
            finally:
                self._hand_on(combiner)
        claimed: Message | None = self._in_group(connection, combiner, None, partial(claim_group, queue), queue)
        return claimed

    def write_many(self, queue: str, messages: Iterable[str]) -> list[int]:
        """Append messages in order in one transaction; returns their IDs."""
        connection = self._connection()
        return connection.run(connection.session.write_many(queue, messages), writes=True)

    def broadcast(self, message: str, *, pattern: str | None = None) -> int:
        """Write to every existing queue (or those matching the glob); returns how many."""
        return self._run(lambda s: s.broadcast(message, pattern=pattern))

    # ---------------------------------------------------------------- claims
    def claim(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> Message | None:
        """Claim the oldest pending message (or the one with ``message_id``).

        Plain claims of threads waiting on the same queue at the same moment
        share one transaction, each getting a distinct message.
        """
        connection = self._connection()
        if message_id is None and after_timestamp is None and before_timestamp is None and connection.groupable:
            return self._claim_shared(connection, queue)
        return connection.run(
            connection.session.claim(queue, message_id=message_id, after=after_timestamp, before=before_timestamp)
        )

    def claim_many(
        self, queue: str, limit: int, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim up to ``limit`` messages in one transaction."""
        return self._run(lambda s: s.claim_many(queue, limit, after=after_timestamp, before=before_timestamp))

    def claim_all(
        self, queue: str, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim every pending message in one transaction (all returned, or none claimed)."""
        return self._run(lambda s: s.claim_all(queue, after=after_timestamp, before=before_timestamp))

    # ----------------------------------------------------------------- peeks
    def peek(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> Message | None:
        """The oldest pending message (or one by ID), not claimed."""
        return self._run(
            lambda s: s.peek(
                queue,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
            )
        )

    def peek_many(
        self,
        queue: str,
        limit: int,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> list[Message]:
        """Up to ``limit`` oldest messages, not claimed."""
        return self._run(
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
    ) -> Iterator[Message]:
        """Every message of ``queue``, oldest first, as an iterator.

        ``commit_interval=1`` claims exactly once, one transaction per
        message. ``commit_interval=N>1`` claims batches of N at least once:
        a batch commits when the next one is asked for and is rolled back
        (delivered again) if the iterator is closed early. Close it (or use
        it in a ``for`` loop over a temporary) to release the write lock.
        ``peek=True`` pages through without claiming.
        """
        connection = self._connection()
        source = open_stream(
            connection.session,
            queue,
            peek=peek,
            commit_interval=commit_interval,
            after=after_timestamp,
            before=before_timestamp,
            include_claimed=include_claimed,
        )
        return _iterate(connection, source, claims=not peek)

    # ----------------------------------------------------------------- moves
    def move(
        self,
        source: str,
        destination: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool | None = None,
    ) -> Message | None:
        """Move the oldest pending message (or one by ID, even if claimed)."""
        return self._run(
            lambda s: s.move(
                source,
                destination,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                require_unclaimed=require_unclaimed,
            )
        )

    def move_many(
        self,
        source: str,
        destination: str,
        limit: int,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
    ) -> list[Message]:
        """Move up to ``limit`` pending messages in one transaction."""
        return self._run(
            lambda s: s.move_many(source, destination, limit, after=after_timestamp, before=before_timestamp)
        )

    def move_all(
        self, source: str, destination: str, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> int:
        """Move every pending message; returns how many moved."""
        return self._run(lambda s: s.move_all(source, destination, after=after_timestamp, before=before_timestamp))

    # ---------------------------------------------------------------- delete
    def delete(self, queue: str | None = None) -> int:
        """Delete a queue's messages, or every queue's when ``queue`` is None."""
        return self._run(lambda s: s.delete_all() if queue is None else s.delete_queue(queue))

    def delete_messages(self, queue: str, message_ids: Iterable[int | str]) -> int:
        """Delete messages of ``queue`` by ID; returns how many existed."""
        return self._run(lambda s: s.delete_messages(queue, message_ids))

    # ------------------------------------------------------------ inspection
    def list_queues(self) -> list[str]:
        return self._run(lambda s: s.list_queues())

    def get_queue_stats(self) -> list[QueueStats]:
        """``(queue, pending, total)`` for every queue."""
        return self._run(lambda s: s.all_queue_stats())

    def queue_stats(self, queue: str) -> QueueStats:
        return self._run(lambda s: s.queue_stats(queue))

    def queue_exists(self, queue: str) -> bool:
        return self._run(lambda s: s.queue_exists(queue))

    def vacuum(self, *, compact: bool = False) -> int:
        """Remove claimed rows now; returns how many (0 if another process is vacuuming)."""
        return self._run(lambda s: s.vacuum(compact=compact))

    # ------------------------------------------- the async example's shapes
    def read(
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
        return self._read(queue, peek, all_messages, exact_timestamp, after_timestamp, before_timestamp, _as_list)

    def _read(
        self,
        queue: str,
        peek: bool,
        all_messages: bool,
        message_id: int | str | None,
        after: int | None,
        before: int | None,
        shape: Callable[[Any], R],
    ) -> R:
        """``shape`` turns the answer (one message or ``None``, or bodies) into the caller's."""
        connection = self._connection()
        if message_id is None and after is None and before is None and not peek and not all_messages:
            if connection.groupable:
                return shape(self._claim_shared(connection, queue))
            return self._claiming(connection, lambda s: s.claim(queue), shape)
        return self._claiming(
            connection,
            lambda s: s.read_bodies(
                queue, peek=peek, all_messages=all_messages, message_id=message_id, after=after, before=before
            ),
            shape,
        )

    def stream_read(
        self,
        queue: str,
        peek: bool = False,
        all_messages: bool = False,
        exact_timestamp: int | str | None = None,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
    ) -> Iterator[str]:
        """Bodies, as the original async example's ``stream_read`` yields them."""
        connection = self._connection()
        source = open_stream(
            connection.session,
            queue,
            peek=peek,
            all_messages=all_messages,
            commit_interval=commit_interval,
            message_id=exact_timestamp,
            after=after_timestamp,
        )
        return _iterate(connection, source, claims=not peek, bodies=True)


def _iterate(connection: _Connection, source: Stream, *, claims: bool, bodies: bool = False) -> Iterator[Any]:
    """Hand out a stream's batches; closing the iterator closes the stream.

    A message leaves ``pending`` in the very step that hands it over, so an
    interrupt anywhere else finds exactly the claimed messages nobody has
    received, and gives them back (an at-least-once batch rolls back instead).
    """
    pending: list[Message] = []
    try:
        while True:
            pending = connection.run(source.next_batch())
            if not pending:
                return
            while pending:
                yield pending.pop(0).body if bodies else pending.pop(0)
    except BaseException as exc:
        if claims:
            connection.give_back(pending, exc)
        raise
    finally:
        if not connection.closing:  # else close() ended its batch with its connection
            connection.run(source.close())


def _as_list(answer: Message | list[str] | None) -> list[str]:
    """``Broker.read``'s shape: a list of bodies."""
    if isinstance(answer, list):
        return answer
    return [] if answer is None else [answer.body]


def _first_body(answer: Message | list[str] | None) -> str | None:
    """``Queue.read``'s shape: one body, or ``None``."""
    if isinstance(answer, list):
        return answer[0] if answer else None
    return None if answer is None else answer.body


def _bodies(messages: list[Message]) -> list[str]:
    return [m.body for m in messages]


class Queue:
    """One queue of a :class:`Broker`, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    def __init__(self, name: str, broker: Broker) -> None:
        self.name = check_queue_name(name)
        self.broker = check_broker(broker, Broker, "Queue")  # a path here fails now, not at the first call

    def write(self, message: str) -> int:
        return self.broker.write(self.name, message)

    def write_many(self, messages: Iterable[str]) -> list[int]:
        return self.broker.write_many(self.name, messages)

    @overload
    def read(
        self,
        *,
        peek: bool = ...,
        all_messages: Literal[False] = ...,
        message_id: int | str | None = ...,
        after_timestamp: int | None = ...,
        before_timestamp: int | None = ...,
    ) -> str | None: ...
    @overload
    def read(
        self,
        *,
        peek: bool = ...,
        all_messages: Literal[True],
        message_id: None = ...,
        after_timestamp: int | None = ...,
        before_timestamp: int | None = ...,
    ) -> list[str]: ...
    def read(
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
        shape = _as_list if all_messages else _first_body
        return self.broker._read(self.name, peek, all_messages, message_id, after_timestamp, before_timestamp, shape)

    def read_all(self, *, peek: bool = False) -> list[str]:
        return self.read(peek=peek, all_messages=True)

    def stream(
        self,
        *,
        peek: bool = False,
        all_messages: bool = True,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
    ) -> Iterator[str]:
        """Bodies until the queue is empty (``all_messages=False``: at most one).

        ``commit_interval > 1`` is at-least-once: see :meth:`Broker.stream`.
        """
        return self.broker.stream_read(
            self.name,
            peek=peek,
            all_messages=all_messages,
            commit_interval=commit_interval,
            after_timestamp=after_timestamp,
        )

    def claim(self, *, message_id: int | str | None = None) -> Message | None:
        return self.broker.claim(self.name, message_id=message_id)

    def claim_many(self, limit: int) -> list[Message]:
        return self.broker.claim_many(self.name, limit)

    def read_many(self, limit: int) -> list[str]:
        """Up to ``limit`` oldest bodies, claimed in one transaction (SimpleBroker's ``read_many``)."""
        broker = self.broker
        return broker._claiming(broker._connection(), lambda s: s.claim_many(self.name, limit), _bodies)

    def peek(self, *, message_id: int | str | None = None, include_claimed: bool = False) -> Message | None:
        return self.broker.peek(self.name, message_id=message_id, include_claimed=include_claimed)

    def peek_many(self, limit: int, *, include_claimed: bool = False) -> list[Message]:
        return self.broker.peek_many(self.name, limit, include_claimed=include_claimed)

    def messages(self, *, peek: bool = False, commit_interval: int = 1) -> Iterator[Message]:
        """Like :meth:`stream`, with IDs."""
        return self.broker.stream(self.name, peek=peek, commit_interval=commit_interval)

    def size(self) -> int:
        """Pending (unclaimed) messages."""
        return self.broker.queue_stats(self.name).pending

    def stats(self) -> QueueStats:
        return self.broker.queue_stats(self.name)

    def exists(self) -> bool:
        return self.broker.queue_exists(self.name)

    def move_to(self, destination: str, *, message_id: int | str | None = None) -> Message | None:
        """Move the oldest pending message, or the one with ``message_id``."""
        return self.broker.move(self.name, destination, message_id=message_id)

    def move_many(self, destination: str, limit: int) -> list[Message]:
        return self.broker.move_many(self.name, destination, limit)

    def move_all(self, destination: str) -> int:
        return self.broker.move_all(self.name, destination)

    def delete(self, *, message_id: int | str | None = None) -> bool:
        """Delete the whole queue, or one message; True if anything was deleted."""
        if message_id is None:
            return self.broker.delete(self.name) > 0
        return self.broker.delete_messages(self.name, [message_id]) > 0


# Locks every broker holds across a fork (see Broker._quiesce).
_FORK_HELD: list[Lock] = []


def _before_fork() -> None:
    for broker in list(_BROKERS):
        _FORK_HELD.extend(broker._quiesce())


def _after_fork_in_parent() -> None:
    while _FORK_HELD:
        _FORK_HELD.pop().release()


def _after_fork_in_child() -> None:
    _after_fork_in_parent()  # this thread took them: the only thread here
    for broker in list(_BROKERS):
        broker._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
