"""Every broker operation users call, written once for all three adapters.

This file is the source: ``_sync_operations.py`` is generated from it by
``tools/unasync.py`` (``async``/``await`` removed, ``Async`` names made
plain), and a test fails if the two drift. Edit this file, then run
``python tools/unasync.py``.

An operation here only checks and shapes: it builds the core operation for
a session (a ``lambda s: ...``) and hands it to its broker's engine, which
knows the runtime (which connection, which thread, group commit,
cancellation and interrupts). Adding an operation touches this file only.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar, cast, overload

from sansio_broker import (
    AliasShadowsQueueWarning,
    BrokerClosedError,
    BrokerStatus,
    ClockSkewWarning,
    Config,
    InvalidInputError,
    InvalidTypeError,
    LoadResult,
    Message,
    Order,
    QueueStats,
    RenameResult,
)
from sansio_broker import aliases as alias_rules
from sansio_broker.aliases import check_operand
from sansio_broker.driver import Operation, Session, Stream, open_stream
from sansio_broker.validation import (
    check_bodies,
    check_broker,
    check_id_list,
    check_message_id,
    check_queue_name,
    check_timeout,
)

from ._waiting import Listener

if TYPE_CHECKING:  # imported by dump() and load(): other programs skip json and the format's set-up
    from sansio_broker import dump as dump_format

T = TypeVar("T")
R = TypeVar("R")
Item_co = TypeVar("Item_co", covariant=True)


class AsyncMessageStream(Protocol[Item_co]):
    """What a stream is: an iterator that must be closed (``with``, or
    ``close()``) to end its batch and give its connection back."""

    def __aiter__(self) -> AsyncIterator[Item_co]: ...
    async def __anext__(self) -> Item_co: ...
    async def aclose(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc_info: object) -> None: ...


class AsyncEngine(Protocol):
    """What an adapter's engine does for the operations: run one on a
    suitable connection, keeping the adapter's promises about interrupts."""

    async def run(self, make: Callable[[Session], Operation[T]], writes: bool = False) -> T:
        """``make(session)`` run to its end; ``writes``: its answer is the IDs it wrote."""
        ...

    async def claiming(self, make: Callable[[Session], Operation[T]], shape: Callable[[T], R]) -> R:
        """A claim whose answer reaches the caller as ``shape(answer)``, or goes back."""
        ...

    async def write(self, queue: str, message: str) -> int:
        """One write, in a group commit when others write at the same moment."""
        ...

    async def claim(self, queue: str, shape: Callable[[Message | None], R]) -> R:
        """One plain claim, shared with others claiming from ``queue`` at the same moment."""
        ...

    async def wait_claim(self, queue: str, timeout: float | None, shape: Callable[[Message], R]) -> R | None:
        """Claim the oldest message of ``queue``, waiting in line for one
        (``None`` once ``timeout`` passed); the caller gets ``shape(message)`` or it goes back."""
        ...

    async def wait_first(self, queues: list[str], timeout: float | None) -> tuple[str, str] | None:
        """``(queue, body)`` claimed from the first of ``queues`` that has a message,
        waiting for one until ``timeout`` (then ``None``); the caller gets it or it goes back."""
        ...

    def listening(self, queues: frozenset[str] | None) -> AbstractAsyncContextManager[Listener]:
        """Hear of changes to ``queues`` while inside the block."""
        ...

    async def wait_listener(self, listener: Listener, timeout: float | None) -> bool:
        """Wait for a change since ``listener.hinted`` was reset; False once ``timeout`` passed."""
        ...

    def stream(self, make: Callable[[Session], Stream], shape: Callable[[Message], R]) -> AsyncMessageStream[R]: ...
    def transaction(self, owner: T) -> AbstractAsyncContextManager[T]: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def wait_background(self) -> None: ...


def _same(answer: T) -> T:
    return answer


def _body(message: Message) -> str:
    return message.body


def _bodies(messages: list[Message]) -> list[str]:
    return [m.body for m in messages]


def _as_list(answer: Message | list[str] | None) -> list[str]:
    """The broker's ``read`` shape: a list of bodies."""
    if isinstance(answer, list):
        return answer
    return [] if answer is None else [answer.body]


def _first_body(answer: Message | list[str] | None) -> str | None:
    """The queue's ``read`` shape: one body, or ``None``."""
    if isinstance(answer, list):
        return answer[0] if answer else None
    return None if answer is None else answer.body


class AsyncOperations:
    """Every operation of a broker on one SQLite file.

    Safe to share between the threads or tasks of its runtime. ``close()``
    waits for the operations in flight; an interrupt or cancellation at any
    point leaves the broker usable and never strands a claimed message.
    """

    _engine: AsyncEngine
    config: Config

    async def open(self) -> Self:
        """Create or check the database now, so a bad file fails here."""
        await self._engine.open()
        return self

    async def close(self) -> None:
        """Close every connection, once the operations in flight have ended.

        Later calls raise :class:`~sansio_broker.BrokerClosedError`; closing
        again does nothing.
        """
        await self._engine.close()

    async def wait_background(self) -> None:
        """Wait until work in the background has ended (messages given back
        after a cancellation, groups still running, an auto-vacuum check),
        for example before inspecting the file in a test."""
        await self._engine.wait_background()

    async def __aenter__(self) -> Self:
        try:
            return await self.open()
        except BaseException:
            await self.close()  # whatever it opened before failing
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def transaction(self) -> AbstractAsyncContextManager[Self]:
        """Make the operations inside the block commit or roll back together.

        Claims, writes and moves this thread (or task) makes inside the
        block are one write transaction: "take a message, write the result
        elsewhere" is atomic. Other threads or tasks, even ones it starts,
        use their own connections. An exception, an interrupt or a
        cancellation rolls everything back.
        """
        return self._engine.transaction(self)

    # ---------------------------------------------------------------- writes
    async def _name(self, queue: str) -> str:
        """The queue ``queue`` names: an ``@alias`` is looked up (one query),
        any other name is passed on as given (and checked by the core)."""
        if isinstance(queue, str) and queue.startswith(alias_rules.PREFIX):
            return await self._engine.run(lambda s: s.resolve_queue(queue))
        return queue

    async def write(self, queue: str, message: str, *, keep_newest: int | None = None) -> int:
        """Append ``message`` to ``queue``; returns its ID once committed.

        Writes of others waiting at the same moment share its transaction
        (group commit); each gets its own ID, in arrival order.
        ``keep_newest=N`` then claims every pending message of the queue but
        the N newest, in the same transaction (SimpleBroker's bounded queue).
        """
        queue = await self._name(queue)
        if keep_newest is None:
            return await self._engine.write(queue, message)
        return await self._engine.run(lambda s: s.write(queue, message, keep_newest=keep_newest), writes=True)

    async def write_many(self, queue: str, messages: Iterable[str]) -> list[int]:
        """Append messages in order in one transaction; returns their IDs."""
        items = list(check_bodies(messages))  # read once, here; None or a str is refused first
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.write_many(queue, items), writes=True)

    async def broadcast(self, message: str, *, pattern: str | None = None, queues: Iterable[str] | None = None) -> int:
        """Write to every existing queue (or those matching the glob, or those
        of ``queues`` that exist: literal names); returns how many got it."""
        chosen = None if queues is None else _names(queues)
        return await self._engine.run(lambda s: s.broadcast(message, pattern=pattern, queues=chosen))

    # ---------------------------------------------------------------- claims
    async def claim(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: Order = "oldest",
    ) -> Message | None:
        """Claim the oldest pending message (the newest with ``order="newest"``,
        or the one with ``message_id``).

        Plain claims of others waiting on the same queue at the same moment
        share one transaction, each getting a distinct message.
        """
        queue = await self._name(queue)
        if message_id is None and after_timestamp is None and before_timestamp is None and order == "oldest":
            return await self._engine.claim(queue, _same)
        return await self._engine.run(
            lambda s: s.claim(queue, message_id=message_id, after=after_timestamp, before=before_timestamp, order=order)
        )

    async def claim_many(
        self,
        queue: str,
        limit: int,
        *,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: Order = "oldest",
    ) -> list[Message]:
        """Claim up to ``limit`` messages in one transaction (newest first with ``order="newest"``)."""
        queue = await self._name(queue)
        return await self._engine.run(
            lambda s: s.claim_many(queue, limit, after=after_timestamp, before=before_timestamp, order=order)
        )

    async def claim_all(
        self, queue: str, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim every pending message in one transaction (all returned, or none claimed)."""
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.claim_all(queue, after=after_timestamp, before=before_timestamp))

    async def return_messages(self, queue: str, messages: Iterable[Message]) -> None:
        """Give claimed messages back: pending again with their IDs and bodies.

        For a consumer that claimed what it then could not deliver (its
        output closed, its work refused): nothing is lost, and the messages
        keep their place in the queue's order.
        """
        items = [_message(m) for m in _iterable(messages, "messages")]
        queue = await self._name(queue)
        await self._engine.run(lambda s: s.return_claims(queue, items))

    # ----------------------------------------------------------------- peeks
    async def peek(
        self,
        queue: str,
        *,
        message_id: int | str | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
        order: Order = "oldest",
    ) -> Message | None:
        """The oldest pending message (the newest, or one by ID), not claimed."""
        queue = await self._name(queue)
        return await self._engine.run(
            lambda s: s.peek(
                queue,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
                order=order,
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
        order: Order = "oldest",
    ) -> list[Message]:
        """Up to ``limit`` oldest messages (newest first with ``order="newest"``), not claimed."""
        queue = await self._name(queue)
        return await self._engine.run(
            lambda s: s.peek_many(
                queue,
                limit,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
                order=order,
            )
        )

    # -------------------------------------------------------------- waiting
    async def get(self, queues: Sequence[str], *, timeout: float | None = None) -> tuple[str, str] | None:
        """Wait on several queues; claim from the first one, in the order
        given, that has a message: ``(queue, body)``, or ``None`` once
        ``timeout`` seconds passed.

        Priority without polling: list the urgent queue first. A caller here
        does not queue up behind the ``get()`` callers of one queue (no FIFO
        among them); whoever claims first gets the message.
        """
        names = _queue_list(queues)
        seconds = check_timeout(timeout)
        return await self._engine.wait_first([await self._name(q) for q in names], seconds)

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
    ) -> AsyncMessageStream[Message]:
        """Every message of ``queue``, oldest first, as an iterator to close.

        ``commit_interval=1`` claims exactly once, one transaction per
        message. ``commit_interval=N>1`` claims batches of N at least once:
        a batch commits when the next one is asked for and is rolled back
        (delivered again) if the stream is closed early (``break``, an
        exception, an interrupt or a cancellation). While a batch is open it
        holds the database's write lock: close the stream (use it in a
        ``with`` block) to release it; a write by the same thread or task
        meanwhile raises ``TransactionError`` at once instead of waiting on
        it. ``peek=True`` pages through without claiming.
        """
        return self._engine.stream(
            lambda s: open_stream(
                s,
                queue,
                peek=peek,
                commit_interval=commit_interval,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
            ),
            _same,
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
        order: Order = "oldest",
    ) -> Message | None:
        """Move the oldest pending message (the newest, or one by ID, even if claimed)."""
        source, dest = await self._name(source_queue), await self._name(dest_queue)
        return await self._engine.run(
            lambda s: s.move(
                source,
                dest,
                message_id=message_id,
                after=after_timestamp,
                before=before_timestamp,
                require_unclaimed=require_unclaimed,
                order=order,
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
        order: Order = "oldest",
    ) -> list[Message]:
        """Move up to ``limit`` pending messages in one transaction (newest first with ``order="newest"``)."""
        source, dest = await self._name(source_queue), await self._name(dest_queue)
        return await self._engine.run(
            lambda s: s.move_many(source, dest, limit, after=after_timestamp, before=before_timestamp, order=order)
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
        source, dest = await self._name(source_queue), await self._name(dest_queue)
        return await self._engine.run(
            lambda s: s.move_all(source, dest, after=after_timestamp, before=before_timestamp)
        )

    # ---------------------------------------------------------------- delete
    async def delete(self, queue: str | None = None) -> int:
        """Delete a queue's messages, or every queue's when ``queue`` is None."""
        if queue is None:
            return await self._engine.run(lambda s: s.delete_all())
        name = await self._name(queue)
        return await self._engine.run(lambda s: s.delete_queue(name))

    async def delete_messages(self, queue: str, message_ids: Iterable[int | str]) -> int:
        """Delete messages of ``queue`` by ID; returns how many existed."""
        ids = check_id_list(message_ids)  # read once, here
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.delete_messages(queue, ids))

    # ------------------------------------------------------------ inspection
    async def list_queues(self) -> list[str]:
        """The names of the queues that have messages (claimed ones count until vacuumed)."""
        return await self._engine.run(lambda s: s.list_queues())

    async def get_queue_stats(self) -> list[QueueStats]:
        """``(queue, pending, total)`` for every queue."""
        return await self._engine.run(lambda s: s.all_queue_stats())

    async def queue_stats(self, queue: str) -> QueueStats:
        """``(queue, pending, total)`` for ``queue``."""
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.queue_stats(queue))

    async def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` has any message, claimed or not."""
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.queue_exists(queue))

    async def has_pending(self, queue: str, *, after_timestamp: int | None = None) -> bool:
        """Whether ``queue`` has a pending message (with an ID above ``after_timestamp``)."""
        queue = await self._name(queue)
        return await self._engine.run(lambda s: s.has_pending(queue, after=after_timestamp))

    async def find_message_ids(
        self,
        queue: str,
        body_contains: str,
        *,
        limit: int = 100,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> list[int]:
        """IDs of the (pending) messages whose body contains ``body_contains``
        literally, oldest first, at most ``limit`` (1..1000)."""
        queue = await self._name(queue)
        return await self._engine.run(
            lambda s: s.find_message_ids(
                queue,
                body_contains,
                limit=limit,
                after=after_timestamp,
                before=before_timestamp,
                include_claimed=include_claimed,
            )
        )

    async def generate_id(self) -> int:
        """Reserve a message ID without writing a message: every message
        written later, by any process, gets a larger one (SimpleBroker's
        ``generate_timestamp``)."""
        return await self._engine.run(lambda s: s.generate_id())

    async def status(self) -> BrokerStatus:
        """Every row counted (claimed ones until vacuumed), the last ID given
        out (``meta.last_ts``) and the database's size in bytes."""
        return await self._engine.run(lambda s: s.status())

    # --------------------------------------------------------------- aliases
    async def add_alias(self, alias: str, target: str) -> None:
        """Make ``@alias`` name ``target`` wherever a queue is named.

        One level only: a target may not be an alias, nor an alias some
        alias's target. Warns (:class:`~sansio_broker.AliasShadowsQueueWarning`)
        when a queue named ``alias`` has messages: ``alias`` still names it.
        """
        shadows = await self._engine.run(lambda s: s.add_alias(alias, target))
        if shadows:
            warnings.warn(alias_rules.shadow_warning(alias, target), AliasShadowsQueueWarning, stacklevel=2)

    async def remove_alias(self, alias: str) -> bool:
        """Remove an alias (named without ``@``); False if there was none."""
        return await self._engine.run(lambda s: s.remove_alias(alias))

    async def list_aliases(self) -> list[tuple[str, str]]:
        """``(alias, target)`` pairs, sorted by alias."""
        return await self._engine.run(lambda s: s.list_aliases())

    async def resolve_queue(self, name: str) -> str:
        """The queue ``name`` means: an ``@alias``'s target, else ``name``."""
        return await self._engine.run(lambda s: s.resolve_queue(name))

    async def rename_queue(self, old: str, new: str, *, retarget_aliases: bool = True) -> RenameResult:
        """Give every message of ``old`` (claimed ones too) the name ``new``,
        in one transaction, and point ``old``'s aliases at ``new`` unless
        ``retarget_aliases=False``. Refused if ``new`` has messages."""
        return await self._engine.run(lambda s: s.rename_queue(old, new, retarget_aliases=retarget_aliases))

    # ---------------------------------------------------------- dump and load
    async def insert_messages(self, queue: str, records: Iterable[tuple[str, int | str]]) -> int:
        """Insert ``(body, id)`` pairs as pending messages with exactly those
        IDs, in one transaction; later IDs stay above them. A duplicate ID
        raises :class:`~sansio_broker.IntegrityError` and inserts nothing."""
        items = [_pair(r) for r in _iterable(records, "records")]
        queue = await self._name(queue)
        rows = [(queue, body, message_id) for body, message_id in items]
        return await self._engine.run(lambda s: s.insert_messages(rows))

    def dump(self, *, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> AsyncIterator[str]:
        """The broker as SimpleBroker's ``simplebroker-dump`` v1 JSON lines:
        a header, the aliases, then every pending message with its ID, queue
        by queue (``include``/``exclude``: case-sensitive globs; exclude wins).

        Not a snapshot under concurrent writers: messages written after the
        header are left out, messages claimed meanwhile may be too.
        """
        from sansio_broker import dump as dump_format

        return self._dump(dump_format.Selection.of(include, exclude))

    async def _dump(self, selection: dump_format.Selection) -> AsyncIterator[str]:
        from sansio_broker import dump as dump_format

        header, last_ts = await self._engine.run(lambda s: s.dump_header())
        yield header
        for alias, target in await self.list_aliases():
            if selection.alias(alias, target):
                yield dump_format.alias_line(alias, target)
        cursor = ("", 0)
        while True:
            rows = await self._engine.run(partial(_dump_page, last_ts, cursor))
            for queue, body, message_id in rows:
                if selection.queue(queue):
                    yield dump_format.message_line(queue, body, message_id)
            if len(rows) < DUMP_PAGE:
                return
            cursor = (rows[-1][0], rows[-1][2])

    async def load(self, lines: Iterable[str], *, force: bool = False) -> LoadResult:
        """Apply a ``simplebroker-dump`` v1 dump (SimpleBroker's or ours).

        Aliases are added as they come; messages are inserted pending with
        their IDs, 1,000 per transaction; then later IDs are made to follow
        the header's. Meant for a fresh database: a bad line
        (:class:`~sansio_broker.DumpFormatError`, with its line number) or a
        duplicate ID stops the load with what came before it applied. A
        header ahead of the clock warns; more than
        ``load_max_future_skew_seconds`` ahead is refused unless ``force``.
        """
        from sansio_broker import dump as dump_format

        reader = dump_format.Reader(
            now_ns=time.time_ns(),
            max_future_skew_s=self.config.load_max_future_skew_seconds,
            force=bool(force),
        )
        messages = added = 0
        batch: list[tuple[str, str, int]] = []
        for line in _iterable(lines, "lines"):
            try:
                record = reader.feed(line)
            finally:  # a header too far ahead warns, then is refused
                for text in reader.warnings:
                    warnings.warn(text, ClockSkewWarning, stacklevel=2)
                reader.warnings.clear()
            if isinstance(record, dump_format.AliasRecord):
                await self.add_alias(record.alias, record.target)
                added += 1
            elif record is not None:
                batch.append((record.queue, record.body, record.id))
                if len(batch) >= dump_format.LOAD_BATCH_SIZE:
                    messages += await self._insert_rows(batch)
                    batch = []
        last_ts = reader.finish()
        messages += await self._insert_rows(batch)
        await self._engine.run(lambda s: s.raise_last_id(last_ts))
        return LoadResult(messages, added)

    async def _insert_rows(self, rows: list[tuple[str, str, int]]) -> int:
        if not rows:
            return 0
        return await self._engine.run(lambda s: s.insert_messages(rows))

    async def vacuum(self, *, compact: bool = False) -> int:
        """Remove claimed rows now; returns how many (0 if another process is vacuuming)."""
        return await self._engine.run(lambda s: s.vacuum(compact=compact))

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
        return await self._read(queue, peek, all_messages, exact_timestamp, after_timestamp, before_timestamp, _as_list)

    async def _read(
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
        queue = await self._name(queue)
        if message_id is None and after is None and before is None and not peek and not all_messages:
            return await self._engine.claim(queue, shape)
        return await self._engine.claiming(
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
    ) -> AsyncMessageStream[str]:
        """Bodies, as the original async example's ``stream_read`` yields them."""
        return self._engine.stream(
            lambda s: open_stream(
                s,
                queue,
                peek=peek,
                all_messages=all_messages,
                commit_interval=commit_interval,
                message_id=exact_timestamp,
                after=after_timestamp,
            ),
            _body,
        )


class AsyncQueueOperations:
    """One queue of a broker, with the async example's method names.

    The example-style methods (``read``, ``read_all``, ``stream``) return
    bodies; the others return :class:`~sansio_broker.Message` with the ID.
    """

    # The adapter's broker class: a path or another adapter's broker is refused at once.
    _broker_type: ClassVar[type[AsyncOperations]] = AsyncOperations

    def __init__(self, name: str, broker: AsyncOperations) -> None:
        self.name = check_operand(name)  # "@alias" is resolved at each call
        self.broker = check_broker(broker, self._broker_type, type(self).__name__)

    async def write(self, message: str, *, keep_newest: int | None = None) -> int:
        return await self.broker.write(self.name, message, keep_newest=keep_newest)

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
        shape = _as_list if all_messages else _first_body
        return await self.broker._read(
            self.name, peek, all_messages, message_id, after_timestamp, before_timestamp, shape
        )

    async def read_all(self, *, peek: bool = False) -> list[str]:
        return await self.read(peek=peek, all_messages=True)

    def stream(
        self,
        *,
        peek: bool = False,
        all_messages: bool = True,
        commit_interval: int = 1,
        after_timestamp: int | None = None,
    ) -> AsyncMessageStream[str]:
        """Bodies until the queue is empty (``all_messages=False``: at most one).

        ``commit_interval > 1`` is at-least-once: see the broker's ``stream``.
        """
        return self.broker.stream_read(
            self.name,
            peek=peek,
            all_messages=all_messages,
            commit_interval=commit_interval,
            after_timestamp=after_timestamp,
        )

    async def claim(self, *, message_id: int | str | None = None, order: Order = "oldest") -> Message | None:
        return await self.broker.claim(self.name, message_id=message_id, order=order)

    async def claim_many(self, limit: int, *, order: Order = "oldest") -> list[Message]:
        return await self.broker.claim_many(self.name, limit, order=order)

    async def read_many(self, limit: int) -> list[str]:
        """Up to ``limit`` oldest bodies, claimed in one transaction (SimpleBroker's ``read_many``)."""
        name = await self.broker._name(self.name)
        return await self.broker._engine.claiming(lambda s: s.claim_many(name, limit), _bodies)

    async def get(self, *, timeout: float | None = None) -> str | None:
        """Claim the oldest message's body, waiting until there is one.

        ``None`` only when ``timeout`` seconds pass first (``0``: one try).
        Callers waiting on one queue are served in the order they came; a
        cancelled caller's message goes to the next one or back to pending.
        Closing the broker raises :class:`~sansio_broker.BrokerClosedError` here.
        """
        seconds = check_timeout(timeout)
        return await self.broker._engine.wait_claim(await self.broker._name(self.name), seconds, _body)

    async def get_message(self, *, timeout: float | None = None) -> Message | None:
        """Like :meth:`get`, with the message's ID."""
        seconds = check_timeout(timeout)
        return await self.broker._engine.wait_claim(await self.broker._name(self.name), seconds, _same)

    def watch(
        self, *, peek: bool = False, after: int | str | None = None, move_to: str | None = None
    ) -> AsyncWatch[str]:
        """Every message's body as it arrives: an endless iterator to close.

        Claims each message before yielding it (exactly once, as
        :meth:`get`); ``peek=True`` yields without claiming, starting after
        the message ID ``after`` or, without it, at the end of the queue
        when iteration starts, and moving past each message yielded.
        ``move_to`` moves each message to that queue instead (it is there,
        pending, before it is yielded). Ends when the broker closes or the
        loop is left.
        """
        return AsyncWatch(self.broker, self.name, _body, *_watch_mode(peek, after, move_to))

    def watch_messages(
        self, *, peek: bool = False, after: int | str | None = None, move_to: str | None = None
    ) -> AsyncWatch[Message]:
        """Like :meth:`watch`, with each message's ID."""
        return AsyncWatch(self.broker, self.name, _same, *_watch_mode(peek, after, move_to))

    async def peek(
        self, *, message_id: int | str | None = None, include_claimed: bool = False, order: Order = "oldest"
    ) -> Message | None:
        return await self.broker.peek(self.name, message_id=message_id, include_claimed=include_claimed, order=order)

    async def peek_many(self, limit: int, *, include_claimed: bool = False, order: Order = "oldest") -> list[Message]:
        return await self.broker.peek_many(self.name, limit, include_claimed=include_claimed, order=order)

    async def has_pending(self, *, after_timestamp: int | None = None) -> bool:
        return await self.broker.has_pending(self.name, after_timestamp=after_timestamp)

    async def find_message_ids(
        self,
        body_contains: str,
        *,
        limit: int = 100,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> list[int]:
        return await self.broker.find_message_ids(
            self.name,
            body_contains,
            limit=limit,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
            include_claimed=include_claimed,
        )

    async def insert_messages(self, records: Iterable[tuple[str, int | str]]) -> int:
        return await self.broker.insert_messages(self.name, records)

    def messages(self, *, peek: bool = False, commit_interval: int = 1) -> AsyncMessageStream[Message]:
        """Like :meth:`stream`, with IDs."""
        return self.broker.stream(self.name, peek=peek, commit_interval=commit_interval)

    async def size(self) -> int:
        """Pending (unclaimed) messages."""
        return (await self.broker.queue_stats(self.name)).pending

    async def stats(self) -> QueueStats:
        return await self.broker.queue_stats(self.name)

    async def exists(self) -> bool:
        return await self.broker.queue_exists(self.name)

    async def move_to(
        self, dest_queue: str, *, message_id: int | str | None = None, order: Order = "oldest"
    ) -> Message | None:
        """Move the oldest (or newest) pending message, or the one with ``message_id``."""
        return await self.broker.move(self.name, dest_queue, message_id=message_id, order=order)

    async def move_many(self, dest_queue: str, limit: int, *, order: Order = "oldest") -> list[Message]:
        return await self.broker.move_many(self.name, dest_queue, limit, order=order)

    async def move_all(self, dest_queue: str) -> int:
        return await self.broker.move_all(self.name, dest_queue)

    async def delete(self, *, message_id: int | str | None = None) -> bool:
        """Delete the whole queue, or one message; True if anything was deleted."""
        if message_id is None:
            return await self.broker.delete(self.name) > 0
        return await self.broker.delete_messages(self.name, [message_id]) > 0


class AsyncWatch(Generic[R]):
    """What :meth:`AsyncQueueOperations.watch` returns: messages as they arrive, until closed."""

    def __init__(
        self,
        broker: AsyncOperations,
        queue: str,
        shape: Callable[[Message], R],
        peek: bool,
        after: int | None,
        move_to: str | None,
    ) -> None:
        self._broker = broker
        self._queue = queue  # "@alias" until the first message is asked for
        self._shape = shape
        self._peek = peek
        self._move_to = move_to
        self._checkpoint = after  # peek: the last ID yielded; None until iteration starts
        self._ahead: deque[Message] = deque()  # peeked or moved, not yet yielded
        self._resolved = False
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R:
        if self._closed:
            raise StopAsyncIteration
        try:
            if not self._resolved:
                self._queue = await self._broker._name(self._queue)
                if self._move_to is not None:
                    self._move_to = await self._broker._name(self._move_to)
                self._resolved = True
            if self._peek or self._move_to is not None:
                return self._shape(await self._next_ahead())
            message = await self._broker._engine.wait_claim(self._queue, None, self._shape)
        except BrokerClosedError:
            self._closed = True
            raise StopAsyncIteration from None
        assert message is not None  # no timeout: it waits until there is one
        return message

    async def _next_ahead(self) -> Message:
        if not self._ahead:
            engine = self._broker._engine
            queue = self._queue
            if self._peek and self._checkpoint is None:
                # The end of the queue, now: read before listening, so once this
                # watch is a listener every later write is after its checkpoint
                # (the first fetch below, or the wake-up, finds it).
                self._checkpoint = await engine.run(lambda s: s.last_id())
            async with engine.listening(frozenset((queue,))) as listener:
                while not self._ahead:
                    listener.hinted = False
                    self._ahead.extend(await engine.run(self._fetch))
                    if not self._ahead:
                        await engine.wait_listener(listener, None)
        message = self._ahead.popleft()
        self._checkpoint = message.id
        return message

    def _fetch(self, session: Session) -> Operation[list[Message]]:
        if self._move_to is not None:
            return session.move_many(self._queue, self._move_to, WATCH_BATCH)
        return session.peek_many(self._queue, WATCH_BATCH, after=self._checkpoint)

    async def aclose(self) -> None:
        """Stop: later iterations end at once."""
        self._closed = True
        self._ahead.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# Messages a peeking (or moving) watch reads ahead in one query.
WATCH_BATCH = 100


def _watch_mode(peek: object, after: object, move_to: object) -> tuple[bool, int | None, str | None]:
    """``watch``'s arguments, checked before iteration starts."""
    if not isinstance(peek, bool):
        raise InvalidTypeError(f"peek must be a bool, not {type(peek).__name__}")
    checkpoint = None if after is None else check_message_id(after, "after")
    if after is not None and not peek:
        raise InvalidInputError("after= is for watch(peek=True): a consuming watch takes the oldest first")
    if move_to is not None:
        if peek:
            raise InvalidInputError("watch takes peek=True or move_to=, not both")
        move_to = check_operand(move_to)
    return peek, checkpoint, move_to


# Rows a dump reads in one query.
DUMP_PAGE = 1000


def _dump_page(last_ts: int, cursor: tuple[str, int], session: Session) -> Operation[list[tuple[str, str, int]]]:
    return session.dump_page(last_ts, cursor, DUMP_PAGE)


def _iterable(value: object, name: str) -> Iterable[Any]:
    """An argument that must be an iterable of items (read once), not a str."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise InvalidTypeError(f"{name} must be an iterable, not {type(value).__name__}")
    return cast("Iterable[Any]", value)


def _names(queues: Iterable[str]) -> list[str]:
    """Literal queue names (``broadcast(queues=...)`` does not resolve aliases)."""
    return [check_queue_name(q) for q in _iterable(queues, "queues")]


def _message(value: object) -> Message:
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidTypeError(f"messages must be Message (body, id) pairs, not {type(value).__name__}")
    body, message_id = value
    if not isinstance(body, str):
        raise InvalidTypeError(f"a message body must be a str, not {type(body).__name__}")
    return Message(body, check_message_id(message_id))


def _pair(value: object) -> tuple[str, int | str]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise InvalidTypeError("insert records must be (body, message_id) pairs")
    body, message_id = value
    return body, message_id


def _queue_list(queues: object) -> list[str]:
    """``broker.get``'s queues: a non-empty sequence of names, checked before anything waits."""
    if isinstance(queues, str | bytes) or not isinstance(queues, Sequence):
        raise InvalidTypeError(f"queues must be a list or tuple of queue names, not {type(queues).__name__}")
    if not queues:
        raise InvalidInputError("queues must name at least one queue")
    return [check_operand(q) for q in queues]
