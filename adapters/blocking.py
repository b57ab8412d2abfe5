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

__all__ = ["DEFAULT_PATH", "Broker", "CommitOutcomeUnknown", "MessageStream", "Queue", "Watch", "resolve_config"]

import os
import queue as queues
import signal
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, Generic, Protocol, Self, TypeVar

from sansio_broker import (
    BrokerClosedError,
    BrokerError,
    Config,
    Message,
    OperationCancelled,
    OutcomeUnknownError,
    TransactionError,
)
from sansio_broker.driver import BrokerCore, Operation, Session, State, Stream
from sansio_broker.validation import check_path

from ._driver import Driver
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
from ._group import (
    State as MemberState,
)
from ._ledger import NOT_LANDED, Seal, Settled, no_withdrawals
from ._sync import LOG, backend, written_ids
from ._sync_operations import MessageStream, Operations, QueueOperations, Watch
from ._waiting import CLOSED, TIMED_OUT, Listener, Waits, received

T = TypeVar("T")
IDLE = State.IDLE  # no explicit transaction, no stream batch open
R = TypeVar("R")


class Lock(Protocol):
    def acquire(self) -> bool: ...
    def release(self) -> None: ...


DEFAULT_PATH = ".broker.db"

# Connections inherited across fork(): kept referenced so they are never
# finalized (closing them in the child could drop the parent's locks).
_INHERITED: list[object] = []
_ENGINES: weakref.WeakSet[_Engine] = weakref.WeakSet()


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
    """One database connection with its driver and core session, used by one
    thread; ``lock`` is held while an operation runs on it, so ``close()``
    and ``fork()`` never touch it mid-operation."""

    __slots__ = ("closing", "driver", "engine", "lock", "main", "session", "thread")

    def __init__(self, engine: _Engine, driver: Driver, session: Session) -> None:
        self.engine = engine
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
                    raise self.engine._closed_error()
                answer = driver.run(operation, None, seal)
                if driver.in_transaction and self.unowned:
                    driver.rollback_if_open()  # its own ROLLBACK failed: nobody else would
            self.engine.news.committed(self.session)
            self.engine._housekeep()
            return answer  # type: ignore[no-any-return]
        except BaseException as exc:
            _close_quietly(operation)  # abandoned mid-way by an interrupt: nothing may run later
            if driver.runs != runs:  # else it never started, and what the driver holds is older
                self._recover(exc, answer if writes else None)
            raise

    @property
    def unowned(self) -> bool:
        """No explicit transaction or stream batch owns this connection's transaction."""
        return self.session.state is IDLE

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
                        raise self.engine._closed_error() from exc
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
        self.driver.interrupt()
        with self.lock:
            self.driver.close()

    @property
    def groupable(self) -> bool:
        """Outside a transaction and a stream batch, in a thread signals never
        reach: its calls may join a group."""
        return not self.main and self.session.state is IDLE


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

    def wait(self, timeout: float | None = None) -> object:
        """The value woken with, or :data:`~._waiting.TIMED_OUT` after ``timeout`` seconds."""
        if self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return self._value
        return TIMED_OUT


class _Engine:
    """How a :class:`Broker` runs the operations: a connection per thread,
    group commit between threads, interrupt recovery, close and fork."""

    def __init__(self, path: str, config: Config) -> None:
        self.path = path
        self.config = config
        self._backend = backend(path, config)
        self.label = self._backend.label  # names the database in errors (a URL without its password)
        self._open_driver = self._backend.open
        self._core = BrokerCore(self.config, dialect=self._backend.dialect)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[_Connection] = []
        self._opened = False
        self._vacuum_thread: threading.Thread | None = None
        self._reset_groups()
        # Set once the broker must refuse all use: it makes the error to raise.
        self._unusable: Callable[[], BrokerError] | None = None
        self._reset_waiting()
        _ENGINES.add(self)
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
            driver = self._open_driver(self.path, self.config, session, not self._opened)
            connection = _Connection(self, driver, session)
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
        return unusable() if unusable is not None else BrokerClosedError(f"the broker on {self.label} is closed")

    # ------------------------------------------------- what operations use
    def open(self) -> None:
        self._connection()

    def run(self, make: Callable[[Session], Operation[T]], writes: bool = False) -> T:
        """Run ``make(session)`` on this thread's connection (looked up once)."""
        connection = self._connection()
        return connection.run(make(connection.session), writes=writes)

    def claiming(self, make: Callable[[Session], Operation[T]], shape: Callable[[T], R]) -> R:
        return self._claiming(self._connection(), make, shape)

    def claim(self, queue: str, shape: Callable[[Message | None], R]) -> R:
        connection = self._connection()
        if connection.groupable:
            return shape(self._claim_shared(connection, queue))
        return self._claiming(connection, lambda s: s.claim(queue), shape)

    def stream(self, make: Callable[[Session], Stream], shape: Callable[[Message], R]) -> MessageStream[R]:
        connection = self._connection()
        source = make(connection.session)
        return _Stream(_iterate(connection, source, shape, claims=source.claims))

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
            self.run(lambda s: s.auto_vacuum())
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

    # ------------------------------------------------- waiting consumers
    def _reset_waiting(self) -> None:
        # Getters and listeners, under the group lock (see _waiting); hints
        # for the dispatcher thread, which claims for them (see _dispatching).
        self.waits = Waits()
        self._hints: queues.SimpleQueue[object] = queues.SimpleQueue()
        self.news = self._backend.news(self.path, self.config, self._hints.put)
        self._dispatcher: threading.Thread | None = None

    def wait_claim(self, queue: str, timeout: float | None, shape: Callable[[Message], R]) -> R | None:
        """Claim the oldest message of ``queue``, waiting in line for one (see
        ``_waiting``); ``None`` once ``timeout`` passed. The dispatcher thread
        claims and hands over; this thread only sleeps, so Ctrl-C here is safe:
        a message handed over but not yet returned goes to the next getter
        or back to pending."""
        connection = self._connection()
        self._refuse_waiting_in(connection)
        lock, waits = self._group_lock, self.waits
        with _DeferredInterrupts(), lock:
            nobody = waits.nobody_waits_on(queue)
        if nobody:  # an idle consumer that finds a message pays nothing more
            found: Message | None = None
            try:
                found = self.claim(queue, _same)
                if found is not None:
                    return shape(found)
            except BaseException as exc:  # interrupted before its caller had it
                if found is not None:
                    self._give_on(connection, queue, found, exc)
                raise
            if timeout == 0:
                return None
        waiter = _ThreadWaiter()
        member: Member[None] = Member(None, waiter)
        # No ``finally``: a line run after ``return`` could be where Ctrl-C
        # lands, and would lose the message; every way out cleans up first.
        try:
            with _DeferredInterrupts(), lock:
                if waits.closed:  # close() has woken every waiter already
                    raise BrokerClosedError(f"the broker on {self.label} is closed")
                self._listen()
                if waits.join(queue, member):  # a look after joining: nothing written meanwhile is missed
                    self._hints.put(queue)  # in the same step as the join: never one without the other
            answer = waiter.wait(timeout)
            if answer is TIMED_OUT:
                with _DeferredInterrupts(), lock:
                    state = waits.leave(queue, member)
                if state is not MemberState.DONE:
                    self._quiet_if_idle()
                    return None
                answer = member.answer  # handed over as the time ran out: take it
            result = shape(received(answer, self.label))
            self._quiet_if_idle()
            return result
        except BaseException as exc:
            with _DeferredInterrupts(), lock:
                handed = waits.leave(queue, member) is MemberState.DONE
            if handed:  # never reached its caller
                self._give_on(connection, queue, member.answer, exc)
            self._quiet_if_idle()
            raise

    def wait_first(self, queues: list[str], timeout: float | None) -> tuple[str, str] | None:
        """``broker.get``: claim from the first of ``queues`` with a message,
        looking again on every hint for them, until ``timeout`` (then ``None``).
        Like :meth:`wait_claim`, no line runs between a claim and its return
        that an interrupt could cut without the message going back."""
        connection = self._connection()
        self._refuse_waiting_in(connection)
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = Listener(frozenset(queues))
        with _DeferredInterrupts(), self._group_lock:
            if self.waits.closed:
                raise BrokerClosedError(f"the broker on {self.label} is closed")
            self.waits.listen(listener)
            self._listen()
        found: Message | None = None
        queue = ""
        try:
            while True:
                listener.hinted = False  # a change from now on makes it look again
                for queue in queues:
                    found = self.claim(queue, _same)
                    if found is not None:
                        result = queue, found.body
                        self._stop_listening(listener)
                        return result
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining == 0 or not self.wait_listener(listener, remaining):
                    self._stop_listening(listener)
                    return None
        except BaseException as exc:
            if found is not None:  # claimed, never returned
                self._give_on(connection, queue, found, exc)
            self._stop_listening(listener)
            raise

    def _stop_listening(self, listener: Listener) -> None:
        with _DeferredInterrupts(), self._group_lock:
            self.waits.stop_listening(listener)
        self._quiet_if_idle()

    @contextmanager
    def listening(self, queues: frozenset[str] | None) -> Iterator[Listener]:
        """Hear of changes to ``queues`` while inside the block (see :meth:`wait_listener`)."""
        self._refuse_waiting_in(self._connection())
        listener = Listener(queues)
        with _DeferredInterrupts(), self._group_lock:
            if self.waits.closed:
                raise BrokerClosedError(f"the broker on {self.label} is closed")
            self.waits.listen(listener)
            self._listen()
        try:
            yield listener
        finally:
            with _DeferredInterrupts(), self._group_lock:
                self.waits.stop_listening(listener)
            self._quiet_if_idle()

    def wait_listener(self, listener: Listener, timeout: float | None) -> bool:
        """Wait for a change since ``listener.hinted`` was reset; False once ``timeout`` passed."""
        waiter = _ThreadWaiter()
        with _DeferredInterrupts(), self._group_lock:
            if listener.hinted:
                return True
            if self.waits.closed:
                raise BrokerClosedError(f"the broker on {self.label} closed while waiting")
            listener.waiter = waiter
        try:
            answer = waiter.wait(timeout)
        finally:
            with _DeferredInterrupts(), self._group_lock:
                listener.waiter = None
        if answer is CLOSED:
            raise BrokerClosedError(f"the broker on {self.label} closed while waiting")
        return answer is not TIMED_OUT

    def _refuse_waiting_in(self, connection: _Connection) -> None:
        if not connection.unowned:
            raise TransactionError(
                "get() and watch() wait for other writers, who cannot write while this thread's "
                "transaction or stream batch holds the write lock: use claim() there"
            )

    def _listen(self) -> None:
        """Under the group lock: someone waits; hear of changes, run the dispatcher thread."""
        if self._dispatcher is None:
            thread = threading.Thread(target=self._dispatching, name="sansio-broker-dispatcher", daemon=True)
            thread.start()
            self._dispatcher = thread
        self.news.listen()

    def _quiet_if_idle(self) -> None:
        with _DeferredInterrupts(), self._group_lock:
            if not self.waits.waiting:
                self.news.quiet()

    def _give_on(self, connection: _Connection, queue: str, message: object, exc: BaseException) -> None:
        """A message handed to a getter that never returned it: to the next
        getter or reader of ``queue``, else pending again (however many interrupts follow)."""
        if isinstance(message, Message) and self._hand_over(queue, [message]):
            connection._steadily(lambda: connection._return([message], queue), exc, lambda: [message])

    def _hand_over(self, queue: str, messages: list[Message]) -> list[Message]:
        """Give claimed messages nobody took to callers waiting on ``queue``
        (getters first, then shared claims); returns those left over, which
        must go back to pending."""
        with _DeferredInterrupts(), self._group_lock:
            combiner = self._claims.get(queue)
            waits = self.waits
            return [
                m for m in messages if not waits.hand_over(queue, m) and (combiner is None or not combiner.hand_over(m))
            ]

    def _dispatching(self) -> None:
        """The dispatcher thread: on each hint, claim for the getters of the
        hinted queues, one transaction per queue, and hand the messages out
        oldest getter first."""
        try:
            while (item := self._hints.get()) is not _STOP:
                items = [item]
                while True:  # every hint waiting now, in one pass
                    try:
                        items.append(self._hints.get_nowait())
                    except queues.Empty:
                        break
                if _STOP in items:
                    return
                try:
                    self._serve_hints(items)
                except Exception:  # never the end of the thread: the getters would wait forever
                    LOG.exception("the dispatcher thread of the broker on %s failed to serve %r", self.label, items)
        finally:
            self._drop_thread_connection()

    def _serve_hints(self, items: list[object]) -> None:
        todo: list[str] = []
        with self._group_lock:
            for each in items:
                if isinstance(each, str):  # a getter joined: its dispatch is marked already
                    todo.append(each)
                else:
                    todo.extend(self.waits.hinted(each))  # type: ignore[arg-type]
        for name in dict.fromkeys(todo):
            self._dispatch(name)

    def _dispatch(self, queue: str) -> None:
        lock, waits = self._group_lock, self.waits
        try:
            # Taken first: close() waits for this thread before it closes
            # connections, so a give-back below still has one.
            connection = self._connection()
        except BrokerClosedError:
            return
        session = connection.session
        while True:
            with lock:
                wanted = 0 if waits.closed else waits.wait_list(queue).wanted
            claimed: list[Message] = []
            if wanted:
                try:
                    with self._group_running:  # after a running group, not in SQLite's busy handler
                        claimed = connection.run(session.claim_many(queue, wanted))
                except BrokerClosedError:
                    pass
                except Exception as exc:  # the getters it claimed for hear it, as a failed claim's callers do
                    with lock:
                        waits.fail(queue, exc, wanted)
                rest = self._hand_over(queue, claimed)
                if rest:
                    try:
                        connection.run(session.return_claims(queue, rest))
                    except Exception:
                        LOG.exception("waiting consumers of %r: could not give back %s", queue, [m.id for m in rest])
            with lock:
                if not waits.dispatch_ended(queue, len(claimed), wanted):
                    return

    def _stop_waiting(self) -> None:
        """close(): every waiter wakes ("closed"), the dispatcher and watcher threads stop."""
        with self._group_lock:
            woken = self.waits.close()
            dispatcher, self._dispatcher = self._dispatcher, None
        for waiter in woken:
            waiter.wake(CLOSED)
        self.news.close()
        if dispatcher is not None:
            self._hints.put(_STOP)
            if dispatcher is not threading.current_thread():
                dispatcher.join()

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
                self._return_claims(connection, queue, returned)
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

    def _return_claims(self, connection: _Connection, queue: str, answers: list[object]) -> None:
        """Claimed messages nobody took: to waiting readers, else pending again."""
        kept = self._hand_over(queue, [a for a in answers if isinstance(a, Message)])
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
        self.news.forget_after_fork()
        self._reset_waiting()
        for connection in inherited:
            connection.driver.forget_vacuum_lock()
        if any(c.driver.in_transaction for c in inherited):
            # SQLite keeps one lock table per process; the copy in this child
            # still shows the parent's transaction and cannot be cleared here.
            path = self.label
            self._unusable = lambda: TransactionError(
                f"this process was forked while the broker on {path} had a transaction or "
                "at-least-once stream batch open between two calls; SQLite's inherited lock state "
                "makes the file unusable in the child: fork outside transactions and streams, or use "
                "multiprocessing's 'spawn' start method"
            )

    # ------------------------------------------------------------- close
    def close(self) -> None:
        """Close every connection this broker opened (in every thread).

        Operations in flight finish first (a long statement is interrupted
        and its operation fails with :class:`BrokerClosedError`), as does a
        running auto-vacuum. Safe to call again, also after an interrupt.
        """
        path = self.label
        with self._lock:
            if self._unusable is None:
                self._unusable = lambda: BrokerClosedError(f"the broker on {path} is closed")
        self._stop_waiting()
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

    # ----------------------------------------------------------- transactions
    @contextmanager
    def transaction(self, owner: T) -> Iterator[T]:
        """This thread's operations inside the block are one transaction;
        an exception (Ctrl-C too) rolls everything back."""
        connection = self._connection()
        session = connection.session
        begin = session.begin_transaction()  # refuses a nested one before anything runs
        try:
            connection.run(begin)
            yield owner
            connection.run(session.commit_transaction())  # the last line: nothing runs after it lands
        except BaseException as exc:
            try:
                connection.abandon_transaction(exc)
            finally:
                if session.in_transaction:  # an interrupt cut the clean-up short
                    connection.abandon_transaction(None)
            raise

    def write(self, queue: str, message: str) -> int:
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


class _DeferredInterrupts:
    """Ctrl-C held back while the main thread changes the wait lists.

    Signals reach the main thread only, at any line; one landing between
    two steps of the bookkeeping (or between a lock's ``with`` body and its
    release) would leave a getter half-queued or the lock held, and every
    other waiter stuck. Inside this block SIGINT is recorded instead, and
    delivered to the handler it had once the block has ended. Other threads
    pass straight through (no signal reaches them).
    """

    __slots__ = ("_pending", "_previous")

    def __enter__(self) -> None:
        self._previous: Any = None
        self._pending = False
        # None: a handler installed outside Python, which could not be put back.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not None:
            self._previous = signal.signal(signal.SIGINT, self._defer)

    def _defer(self, signum: int, frame: object) -> None:
        self._pending = True

    def __exit__(self, *exc_info: object) -> None:
        previous = self._previous
        if previous is None:
            return
        signal.signal(signal.SIGINT, previous)
        if self._pending:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


def _same(answer: T) -> T:
    return answer


# Tells the dispatcher thread to end.
_STOP = object()


def _iterate(
    connection: _Connection, source: Stream, shape: Callable[[Message], R], *, claims: bool
) -> Generator[R, None, None]:
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
                item = shape(pending[0])  # an interrupt here finds the message still pending
                yield pending.pop(0) and item  # removed in the very step that hands it over (a Message is truthy)
    except BaseException as exc:
        if claims:
            connection.give_back(pending, exc)
        raise
    finally:
        if not connection.closing:  # else close() ended its batch with its connection
            connection.run(source.close())


class _Stream(Generic[R]):
    """A blocking stream: its iterator, closeable, and a context manager."""

    __slots__ = ("_items",)

    def __init__(self, items: Generator[R, None, None]) -> None:
        self._items = items

    def __iter__(self) -> Iterator[R]:
        # The generator itself: a for loop then runs no frame of ours between
        # its steps, where an interrupt would leave the batch open until
        # garbage collection instead of rolling it back at once.
        return self._items

    def __next__(self) -> R:
        return next(self._items)

    def close(self) -> None:
        """Stop: an uncommitted at-least-once batch is rolled back and delivered again."""
        self._items.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._items.close()


class Broker(Operations):
    """A broker on one SQLite file or PostgreSQL schema; every operation of the core, blocking.

    ``config=None`` reads ``BROKER_*`` environment variables. The file is
    created (schema v6) or checked when the broker is constructed, so a
    foreign or incompatible file fails here, with nothing written. A
    ``postgresql://`` (or ``postgres://``) URL opens that database instead,
    in the schema ``BROKER_BACKEND_SCHEMA`` (simplebroker-pg's storage).

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
        self._engine = _Engine(self.path, self.config)


class Queue(QueueOperations):
    """One queue of a :class:`Broker`, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    _broker_type = Broker


# Locks every broker holds across a fork (see _Engine._quiesce).
_FORK_HELD: list[Lock] = []


def _before_fork() -> None:
    for engine in list(_ENGINES):
        _FORK_HELD.extend(engine._quiesce())


def _after_fork_in_parent() -> None:
    while _FORK_HELD:
        _FORK_HELD.pop().release()


def _after_fork_in_child() -> None:
    _after_fork_in_parent()  # this thread took them: the only thread here
    for engine in list(_ENGINES):
        engine._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
