"""The broker's decisions, as generators of commands.

:class:`BrokerCore` holds what every connection of one broker shares (the
configuration, the cached ID high-water mark, the auto-vacuum counter).
:class:`Session` belongs to one database connection: it knows whether that
connection is inside an explicit transaction or an open stream batch, and
every broker operation is one of its methods returning an
:data:`~sansio_broker.commands.Operation`.

Arguments are validated when the method is called, before any command exists,
so bad input can never reach the database.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Any, TypeVar

from . import aliases, schema, timestamps
from .commands import (
    COMMIT,
    READ_CLOCK,
    ROLLBACK,
    SEAL_GROUP,
    Begin,
    Command,
    Execute,
    ExecuteMany,
    Fetch,
    Operation,
    Sleep,
)
from .config import Config
from .dialect import Dialect
from .errors import (
    BusyError,
    DatabaseError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    OperationCancelled,
    TimestampError,
)
from .sqlite import SQLITE
from .states import HOLDING_BATCH, IDLE, IN_TRANSACTION, Event, State, transition
from .types import BrokerStatus, Message, QueueStats, RenameResult
from .validation import (
    check_bodies,
    check_body,
    check_id_list,
    check_keep_newest,
    check_message_id,
    check_needle,
    check_order,
    check_positive,
    check_queue_name,
    check_search_limit,
    check_selection,
)

T = TypeVar("T")

# Vacuum runs whatever the threshold once this many rows are claimed (SimpleBroker's rule).
VACUUM_CLAIMED_CEILING = 10_000
# Waiting for the ID clock to pass a future last_ts gives up after this long.
MAX_CLOCK_WAIT_NS = 5_000_000_000
# Distinct queue names whose plain claim statement is kept ready.
PLAIN_CLAIM_CACHE_SIZE = 1024
# Rows per ExecuteMany of a batch write: the first chunk, doubling up to the
# largest. Few coarse commands for a big batch, yet a batch cancelled early
# stops soon (between two commands) even when each row is slow (triggers).
INSERT_CHUNK_ROWS = 25
MAX_INSERT_CHUNK_ROWS = 800
# Compare-and-advance of meta.last_ts: attempts before giving up (SimpleBroker: 6).
ADVANCE_ATTEMPTS = 6

WriteOutcome = int | None | Exception
"""A group write's answer for one caller: its ID, ``None`` (withdrew in
time, nothing written) or the error its own write alone raised."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off for transactions that find the database locked.

    The database already waits ``busy_timeout`` inside each attempt; these sleeps
    come on top, between attempts, outside any transaction.
    """

    attempts: int = 8
    first_delay: float = 0.05
    max_delay: float = 0.25

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 1)))


class BrokerCore:
    """State shared by every connection of one broker.

    Adapters run operations of several connections on several threads at
    once (callers' threads, aiosqlite's and trio's worker threads), so each
    piece of shared state is safe for that, by one of three rules:

    * ``last_id`` (the ID high-water mark, a hint: meta.last_ts is the
      authority) is read and written only by ID allocation, inside a write
      transaction: the database's write lock makes connections take turns on it.
    * The plain-claim cache and :mod:`~sansio_broker.validation`'s known
      names are filled with single dict/set operations and never cleared in
      place: a lost or duplicate insert only rebuilds a value.
    * The mutation count ticks an ``itertools.count`` (one atomic step per
      mutation, in C): no count is lost and nothing is ever locked, so an
      interrupt landing anywhere can neither lose a count nor leave a lock
      held. Who runs the auto-vacuum check is decided by popping a single
      token from a list (atomic too); ``next_vacuum_check``, the count's
      baseline and ``last_vacuum_error`` are written only by its holder.

    Everything else a connection needs (transaction, stream batch) is its
    :class:`Session`'s, used by one operation at a time.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        dialect: Dialect = SQLITE,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.config = config if config is not None else Config()
        self.dialect = dialect
        self.begin_write = Begin(dialect.BEGIN_WRITE)
        # Config.relaxed_order: claims and moves pass over rows others hold.
        self.skip_locked = self.config.relaxed_order
        self.retry = retry
        # A hint only: the compare-and-advance on meta.last_ts is the authority.
        # Touched only inside write transactions (see the class docstring).
        self.last_id = 0
        self._ticks = itertools.count()  # one step per committed mutation
        self._baseline = 0  # the count at the last auto-vacuum check
        # Set when a count reached the next check, so the usual answer of
        # take_auto_vacuum ("not due") reads one attribute.
        self._maybe_due = False
        # Mutations before the next auto-vacuum check: the interval, or more
        # when the last check showed vacuum cannot be due sooner (a big table).
        self.next_vacuum_check = self.config.auto_vacuum_interval
        self.last_vacuum_error: BaseException | None = None
        self._check_token = [True]  # popped by the one caller that runs the check
        self._plain_claims: dict[str, Execute] = {}

    def plain_claim(self, queue: str) -> Execute:
        """The statement claiming the oldest pending message of ``queue``.

        Built once per queue name (the hot path of every reader); the cache
        is bounded so a program cycling through endless names cannot grow it.
        """
        statement = self._plain_claims.get(queue) if isinstance(queue, str) else None
        if statement is None:
            check_queue_name(queue)
            where = self.dialect.where(by_id=False, unclaimed_only=True, after=False, before=False)
            statement = Execute(self.dialect.claim(where, skip_locked=self.skip_locked), (queue, 1), Fetch.ALL, queue)
            cache = self._plain_claims
            if len(cache) >= PLAIN_CLAIM_CACHE_SIZE:
                # Replaced, never cleared in place: another thread inserting
                # into the old dict meanwhile loses only its own entry.
                self._plain_claims = cache = {}
            cache[queue] = statement
        return statement

    def check_write(self, queue: str, body: str) -> tuple[str, str]:
        """Validate one write before it joins a group: bad input fails its caller alone."""
        return check_queue_name(queue), self.check_body(body)

    def check_body(self, body: object) -> str:
        """``body`` if the database can store it: a str within ``max_message_size``
        bytes of UTF-8, and without U+0000 where the dialect's text cannot hold it."""
        checked = check_body(body, self.config.max_message_size)
        if not self.dialect.TEXT_ALLOWS_NUL and "\0" in checked:
            raise MessageError(
                "message body contains a NUL character (U+0000), which text in "
                f"{self.dialect.DATABASE_NOUN} cannot hold"
            )
        return checked

    def session(self) -> Session:
        """A new session for one fresh connection."""
        return Session(self)

    @property
    def mutations(self) -> int:
        """Committed mutations since the last auto-vacuum check."""
        return _peek(self._ticks) - self._baseline

    @mutations.setter
    def mutations(self, value: int) -> None:
        self._baseline = _peek(self._ticks) - value
        self._maybe_due = value >= self.next_vacuum_check

    def record_mutations(self, count: int) -> None:
        """Count committed mutations (see :meth:`take_auto_vacuum`): ``count``
        atomic steps of the counter, taken in C."""
        if count > 0:
            ticks = self._ticks
            last = next(ticks) if count == 1 else deque(itertools.islice(ticks, count), maxlen=1)[0]
            total = last + 1
            if total - self._baseline >= self.next_vacuum_check:
                self._maybe_due = True

    def take_auto_vacuum(self) -> bool:
        """True (once, until :meth:`auto_vacuum_ended`) when an auto-vacuum
        check is due: the adapter then runs it as housekeeping, outside every
        caller's operation, so a committed answer never waits for it or
        fails with it. Asked after every operation: "not due" usually reads
        one flag, which a count reaching the next check sets."""
        if not self._maybe_due or not self.config.auto_vacuum or self.mutations < self.next_vacuum_check:
            return False
        try:
            self._check_token.pop()  # atomic: one caller alone gets it
        except IndexError:
            return False  # another caller runs the check
        return True

    def auto_vacuum_ended(self) -> None:
        """The check taken by :meth:`take_auto_vacuum` is over (called by its runner only)."""
        if not self._check_token:
            self._check_token.append(True)

    def vacuum_is_due(self, claimed: int, total: int) -> bool:
        threshold = total * self.config.vacuum_threshold_percent / 100.0
        return total > 0 and claimed > 0 and (claimed >= threshold or claimed > VACUUM_CLAIMED_CEILING)

    def checked_vacuum(self, claimed: int, total: int) -> None:
        """Schedule the next check after an auto-vacuum check saw ``claimed`` of ``total``.

        SimpleBroker checks every ``interval`` mutations with a full count of
        the table. At a million rows that count costs more than the writes
        it follows, so the next check waits until enough of our own claims
        could have made vacuum due: never sooner than ``interval``.
        """
        interval = self.config.auto_vacuum_interval
        threshold = total * self.config.vacuum_threshold_percent / 100.0
        gap = min(threshold - claimed, VACUUM_CLAIMED_CEILING + 1 - claimed)
        self.next_vacuum_check = max(interval, int(gap))
        self.mutations %= interval

    def vacuum_check_failed(self) -> None:
        """After a check that failed before it counted: the next one comes an interval later."""
        if self.mutations >= self.next_vacuum_check:
            self.mutations = 0
            self.next_vacuum_check = self.config.auto_vacuum_interval


def _peek(counter: itertools.count[int]) -> int:
    """An ``itertools.count``'s next value, read without taking it (its repr
    is ``count(N)``: one atomic read in C)."""
    return int(repr(counter)[6:-1])


class Session:
    """One connection's view: its state, and the operations.

    Per connection, used by one operation at a time: nothing here is shared
    between threads. :attr:`state` changes only through the table of
    :mod:`~sansio_broker.states`, which refuses an illegal step.
    """

    def __init__(self, core: BrokerCore) -> None:
        self.core = core
        self.dialect = core.dialect
        self._begin = core.begin_write
        self.state: State = IDLE
        self._transaction_mutations = 0
        # The stream whose batch holds the lock; meaningful in HOLDING_BATCH only.
        self._holder: object | None = None
        # Queues whose messages this session's work may have made pending
        # (writes, moves in, give-backs), for waiters: see take_changes().
        self._changed: set[str] = set()
        self._changed_any = False

    @property
    def in_transaction(self) -> bool:
        """Whether an explicit transaction is open on this connection."""
        return self.state is IN_TRANSACTION

    @property
    def stream_holding_lock(self) -> object | None:
        """The at-least-once stream whose open batch holds this connection's write lock, if any."""
        return self._holder if self.state is HOLDING_BATCH else None

    @stream_holding_lock.setter
    def stream_holding_lock(self, stream: object | None) -> None:
        if stream is None:
            self.release_batch(self._holder)
        else:
            self.hold_batch(stream)

    def check(self, event: Event) -> None:
        """Raise :class:`TransactionError` now if the state refuses ``event``;
        the state itself moves once the database agreed (:meth:`apply`)."""
        transition(self.state, event)

    def apply(self, event: Event) -> None:
        """Move to the state the table names for ``event``, or raise :class:`TransactionError`."""
        self.state = transition(self.state, event)

    def hold_batch(self, stream: object) -> None:
        """``stream`` claimed a batch and keeps its transaction open: writes are refused until it is released."""
        self._holder = stream
        self.apply(Event.CLAIM_BATCH)  # one store: the holder counts only once the state says so

    def release_batch(self, stream: object) -> None:
        """``stream``'s batch ends; nothing if a :meth:`reset` already released it."""
        if self.state is HOLDING_BATCH and self._holder is stream:
            self.apply(Event.RELEASE_BATCH)
            self._holder = None

    # ------------------------------------------------------- waiting consumers
    @property
    def has_changes(self) -> bool:
        """Whether :meth:`take_changes` has anything: one test on every operation's path."""
        return self._changed_any or bool(self._changed)

    def take_changes(self) -> frozenset[str] | None:
        """The queues that may have new pending messages since the last call
        (``None``: any queue), and forget them.

        Noted when an operation is made, so one that fails or rolls back
        leaves a spurious hint at worst: waiters treat wake-ups as hints and
        their claim decides. Adapters ask once the session is idle (after a
        commit, never inside an explicit transaction, where nothing is
        visible to others yet) and wake the waiters of those queues.
        """
        if self._changed_any:
            self._changed_any = False
            self._changed.clear()
            return None
        changed = frozenset(self._changed)
        self._changed.clear()
        return changed

    def note_change(self, queue: str | None) -> None:
        """``queue`` (``None``: any) may have new pending messages once this session commits."""
        if queue is None:
            self._changed_any = True
        else:
            self._changed.add(queue)

    # ------------------------------------------------------------------ set-up
    def setup_connection(self, label: str) -> Operation[None]:
        """Per-connection settings (nothing persisted). ``label`` names the file in errors."""
        return schema.setup_connection(self.dialect, self.core.config, label)

    def open_database(self, label: str) -> Operation[None]:
        """Create schema v6 on a new file, or admit an existing one (refusing
        foreign files before writing anything). ``label`` names the file in errors."""
        return schema.open_database(self.dialect, label, self._write_transaction)

    # ------------------------------------------------------------ transactions
    def begin_transaction(self) -> Operation[None]:
        """Open an explicit transaction: later operations join it until commit."""
        self.check(Event.BEGIN)  # refused now, before any command exists
        return self._begin_explicit()

    def _begin_explicit(self) -> Operation[None]:
        yield from self.begin_with_retry()
        self._transaction_mutations = 0
        self.apply(Event.BEGIN)

    def commit_transaction(self) -> Operation[None]:
        self.check(Event.COMMIT)
        return self._commit_explicit()

    def _commit_explicit(self) -> Operation[None]:
        self.apply(Event.COMMIT)  # before COMMIT: a failed one leaves no transaction either
        try:
            yield COMMIT
        except GeneratorExit:
            raise  # closed by its driver: nothing may be yielded now
        except BaseException:
            yield from self.rollback_quietly()
            raise
        self.after_commit(self._transaction_mutations)

    def rollback_transaction(self) -> Operation[None]:
        self.apply(Event.ROLLBACK)
        self.note_change(None)  # its claims are pending again
        return self.rollback_quietly()

    def reset(self) -> Operation[None]:
        """Make an abandoned connection clean before it is reused.

        Rolls back whatever a cancelled or abandoned transaction or stream
        batch left open; pools run it before handing the connection out again.
        """
        self.apply(Event.RESET)
        self.note_change(None)  # claims of an abandoned batch or transaction are pending again
        self._holder = None
        self._transaction_mutations = 0
        return self.rollback_quietly()

    def begin_with_retry(self) -> Operation[None]:
        attempt = 0
        while True:
            try:
                yield self._begin
                return
            except BusyError as exc:
                attempt += 1
                if attempt >= self.core.retry.attempts:
                    raise self._gave_up(exc, attempt) from exc
            except GeneratorExit:
                raise
            except BaseException:
                # Interrupted while BEGIN ran: it may have taken effect.
                yield from self.rollback_quietly()
                raise
            yield Sleep(self.core.retry.delay(attempt))

    def _gave_up(self, exc: BusyError, attempts: int) -> BusyError:
        return BusyError(
            f"{exc}: gave up after {attempts} attempts, each waiting up to "
            f"{self.core.config.busy_timeout_ms} ms; another connection keeps the write lock "
            "(another process, or in this one a transaction or at-least-once stream batch "
            "held by another thread or task)",
            exc.code,
        )

    def rollback_quietly(self) -> Operation[None]:
        # A failed COMMIT may already have rolled back; "no transaction" is fine.
        with contextlib.suppress(DatabaseError):
            yield ROLLBACK

    def _write_transaction(
        self,
        body: Callable[[], Operation[T]],
        mutations: Callable[[T], int] = lambda _: 0,
        *,
        resync_ids: bool = False,
    ) -> Operation[T]:
        """Run ``body`` in a write transaction (BEGIN … COMMIT), retrying when locked.

        Inside an explicit transaction the body just joins it. ``resync_ids``:
        on a duplicate ID, advance meta.last_ts past the stored rows and retry
        once, as SimpleBroker does for databases whose last_ts fell behind.
        """
        if self.state is not IDLE:
            self.apply(Event.WRITE)  # refused while a stream batch holds the lock
            # What is left is an explicit transaction: join it.
            result = yield from body()
            self._transaction_mutations += mutations(result)
            return result
        attempt = 0
        resynced = not resync_ids
        while True:
            began = False  # a BusyError at BEGIN leaves nothing to roll back
            try:
                yield self._begin
                began = True
                result = yield from body()
                yield COMMIT
            except BusyError as exc:
                if began:
                    yield from self.rollback_quietly()
                attempt += 1
                if attempt >= self.core.retry.attempts:
                    raise self._gave_up(exc, attempt) from exc
                yield Sleep(self.core.retry.delay(attempt))
                continue
            except IntegrityError:
                yield from self.rollback_quietly()
                if resynced:
                    raise
                resynced = True
                yield from self._write_transaction(self._resync_last_id)
                continue
            except GeneratorExit:
                raise  # closed by its driver: nothing may be yielded now
            except BaseException:
                # Also when interrupted during BEGIN itself, which may have
                # taken effect; "no transaction is active" is swallowed.
                yield from self.rollback_quietly()
                raise
            self.core.record_mutations(mutations(result))
            return result

    def after_commit(self, mutations: int) -> None:
        self.core.record_mutations(mutations)

    # ------------------------------------------------------------------ IDs
    def _allocate_ids(self, count: int) -> Operation[range]:
        """Reserve ``count`` IDs by compare-and-advance of meta.last_ts; after a
        lost race, read it locked (``LOCK_LAST_TS``), so the next try wins.

        Must run inside the inserting transaction, so the high-water mark and
        the rows become visible in the same commit.
        """
        dialect = self.dialect
        now = yield READ_CLOCK
        last = self.core.last_id
        waited = 0
        for _ in range(ADVANCE_ATTEMPTS):
            block = timestamps.next_block(now, last, count)
            while block is None:
                pause = timestamps.wait_ns(now, last)
                waited += pause
                if waited > MAX_CLOCK_WAIT_NS:
                    raise TimestampError(
                        f"logical counter exhausted: meta.last_ts {last} is ahead of the clock "
                        f"({now}) and the clock did not catch up"
                    )
                yield Sleep(max(pause, 1000) / 1e9)
                now = yield READ_CLOCK
                block = timestamps.next_block(now, last, count)
            row = yield Execute(dialect.ADVANCE_LAST_TS, (block[-1], block[0]), Fetch.ONE)
            if row is not None:
                self.core.last_id = block[-1]
                return block
            row = yield Execute(dialect.LOCK_LAST_TS, (), Fetch.ONE)
            if row is None:
                raise TimestampError("meta.last_ts is missing")
            last = int(row[0])
        raise TimestampError(f"could not advance meta.last_ts after {ADVANCE_ATTEMPTS} attempts")

    def _resync_last_id(self) -> Operation[None]:
        yield from schema.resync_last_ts(self.dialect)
        self.core.last_id = 0

    def generate_id(self) -> Operation[int]:
        """Reserve one ID without writing a message (SimpleBroker's
        ``generate_timestamp``): every message written later has a larger one."""
        return self._write_transaction(self._reserve_id)

    def _reserve_id(self) -> Operation[int]:
        ids = yield from self._allocate_ids(1)
        return ids[0]

    def last_id(self) -> Operation[int]:
        """The highest ID given out so far (``meta.last_ts``): every message
        written later has a larger one (a peeking watch starts here)."""
        row = yield Execute(self.dialect.READ_LAST_TS, (), Fetch.ONE)
        return 0 if row is None else int(row[0])

    # ---------------------------------------------------------------- writes
    def write(self, queue: str, body: str, *, keep_newest: int | None = None) -> Operation[int]:
        """Append one message; returns its ID once committed.

        ``keep_newest=N`` then claims (SimpleBroker's choice: not deletes)
        every pending message of the queue but the N newest, in the same
        transaction: a bounded queue of the latest values.
        """
        check_queue_name(queue)
        self.core.check_body(body)
        keep = check_keep_newest(keep_newest)
        self.note_change(queue)
        if keep is None:
            return self._write_transaction(lambda: self._insert(queue, (body,)), _one, resync_ids=True)
        return self._write_transaction(lambda: self._insert_keeping(queue, body, keep), _one, resync_ids=True)

    def _insert_keeping(self, queue: str, body: str, keep: int) -> Operation[int]:
        ids = yield from self._allocate_ids(1)
        yield from _each(self.dialect.LOCK_KEEP_NEWEST)  # meta row locked: now the table
        yield Execute(self.dialect.INSERT_MESSAGE, (queue, body, ids[0]))
        yield Execute(self.dialect.CLAIM_OLDER_PENDING, (queue, queue, keep - 1))
        return ids[0]

    def write_many(self, queue: str, bodies: Iterable[str]) -> Operation[list[int]]:
        """Append messages in order, in one transaction; returns their IDs."""
        check_queue_name(queue)
        check = self.core.check_body
        items = tuple(check(b) for b in check_bodies(bodies))
        self.note_change(queue)
        return self._write_transaction(lambda: self._insert_many(queue, items), len, resync_ids=True)

    def _insert(self, queue: str, bodies: tuple[str]) -> Operation[int]:
        ids = yield from self._allocate_ids(1)
        yield Execute(self.dialect.INSERT_MESSAGE, (queue, bodies[0], ids[0]))
        return ids[0]

    def _insert_many(self, queue: str, bodies: tuple[str, ...]) -> Operation[list[int]]:
        if not bodies:
            return []
        ids = yield from self._allocate_ids(len(bodies))
        rows = [(queue, body, id_) for body, id_ in zip(bodies, ids, strict=True)]
        yield from self._insert_rows(rows)
        return list(ids)

    def _insert_rows(self, rows: list[tuple[str, str, int]]) -> Operation[None]:
        # In growing chunks, so a driver can stop a huge batch between two
        # commands (a cancelled caller) instead of running it to the end.
        start, size = 0, INSERT_CHUNK_ROWS
        while start < len(rows):
            yield ExecuteMany(self.dialect.INSERT_MESSAGE, rows[start : start + size])
            start, size = start + size, min(2 * size, MAX_INSERT_CHUNK_ROWS)

    def broadcast(
        self, body: str, *, pattern: str | None = None, queues: Iterable[str] | None = None
    ) -> Operation[int]:
        """Write ``body`` to every existing queue (or those matching a glob, or
        those of ``queues`` that exist), atomically; returns how many got it."""
        self.core.check_body(body)
        if pattern is not None and not isinstance(pattern, str):
            raise InvalidTypeError(f"pattern must be a str glob, not {type(pattern).__name__}")
        chosen: frozenset[str] | None = None
        if queues is not None:
            if pattern is not None:
                raise InvalidInputError("broadcast takes a pattern or a list of queues, not both")
            if isinstance(queues, str | bytes):
                raise InvalidTypeError("queues must be an iterable of queue names, not a single str")
            chosen = frozenset(check_queue_name(q) for q in queues)
        self.note_change(None)
        return self._write_transaction(lambda: self._broadcast(body, pattern, chosen), _same)

    def _broadcast(self, body: str, pattern: str | None, chosen: frozenset[str] | None = None) -> Operation[int]:
        yield from _each(self.dialect.LOCK_BROADCAST)  # no queue appears or goes until COMMIT
        rows = yield Execute(self.dialect.LIST_QUEUES, (), Fetch.ALL)
        targets = [
            r[0] for r in rows if (pattern is None or fnmatchcase(r[0], pattern)) and (chosen is None or r[0] in chosen)
        ]
        if not targets:
            return 0
        ids = yield from self._allocate_ids(len(targets))
        yield from self._insert_rows([(queue, body, id_) for queue, id_ in zip(targets, ids, strict=True)])
        return len(targets)

    # ------------------------------------------------- groups (many callers)
    def write_group(self, items: Sequence[tuple[str, str]]) -> Operation[list[WriteOutcome]]:
        """Writes of many callers (``(queue, body)``, each already passed
        :meth:`BrokerCore.check_write`) in one transaction: group commit.

        IDs follow the order of ``items``. A caller that withdrew before the
        group sealed gets ``None`` and nothing is written for it. If the
        group fails for a reason that is not the lock or a cancellation,
        each write is retried alone, so one bad write fails alone.
        """
        self._check_group()
        for queue, _ in items:
            self.note_change(queue)
        return self._write_group(items)

    def _write_group(self, items: Sequence[tuple[str, str]]) -> Operation[list[WriteOutcome]]:
        seal = _Seal()
        try:
            ids = yield from self._write_transaction(
                lambda: self._insert_group(items, range(len(items)), seal), len, resync_ids=True
            )
            return [ids.get(p) for p in range(len(items))]
        except _AllWithdrawn:
            return [None] * len(items)  # rolled back: as if never begun
        except (BusyError, OperationCancelled):
            raise  # shared by every write of the group: each one would meet it
        except Exception:
            if len(items) == 1:
                raise
        outcomes: list[WriteOutcome] = []
        for position in range(len(items)):
            alone = (position,)
            try:
                ids = yield from self._write_transaction(
                    partial(self._insert_group, items, alone, seal), len, resync_ids=True
                )
                outcomes.append(ids.get(position))
            except _AllWithdrawn:
                outcomes.append(None)
            except OperationCancelled:
                raise  # every caller left before any write committed
            except Exception as exc:  # BusyError too: earlier writes may have committed
                outcomes.append(exc)
        return outcomes

    def _insert_group(
        self, items: Sequence[tuple[str, str]], positions: Sequence[int], seal: _Seal
    ) -> Operation[dict[int, int]]:
        """Insert ``items`` at ``positions``; returns ``{position: ID}`` of those kept."""
        if seal.withdrawn is not None:  # sealed by an earlier attempt
            positions = [p for p in positions if p not in seal.withdrawn]
        if not positions:
            return {}
        ids = yield from self._allocate_ids(len(positions))
        if len(positions) == 1:  # a lone caller: the same statement as write()
            yield Execute(self.dialect.INSERT_MESSAGE, (*items[positions[0]], ids[0]))
        else:
            yield from self._insert_rows([(*items[p], id_) for p, id_ in zip(positions, ids, strict=True)])
        # Sealed last, just before COMMIT: a caller cancelled until then is
        # taken out again and nothing is written for it.
        if seal.withdrawn is None:
            seal.withdrawn = yield SEAL_GROUP
        withdrawn = seal.withdrawn
        dropped = [(id_,) for p, id_ in zip(positions, ids, strict=True) if p in withdrawn]
        if len(dropped) == len(positions):
            raise _AllWithdrawn
        if dropped:
            yield ExecuteMany(self.dialect.DELETE_BY_ID, dropped)
        return {p: id_ for p, id_ in zip(positions, ids, strict=True) if p not in withdrawn}

    def claim_group(self, queue: str, members: int) -> Operation[list[Message | None]]:
        """One claim transaction serving ``members`` readers of ``queue``.

        Readers still waiting when the group seals (just before COMMIT) get
        the oldest messages in their order of arrival, or ``None`` when the
        queue ran out. Messages claimed for readers that withdrew are
        pending again before the commit.
        """
        self._check_group()
        base = self.core.plain_claim(queue)  # validates the name
        check_positive(members, "members")
        statement = base if members == 1 else Execute(base.sql, (queue, members), Fetch.ALL, queue)
        return self._claim_group_or_nothing(statement, members)

    def _claim_group_or_nothing(self, statement: Execute, members: int) -> Operation[list[Message | None]]:
        try:
            return (yield from self._write_transaction(lambda: self._claim_group(statement, members), _claimed))
        except _AllWithdrawn:
            return [None] * members  # rolled back: nothing was claimed

    def _claim_group(self, statement: Execute, members: int) -> Operation[list[Message | None]]:
        messages = yield from self.select(statement)
        withdrawn = yield SEAL_GROUP
        if len(withdrawn) == members:
            raise _AllWithdrawn
        active = [p for p in range(members) if p not in withdrawn]
        results: list[Message | None] = [None] * members
        for position, message in zip(active, messages, strict=False):
            results[position] = message
        unclaim = [(m.id,) for m in messages[len(active) :]]
        if unclaim:
            yield ExecuteMany(self.dialect.UNCLAIM_BY_ID, unclaim)
        return results

    def return_claims(self, queue: str, messages: Sequence[Message]) -> Operation[None]:
        """Make messages claimed for readers that never received them pending again.

        Restores the row if a vacuum removed it meanwhile, so nothing a
        shared claim took is ever lost.
        """
        check_queue_name(queue)
        self.note_change(queue)
        rows = [(queue, m.body, m.id) for m in messages]
        return self._write_transaction(lambda: _run_many(ExecuteMany(self.dialect.RETURN_CLAIMED, rows)))

    def _check_group(self) -> None:
        # Adapters group only calls made outside transactions and batches.
        self.check(Event.GROUP)

    # ---------------------------------------------------------------- claims
    def claim(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after: int | None = None,
        before: int | None = None,
        order: str = "oldest",
    ) -> Operation[Message | None]:
        """Claim the oldest (or newest) pending message, or one by ID; committed before returned."""
        statement = self.claim_statement(queue, 1, message_id, after, before, check_order(order))
        return self._write_transaction(lambda: self.select_first(statement), _found)

    def claim_many(
        self, queue: str, limit: int, *, after: int | None = None, before: int | None = None, order: str = "oldest"
    ) -> Operation[list[Message]]:
        """Claim up to ``limit`` oldest (or newest) pending messages in one transaction."""
        newest = check_order(order)
        return self._claim_rows(queue, check_positive(limit, "limit"), None, after, before, newest)

    def claim_all(self, queue: str, *, after: int | None = None, before: int | None = None) -> Operation[list[Message]]:
        """Claim every pending message in one transaction: all handed over, or none claimed."""
        return self._claim_rows(queue, self.dialect.NO_LIMIT, None, after, before)

    def _claim_rows(
        self,
        queue: str,
        limit: int | None,
        message_id: object,
        after: object,
        before: object,
        newest: bool = False,
    ) -> Operation[list[Message]]:
        statement = self.claim_statement(queue, limit, message_id, after, before, newest)
        return self._write_transaction(lambda: self.select(statement, newest), len)

    def claim_statement(
        self,
        queue: str,
        limit: int | None,
        message_id: object = None,
        after: object = None,
        before: object = None,
        newest: bool = False,
    ) -> Execute:
        """The validated claim statement (``limit`` ``dialect.NO_LIMIT``: all); streams reuse it."""
        if limit == 1 and message_id is None and after is None and before is None and not newest:
            return self.core.plain_claim(queue)
        check_queue_name(queue)
        mid, lo, hi = check_selection(message_id, after, before)
        where = self.dialect.where(
            by_id=mid is not None, unclaimed_only=True, after=lo is not None, before=hi is not None
        )
        params = (*self.dialect.where_params(queue, message_id=mid, after=lo, before=hi), limit)
        return Execute(self.dialect.claim(where, newest, skip_locked=self.core.skip_locked), params, Fetch.ALL, queue)

    def select(self, statement: Execute, newest: bool = False) -> Operation[list[Message]]:
        """Run a statement returning ``(body, ts)`` rows, as messages in ID
        order (newest first with ``newest``, as SimpleBroker hands them over)."""
        rows = yield statement
        if len(rows) > 1:
            rows.sort(key=_by_id, reverse=newest)  # RETURNING order is unspecified
        return [Message(body, ts) for body, ts in rows]

    def select_first(self, statement: Execute) -> Operation[Message | None]:
        """Like :meth:`select` for a ``LIMIT 1`` statement."""
        rows = yield statement
        return Message(*rows[0]) if rows else None

    def read_bodies(
        self,
        queue: str,
        *,
        peek: bool = False,
        all_messages: bool = False,
        message_id: int | str | None = None,
        after: int | None = None,
        before: int | None = None,
    ) -> Operation[list[str]]:
        """Bodies, the shape the async SimpleBroker example's ``read`` returns.

        One message (claimed unless ``peek``) or, with ``all_messages``, every
        pending one; all claims are one transaction, so either every claimed
        body is handed over or nothing is claimed.
        """
        if all_messages and message_id is not None:
            raise InvalidInputError("message_id cannot be combined with all_messages")
        limit = self.dialect.NO_LIMIT if all_messages else 1
        if peek:
            rows = self._peek_rows(queue, limit, message_id, after, before, False)
        else:
            rows = self._claim_rows(queue, limit, message_id, after, before)
        return _bodies(rows)

    # ----------------------------------------------------------------- moves
    def move(
        self,
        source: str,
        destination: str,
        *,
        message_id: int | str | None = None,
        after: int | None = None,
        before: int | None = None,
        require_unclaimed: bool | None = None,
        order: str = "oldest",
    ) -> Operation[Message | None]:
        """Move the oldest (or newest) pending message, or one by ID, to ``destination``.

        By ID, claimed messages move too and stay claimed (SimpleBroker 8)
        unless ``require_unclaimed=True``.
        """
        newest = check_order(order)
        statement = self._move_statement(source, destination, 1, message_id, after, before, require_unclaimed, newest)
        return self._write_transaction(lambda: self.select_first(statement), _found)

    def move_many(
        self,
        source: str,
        destination: str,
        limit: int,
        *,
        after: int | None = None,
        before: int | None = None,
        order: str = "oldest",
    ) -> Operation[list[Message]]:
        """Move up to ``limit`` oldest (or newest) pending messages in one transaction."""
        limit = check_positive(limit, "limit")
        newest = check_order(order)
        statement = self._move_statement(source, destination, limit, None, after, before, True, newest)
        return self._write_transaction(lambda: self.select(statement, newest), len)

    def move_all(
        self, source: str, destination: str, *, after: int | None = None, before: int | None = None
    ) -> Operation[int]:
        """Move every pending message, in transactions of ``GENERATOR_BATCH_SIZE``; returns the count."""
        batch = self.core.config.generator_batch_size
        return self._move_all(self._move_statement(source, destination, batch, None, after, before, True), batch)

    def _move_all(self, statement: Execute, batch: int) -> Operation[int]:
        total = 0
        while True:
            moved = yield from self._move_batch(statement)
            total += len(moved)
            if len(moved) < batch:
                return total

    def _move_batch(self, statement: Execute) -> Operation[list[Message]]:
        return self._write_transaction(lambda: self.select(statement), len)

    def _move_statement(
        self,
        source: str,
        destination: str,
        limit: int,
        message_id: object,
        after: object,
        before: object,
        require_unclaimed: bool | None,
        newest: bool = False,
    ) -> Execute:
        check_queue_name(source)
        check_queue_name(destination)
        if source == destination:
            raise InvalidInputError("Source and destination queues cannot be the same")
        self.note_change(destination)
        mid, lo, hi = check_selection(message_id, after, before)
        if require_unclaimed is None:
            require_unclaimed = mid is None
        where = self.dialect.where(
            by_id=mid is not None, unclaimed_only=require_unclaimed, after=lo is not None, before=hi is not None
        )
        params = (destination, *self.dialect.where_params(source, message_id=mid, after=lo, before=hi), limit)
        return Execute(self.dialect.move(where, newest, skip_locked=self.core.skip_locked), params, Fetch.ALL)

    # ----------------------------------------------------------------- peeks
    def peek(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after: int | None = None,
        before: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> Operation[Message | None]:
        """The oldest (or newest) pending message, or one by ID, without claiming it."""
        rows = self._peek_rows(queue, 1, message_id, after, before, include_claimed, check_order(order))
        return _first(rows)

    def peek_many(
        self,
        queue: str,
        limit: int,
        *,
        after: int | None = None,
        before: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> Operation[list[Message]]:
        """Up to ``limit`` oldest messages, oldest first (or the newest, newest
        first), without claiming them."""
        limit = check_positive(limit, "limit")
        return self._peek_rows(queue, limit, None, after, before, include_claimed, check_order(order))

    def _peek_rows(
        self,
        queue: str,
        limit: int | None,
        message_id: object,
        after: object,
        before: object,
        include_claimed: bool,
        newest: bool = False,
    ) -> Operation[list[Message]]:
        check_queue_name(queue)
        mid, lo, hi = check_selection(message_id, after, before)
        where = self.dialect.where(
            by_id=mid is not None, unclaimed_only=not include_claimed, after=lo is not None, before=hi is not None
        )
        params = (*self.dialect.where_params(queue, message_id=mid, after=lo, before=hi), limit)
        return self._read(self.dialect.peek(where, newest), params)

    def _read(self, sql: str, params: tuple[Any, ...]) -> Operation[list[Message]]:
        rows = yield Execute(sql, params, Fetch.ALL)
        return [Message(body, ts) for body, ts in rows]

    # ---------------------------------------------------------------- delete
    def delete_queue(self, queue: str) -> Operation[int]:
        """Remove every message of ``queue``, pending and claimed; returns the count."""
        check_queue_name(queue)
        statement = Execute(self.dialect.DELETE_QUEUE, (queue,), Fetch.ROWCOUNT)
        return self._write_transaction(lambda: _run(statement))

    def delete_all(self) -> Operation[int]:
        """Remove every message of every queue; returns the count."""
        statement = Execute(self.dialect.DELETE_ALL, (), Fetch.ROWCOUNT)
        return self._write_transaction(lambda: _run(statement))

    def delete_messages(self, queue: str, message_ids: Iterable[int | str]) -> Operation[int]:
        """Remove the listed messages of ``queue`` (claimed or not); returns how many existed."""
        check_queue_name(queue)
        ids = check_id_list(message_ids)
        return self._write_transaction(lambda: self._delete_listed(queue, ids))

    def _delete_listed(self, queue: str, ids: list[int]) -> Operation[int]:
        if not ids:
            return 0
        return (yield from self.dialect.delete_ids(queue, ids))

    # ------------------------------------------------------------ inspection
    def list_queues(self) -> Operation[list[str]]:
        """Queues with at least one row (claimed-only queues included), sorted."""
        return _column(Execute(self.dialect.LIST_QUEUES, (), Fetch.ALL))

    def queue_stats(self, queue: str) -> Operation[QueueStats]:
        check_queue_name(queue)
        return self._queue_stats(queue)

    def _queue_stats(self, queue: str) -> Operation[QueueStats]:
        pending, total = yield Execute(self.dialect.QUEUE_STATS, (queue,), Fetch.ONE)
        return QueueStats(queue, int(pending), int(total))

    def all_queue_stats(self) -> Operation[list[QueueStats]]:
        return self._all_queue_stats()

    def _all_queue_stats(self) -> Operation[list[QueueStats]]:
        rows = yield Execute(self.dialect.ALL_QUEUE_STATS, (), Fetch.ALL)
        return [QueueStats(q, int(pending), int(total)) for q, pending, total in rows]

    def queue_exists(self, queue: str) -> Operation[bool]:
        check_queue_name(queue)
        return self._exists(queue)

    def _exists(self, queue: str) -> Operation[bool]:
        row = yield Execute(self.dialect.QUEUE_EXISTS, (queue,), Fetch.ONE)
        return bool(row[0])

    # ------------------------------------------------------------- aliases
    def resolve_queue(self, name: str) -> Operation[str]:
        """The queue ``name`` means: an ``@alias``'s target, else ``name`` itself."""
        alias = aliases.alias_of(name)
        if alias is None:
            return _value(check_queue_name(name))
        return self._alias_target(alias)

    def _alias_target(self, alias: str) -> Operation[str]:
        row = yield Execute(self.dialect.ALIAS_TARGET, (alias,), Fetch.ONE)
        if row is None:
            raise aliases.not_defined(alias)
        return str(row[0])

    def list_aliases(self) -> Operation[list[tuple[str, str]]]:
        """``(alias, target)`` pairs, sorted by alias."""
        return self._list_aliases()

    def _list_aliases(self) -> Operation[list[tuple[str, str]]]:
        rows = yield Execute(self.dialect.LIST_ALIASES, (), Fetch.ALL)
        return [(str(alias), str(target)) for alias, target in rows]

    def add_alias(self, alias: str, target: str) -> Operation[bool]:
        """Add ``@alias`` for ``target``; True when a queue named ``alias``
        has messages (the caller warns: ``@alias`` and ``alias`` now differ)."""
        alias, target = aliases.check_new(alias, target)
        return self._write_transaction(lambda: self._add_alias(alias, target))

    def _add_alias(self, alias: str, target: str) -> Operation[bool]:
        yield from _each(self.dialect.LOCK_ALIASES)  # before the checks read the aliases
        current = dict((yield from self._list_aliases()))
        aliases.check_against(alias, target, current)
        shadows = yield from self._exists(alias)
        yield Execute(self.dialect.INSERT_ALIAS, (alias, target))
        yield from self._bump_alias_version()
        return shadows

    def remove_alias(self, alias: str) -> Operation[bool]:
        """Remove an alias (named without ``@``); False if there was none."""
        if not isinstance(alias, str):
            raise InvalidTypeError(f"alias must be a str, not {type(alias).__name__}")
        return self._write_transaction(lambda: self._remove_alias(alias))

    def _remove_alias(self, alias: str) -> Operation[bool]:
        yield from _each(self.dialect.LOCK_ALIASES)
        removed = yield Execute(self.dialect.DELETE_ALIAS, (alias,), Fetch.ROWCOUNT)
        if removed:
            yield from self._bump_alias_version()
        return bool(removed)

    def _bump_alias_version(self) -> Operation[None]:
        # SimpleBroker's readers cache aliases keyed by this value.
        now = yield READ_CLOCK
        yield Execute(self.dialect.SET_ALIAS_VERSION, (now,))

    def rename_queue(self, old: str, new: str, *, retarget_aliases: bool = True) -> Operation[RenameResult]:
        """Give every message of ``old`` (claimed ones too) the name ``new``,
        and point ``old``'s aliases at ``new`` unless told not to."""
        for name in (old, new):
            if aliases.alias_of(name) is None:
                check_queue_name(name)
        return self._write_transaction(lambda: self._rename(old, new, bool(retarget_aliases)))

    def _rename(self, old: str, new: str, retarget: bool) -> Operation[RenameResult]:
        yield from _each(self.dialect.LOCK_RENAME)  # before anything is read
        source = yield from self.resolve_queue(old)
        target = yield from self.resolve_queue(new)
        if source == target:
            raise InvalidInputError("Source and target queues cannot be the same")
        if (yield from self._exists(target)):
            raise InvalidInputError("Target queue already exists")
        renamed = yield Execute(self.dialect.RENAME_QUEUE, (target, source), Fetch.ROWCOUNT)
        if not renamed:
            return RenameResult(source, target, 0, 0, False)
        yield from _each(self.dialect.change_notification((source, target)))
        retargeted = 0
        if retarget:
            retargeted = yield Execute(self.dialect.RETARGET_ALIASES, (target, source), Fetch.ROWCOUNT)
            if retargeted:
                yield from self._bump_alias_version()
        self.note_change(target)
        return RenameResult(source, target, int(renamed), int(retargeted), True)

    # ------------------------------------------------- exact IDs, search, status
    def insert_messages(self, records: Iterable[tuple[str, str, int | str]]) -> Operation[int]:
        """Insert ``(queue, body, id)`` rows as pending with their exact IDs
        (a dump being loaded), in one transaction; ``meta.last_ts`` follows
        the largest so new IDs stay above them. A duplicate ID inserts nothing."""
        rows, top = _exact_rows(records, self.core.check_body)
        for queue in {row[0] for row in rows}:
            self.note_change(queue)
        return self._write_transaction(lambda: self._insert_exact(rows, top), _same)

    def _insert_exact(self, rows: list[tuple[str, str, int]], top: int) -> Operation[int]:
        if not rows:
            return 0
        # meta.last_ts first, then the messages (the lock order of every writer).
        yield Execute(self.dialect.RAISE_LAST_TS, (top, top))
        start, size = 0, INSERT_CHUNK_ROWS
        while start < len(rows):
            yield ExecuteMany(self.dialect.INSERT_EXACT, rows[start : start + size])
            start, size = start + size, min(2 * size, MAX_INSERT_CHUNK_ROWS)
        return len(rows)

    def raise_last_id(self, value: int | str) -> Operation[None]:
        """Make every later ID larger than ``value`` (a loaded dump's header)."""
        last = check_message_id(value, "last_ts")
        return self._write_transaction(lambda: _run(Execute(self.dialect.RAISE_LAST_TS, (last, last))))

    def find_message_ids(
        self,
        queue: str,
        body_contains: str,
        *,
        limit: int = 100,
        after: int | None = None,
        before: int | None = None,
        include_claimed: bool = False,
    ) -> Operation[list[int]]:
        """IDs of messages whose body contains ``body_contains`` literally, oldest first."""
        check_queue_name(queue)
        needle = check_needle(body_contains)
        count = check_search_limit(limit)
        _, lo, hi = check_selection(None, after, before)
        sql = self.dialect.find_ids(include_claimed=bool(include_claimed), after=lo is not None, before=hi is not None)
        params = (queue, needle, *(b for b in (lo, hi) if b is not None), count)
        return _ids(Execute(sql, params, Fetch.ALL))

    def has_pending(self, queue: str, *, after: int | None = None) -> Operation[bool]:
        """Whether ``queue`` has a pending message (with an ID above ``after``)."""
        check_queue_name(queue)
        _, lo, _ = check_selection(None, after, None)
        if lo is None:
            return _flag(Execute(self.dialect.HAS_PENDING, (queue,), Fetch.ONE))
        return _flag(Execute(self.dialect.HAS_PENDING_AFTER, (queue, lo), Fetch.ONE))

    def status(self) -> Operation[BrokerStatus]:
        """Every row counted (claimed ones until vacuumed), ``meta.last_ts``, the size."""
        return self._status()

    def _status(self) -> Operation[BrokerStatus]:
        (total,) = yield Execute(self.dialect.COUNT_MESSAGES, (), Fetch.ONE)
        last = yield from self.last_id()
        (size,) = yield Execute(self.dialect.DATABASE_SIZE, (), Fetch.ONE)
        return BrokerStatus(int(total), last, int(size))

    def dump_header(self) -> Operation[tuple[str, int]]:
        """A dump's first line (this engine's name, ``meta.last_ts``) and that ``last_ts``."""
        from . import dump  # json, only when a dump is made

        last = yield from self.last_id()
        return dump.header_line(last, self.dialect.BACKEND_NAME), last

    def dump_page(self, last_ts: int, after: tuple[str, int], limit: int) -> Operation[list[tuple[str, str, int]]]:
        """Pending ``(queue, body, id)`` rows with IDs up to ``last_ts``, by
        queue then ID, after the cursor ``(queue, id)``; ``("", 0)`` starts."""
        queue, last = after
        params = (last_ts, queue, queue, last, check_positive(limit, "limit"))
        return _triples(Execute(self.dialect.DUMP_PAGE, params, Fetch.ALL))

    # ---------------------------------------------------------------- vacuum
    def vacuum(self, *, compact: bool = False) -> Operation[int]:
        """Delete claimed rows in batches under the dialect's vacuum lock; returns the count.

        Skipped (returns 0) when another process holds the lock. ``compact``
        also rebuilds the file to return space to the OS.
        """
        self.check(Event.VACUUM)
        return self._vacuum(compact)

    def _vacuum(self, compact: bool) -> Operation[int]:
        acquired = yield from self.dialect.lock_vacuum()
        if not acquired:
            return 0
        try:
            deleted = 0
            while True:
                batch = yield from self._write_transaction(self._delete_claimed_batch)
                if not batch:
                    break
                deleted += batch
                yield Sleep(0.001)  # let other writers in between batches
            if compact:
                yield from self.dialect.compact()
            elif deleted:
                yield from self._reclaim_space()
        except GeneratorExit:
            raise
        except BaseException:
            yield from self.dialect.unlock_vacuum()
            raise
        yield from self.dialect.unlock_vacuum()
        return deleted

    def _delete_claimed_batch(self) -> Operation[int]:
        (any_claimed,) = yield Execute(self.dialect.ANY_CLAIMED, (), Fetch.ONE)
        if not any_claimed:
            return 0
        deleted: int = yield Execute(
            self.dialect.DELETE_CLAIMED_BATCH, (self.core.config.vacuum_batch_size,), Fetch.ROWCOUNT
        )
        return deleted

    def _reclaim_space(self) -> Operation[None]:
        # Best effort: the rows are gone either way; the space follows later.
        with contextlib.suppress(DatabaseError):
            yield from self.dialect.reclaim_space()

    def auto_vacuum(self) -> Operation[None]:
        """Housekeeping after :meth:`BrokerCore.take_auto_vacuum`: count, and
        vacuum if the claimed share calls for it.

        Adapters run it on its own, never inside a caller's operation. A
        failure is raised (adapters log it) and remembered in
        ``last_vacuum_error``; the next check still waits an interval.
        """
        core = self.core
        try:
            claimed, total = yield Execute(self.dialect.OVERALL_STATS, (), Fetch.ONE)
            claimed, total = int(claimed or 0), int(total or 0)
            core.checked_vacuum(claimed, total)  # also if the vacuum below fails
            if core.vacuum_is_due(claimed, total):
                deleted = yield from self._vacuum(compact=False)
                # Others may have claimed meanwhile: the vacuum took those too.
                core.checked_vacuum(max(claimed - deleted, 0), max(total - deleted, 0))
            core.last_vacuum_error = None
        except GeneratorExit:
            raise  # closed by its driver: nothing failed
        except BaseException as exc:
            core.vacuum_check_failed()
            core.last_vacuum_error = exc
            raise
        finally:
            core.auto_vacuum_ended()


class _AllWithdrawn(Exception):
    """Every caller of a group withdrew before the seal: roll it all back."""


class _Seal:
    """The members a group's seal reported withdrawn, asked once per group."""

    __slots__ = ("withdrawn",)

    def __init__(self) -> None:
        self.withdrawn: frozenset[int] | None = None


def _claimed(results: list[Message | None]) -> int:
    return sum(1 for m in results if m is not None)


def _each(commands: tuple[Command, ...]) -> Operation[None]:
    """Run commands whose answers nobody reads (none at all: a dialect step
    with nothing to do); a ``yield from`` of the tuple itself would fail on
    a driver answering with a value."""
    for command in commands:  # noqa: UP028 (see the docstring)
        yield command


def _run_many(statement: ExecuteMany) -> Operation[None]:
    yield statement


def _bodies(rows: Operation[list[Message]]) -> Operation[list[str]]:
    messages = yield from rows
    return [m.body for m in messages]


def _found(message: Message | None) -> int:
    return 0 if message is None else 1


def _first(rows: Operation[list[Message]]) -> Operation[Message | None]:
    found = yield from rows
    return found[0] if found else None


def _by_id(row: tuple[str, int]) -> int:
    return row[1]


def _one(_: int) -> int:
    return 1


def _same(count: int) -> int:
    return count


def _exact_rows(
    records: Iterable[tuple[str, str, int | str]], check: Callable[[object], str]
) -> tuple[list[tuple[str, str, int]], int]:
    """Checked ``(queue, body, id)`` rows and the ``last_ts`` they need."""
    if isinstance(records, str | bytes):
        raise InvalidTypeError("records must be an iterable of (queue, body, id) tuples")
    rows: list[tuple[str, str, int]] = []
    seen: set[int] = set()
    for record in records:
        if not isinstance(record, tuple | list) or len(record) != 3:
            raise InvalidTypeError("insert records must be (queue, message, message_id) tuples")
        queue, body, raw_id = record
        checked = (check_queue_name(queue), check(body))  # SimpleBroker's order: name, size, ID
        message_id = check_message_id(raw_id)
        if message_id == 0:
            raise InvalidInputError("message_id 0 is reserved; use a positive compatible SimpleBroker message ID")
        if message_id in seen:
            raise IntegrityError("duplicate message ID in insert batch")
        seen.add(message_id)
        rows.append((*checked, message_id))
    top = max(seen, default=0) + 1
    if top > timestamps.ID_LIMIT - 1:
        raise InvalidInputError("insert high-water timestamp exceeds the largest message ID")
    return rows, top


def _value(value: T) -> Operation[T]:
    return value
    yield  # a generator: an operation that runs no statement


def _ids(statement: Execute) -> Operation[list[int]]:
    rows = yield statement
    return [int(row[0]) for row in rows]


def _flag(statement: Execute) -> Operation[bool]:
    row = yield statement
    return bool(row[0])


def _triples(statement: Execute) -> Operation[list[tuple[str, str, int]]]:
    rows = yield statement
    return [(str(q), str(b), int(t)) for q, b, t in rows]


def _run(statement: Execute) -> Operation[Any]:
    return (yield statement)


def _column(statement: Execute) -> Operation[list[str]]:
    rows = yield statement
    return [r[0] for r in rows]
