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

from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, ClassVar, Literal, Protocol, Self, TypeVar, overload

from sansio_broker import BrokerClosedError, InvalidInputError, InvalidTypeError, Message, QueueStats
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
    async def write(self, queue: str, message: str) -> int:
        """Append ``message`` to ``queue``; returns its ID once committed.

        Writes of others waiting at the same moment share its transaction
        (group commit); each gets its own ID, in arrival order.
        """
        return await self._engine.write(queue, message)

    async def write_many(self, queue: str, messages: Iterable[str]) -> list[int]:
        """Append messages in order in one transaction; returns their IDs."""
        items = list(check_bodies(messages))  # read once, here; None or a str is refused first
        return await self._engine.run(lambda s: s.write_many(queue, items), writes=True)

    async def broadcast(self, message: str, *, pattern: str | None = None) -> int:
        """Write to every existing queue (or those matching the glob); returns how many."""
        return await self._engine.run(lambda s: s.broadcast(message, pattern=pattern))

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

        Plain claims of others waiting on the same queue at the same moment
        share one transaction, each getting a distinct message.
        """
        if message_id is None and after_timestamp is None and before_timestamp is None:
            return await self._engine.claim(queue, _same)
        return await self._engine.run(
            lambda s: s.claim(queue, message_id=message_id, after=after_timestamp, before=before_timestamp)
        )

    async def claim_many(
        self, queue: str, limit: int, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim up to ``limit`` messages in one transaction."""
        return await self._engine.run(
            lambda s: s.claim_many(queue, limit, after=after_timestamp, before=before_timestamp)
        )

    async def claim_all(
        self, queue: str, *, after_timestamp: int | None = None, before_timestamp: int | None = None
    ) -> list[Message]:
        """Claim every pending message in one transaction (all returned, or none claimed)."""
        return await self._engine.run(lambda s: s.claim_all(queue, after=after_timestamp, before=before_timestamp))

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
        return await self._engine.run(
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
        return await self._engine.run(
            lambda s: s.peek_many(
                queue, limit, after=after_timestamp, before=before_timestamp, include_claimed=include_claimed
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
        return await self._engine.wait_first(_queue_list(queues), check_timeout(timeout))

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
    ) -> Message | None:
        """Move the oldest pending message (or one by ID, even if claimed)."""
        return await self._engine.run(
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
        return await self._engine.run(
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
        return await self._engine.run(
            lambda s: s.move_all(source_queue, dest_queue, after=after_timestamp, before=before_timestamp)
        )

    # ---------------------------------------------------------------- delete
    async def delete(self, queue: str | None = None) -> int:
        """Delete a queue's messages, or every queue's when ``queue`` is None."""
        return await self._engine.run(lambda s: s.delete_all() if queue is None else s.delete_queue(queue))

    async def delete_messages(self, queue: str, message_ids: Iterable[int | str]) -> int:
        """Delete messages of ``queue`` by ID; returns how many existed."""
        ids = check_id_list(message_ids)  # read once, here
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
        return await self._engine.run(lambda s: s.queue_stats(queue))

    async def queue_exists(self, queue: str) -> bool:
        """Whether ``queue`` has any message, claimed or not."""
        return await self._engine.run(lambda s: s.queue_exists(queue))

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
        self.name = check_queue_name(name)
        self.broker = check_broker(broker, self._broker_type, type(self).__name__)

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

    async def claim(self, *, message_id: int | str | None = None) -> Message | None:
        return await self.broker.claim(self.name, message_id=message_id)

    async def claim_many(self, limit: int) -> list[Message]:
        return await self.broker.claim_many(self.name, limit)

    async def read_many(self, limit: int) -> list[str]:
        """Up to ``limit`` oldest bodies, claimed in one transaction (SimpleBroker's ``read_many``)."""
        name = self.name
        return await self.broker._engine.claiming(lambda s: s.claim_many(name, limit), _bodies)

    async def get(self, *, timeout: float | None = None) -> str | None:
        """Claim the oldest message's body, waiting until there is one.

        ``None`` only when ``timeout`` seconds pass first (``0``: one try).
        Callers waiting on one queue are served in the order they came; a
        cancelled caller's message goes to the next one or back to pending.
        Closing the broker raises :class:`~sansio_broker.BrokerClosedError` here.
        """
        return await self.broker._engine.wait_claim(self.name, check_timeout(timeout), _body)

    async def get_message(self, *, timeout: float | None = None) -> Message | None:
        """Like :meth:`get`, with the message's ID."""
        return await self.broker._engine.wait_claim(self.name, check_timeout(timeout), _same)

    def watch(self, *, peek: bool = False, after: int | str | None = None) -> AsyncWatch:
        """Every message's body as it arrives: an endless iterator to close.

        Claims each message before yielding it (exactly once, as
        :meth:`get`); ``peek=True`` yields without claiming, starting after
        the message ID ``after`` or, without it, at the end of the queue
        when iteration starts, and moving past each message yielded. Ends
        when the broker closes or the loop is left.
        """
        if not isinstance(peek, bool):
            raise InvalidTypeError(f"peek must be a bool, not {type(peek).__name__}")
        checkpoint = None if after is None else check_message_id(after, "after")
        if after is not None and not peek:
            raise InvalidInputError("after= is for watch(peek=True): a consuming watch takes the oldest first")
        return AsyncWatch(self.broker, self.name, peek, checkpoint)

    async def peek(self, *, message_id: int | str | None = None, include_claimed: bool = False) -> Message | None:
        return await self.broker.peek(self.name, message_id=message_id, include_claimed=include_claimed)

    async def peek_many(self, limit: int, *, include_claimed: bool = False) -> list[Message]:
        return await self.broker.peek_many(self.name, limit, include_claimed=include_claimed)

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

    async def move_to(self, dest_queue: str, *, message_id: int | str | None = None) -> Message | None:
        """Move the oldest pending message, or the one with ``message_id``."""
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


class AsyncWatch:
    """What :meth:`AsyncQueueOperations.watch` returns: bodies as they arrive, until closed."""

    def __init__(self, broker: AsyncOperations, queue: str, peek: bool, after: int | None) -> None:
        self._broker = broker
        self._queue = queue
        self._peek = peek
        self._checkpoint = after  # peek: the last ID yielded; None until iteration starts
        self._ahead: deque[Message] = deque()  # peeked, not yet yielded
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._peek:
                return await self._next_peeked()
            message = await self._broker._engine.wait_claim(self._queue, None, _body)
        except BrokerClosedError:
            self._closed = True
            raise StopAsyncIteration from None
        assert message is not None  # no timeout: it waits until there is one
        return message

    async def _next_peeked(self) -> str:
        if not self._ahead:
            engine = self._broker._engine
            queue = self._queue
            async with engine.listening(frozenset((queue,))) as listener:
                if self._checkpoint is None:  # the end of the queue, now
                    self._checkpoint = await engine.run(lambda s: s.last_id())
                while not self._ahead:
                    listener.hinted = False
                    self._ahead.extend(await engine.run(partial(_peek_after, queue, self._checkpoint)))
                    if not self._ahead:
                        await engine.wait_listener(listener, None)
        message = self._ahead.popleft()
        self._checkpoint = message.id
        return message.body

    async def aclose(self) -> None:
        """Stop: later iterations end at once."""
        self._closed = True
        self._ahead.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# Messages a peeking watch reads ahead in one query.
PEEK_BATCH = 100


def _peek_after(queue: str, after: int | None, session: Session) -> Operation[list[Message]]:
    return session.peek_many(queue, PEEK_BATCH, after=after)


def _queue_list(queues: object) -> list[str]:
    """``broker.get``'s queues: a non-empty sequence of names, checked before anything waits."""
    if isinstance(queues, str | bytes) or not isinstance(queues, Sequence):
        raise InvalidTypeError(f"queues must be a list or tuple of queue names, not {type(queues).__name__}")
    if not queues:
        raise InvalidInputError("queues must name at least one queue")
    return [check_queue_name(q) for q in queues]
