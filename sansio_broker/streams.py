"""Streams: iterate a queue in batches, one operation per batch.

A driver loops ``batch = run(stream.next_batch())``, hands the messages out
one by one until a batch comes back empty, and runs ``stream.close()`` when
the consumer stops early. All delivery semantics live here:

* claim, ``commit_interval == 1``: exactly-once, one transaction per message,
  committed before the message is handed over;
* claim, ``commit_interval > 1``: at-least-once. A batch is claimed in an open
  transaction that commits only when the consumer asks for the next batch;
  closing early rolls it back, so the whole batch is delivered again. The
  write lock is held while the consumer works, as in SimpleBroker;
* peek: keyset pages (``ts >`` the last ID seen), never claims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from . import aliases
from .commands import COMMIT, Operation
from .core import Session
from .states import Event
from .types import Message
from .validation import check_bound, check_positive, check_queue_name, check_selection


class Stream(Protocol):
    """What a driver needs to iterate any stream."""

    # Whether its batches are claimed: what a driver must give back if the
    # consumer is interrupted before a committed message reaches it.
    claims: bool

    def next_batch(self) -> Operation[list[Message]]: ...
    def close(self) -> Operation[None]: ...


class ClaimStream:
    """Claims from one queue; see the module docstring for the guarantees."""

    claims = True

    def __init__(
        self,
        session: Session,
        queue: str,
        *,
        commit_interval: int = 1,
        after: int | None = None,
        before: int | None = None,
    ) -> None:
        self._session = session
        self._queue = check_queue_name(queue)
        self._interval = check_positive(commit_interval, "commit_interval")
        self._after = check_bound(after, "after_timestamp")
        self._before = check_bound(before, "before_timestamp")
        if self._interval > 1:
            session.check(Event.OPEN_STREAM)  # it commits on its own: refused inside a transaction
        self._statement = session.claim_statement(queue, self._interval, None, self._after, self._before)
        self._batch_size = 0  # > 0 while a claimed batch awaits its commit
        self.done = False

    @property
    def at_least_once(self) -> bool:
        return self._interval > 1

    def next_batch(self) -> Operation[list[Message]]:
        """Commit the previous batch (if any), then claim the next one."""
        if self._interval == 1:
            return self._next_single()
        return self._next_batch()

    def _next_single(self) -> Operation[list[Message]]:
        if self.done:
            return []
        message = yield from self._session.claim(self._queue, after=self._after, before=self._before)
        if message is None:
            self.done = True
            return []
        return [message]

    def _next_batch(self) -> Operation[list[Message]]:
        session = self._session
        if self._batch_size:
            yield from self._commit_batch()
        if self.done:
            return []
        session.check(Event.CLAIM_BATCH)
        yield from session.begin_with_retry()
        try:
            messages = yield from session.select(self._statement)
        except GeneratorExit:
            raise  # closed by its driver: nothing may be yielded now
        except BaseException:
            self.done = True
            yield from session.rollback_quietly()
            raise
        if not messages:
            self.done = True
            yield from session.rollback_quietly()
            return []
        self._batch_size = len(messages)
        session.hold_batch(self)
        return messages

    def close(self) -> Operation[None]:
        """Stop: an uncommitted batch is rolled back and will be delivered again."""
        self.done = True
        if self._batch_size:
            self._release()
            self._session.note_change(None)  # the batch is pending again: waiters may want it
            yield from self._session.rollback_quietly()

    def _commit_batch(self) -> Operation[None]:
        count = self._batch_size
        self._release()
        try:
            yield COMMIT
        except GeneratorExit:
            raise  # closed by its driver: nothing may be yielded now
        except BaseException:
            self.done = True
            yield from self._session.rollback_quietly()
            raise
        self._session.after_commit(count)

    def _release(self) -> None:
        # The session's state first: an interrupt between the two leaves the
        # transaction to the driver's clean-up, never to nobody.
        self._session.release_batch(self)
        self._batch_size = 0


class PeekStream:
    """Every matching message, oldest first, in pages; never claims."""

    claims = False

    def __init__(
        self,
        session: Session,
        queue: str,
        *,
        after: int | None = None,
        before: int | None = None,
        include_claimed: bool = False,
        page_size: int | None = None,
    ) -> None:
        self._session = session
        self._queue = check_queue_name(queue)
        self._after = check_bound(after, "after_timestamp")
        self._before = check_bound(before, "before_timestamp")
        self._include_claimed = include_claimed
        self._page = check_positive(
            page_size if page_size is not None else session.core.config.generator_batch_size, "page_size"
        )
        self.done = False

    def next_batch(self) -> Operation[list[Message]]:
        if self.done:
            return _nothing()
        return self._next_page()

    def _next_page(self) -> Operation[list[Message]]:
        page = yield from self._session.peek_many(
            self._queue, self._page, after=self._after, before=self._before, include_claimed=self._include_claimed
        )
        if len(page) < self._page:
            self.done = True
        if page:
            self._after = page[-1].id
        return page

    def close(self) -> Operation[None]:
        self.done = True
        return _nothing_none()


class OnceStream:
    """A stream of one batch: the answer of one operation (a single message,
    or a message by ID)."""

    def __init__(self, operation: Operation[list[Message]], *, claims: bool) -> None:
        self._operation = operation
        self.claims = claims
        self.done = False

    def next_batch(self) -> Operation[list[Message]]:
        if self.done:
            return _nothing()
        self.done = True
        return self._operation

    def close(self) -> Operation[None]:
        if not self.done:
            self.done = True
            self._operation.close()  # never started: nothing to undo
        return _nothing_none()


def open_stream(
    session: Session,
    queue: str,
    *,
    peek: bool = False,
    all_messages: bool = True,
    commit_interval: int = 1,
    message_id: int | str | None = None,
    after: int | None = None,
    before: int | None = None,
    include_claimed: bool = False,
) -> Stream:
    """The stream for the async example's ``stream_read`` arguments.

    ``all_messages=False`` or a ``message_id`` gives at most one message;
    otherwise every matching message, peeked or claimed per ``commit_interval``.
    """
    if aliases.alias_of(queue) is not None:
        # Refuse bad arguments now, as for a plain name; the alias waits for the first batch.
        check_selection(message_id, after, before)
        check_positive(commit_interval, "commit_interval")
        return AliasStream(
            session,
            queue,
            not peek,
            lambda target: open_stream(
                session,
                target,
                peek=peek,
                all_messages=all_messages,
                commit_interval=commit_interval,
                message_id=message_id,
                after=after,
                before=before,
                include_claimed=include_claimed,
            ),
        )
    if message_id is not None or not all_messages:
        if peek:
            return OnceStream(session._peek_rows(queue, 1, message_id, after, before, include_claimed), claims=False)
        return OnceStream(session._claim_rows(queue, 1, message_id, after, before), claims=True)
    if peek:
        return PeekStream(session, queue, after=after, before=before, include_claimed=include_claimed)
    return ClaimStream(session, queue, commit_interval=commit_interval, after=after, before=before)


class AliasStream:
    """A stream on ``@alias``: its first batch resolves the alias, then the
    stream on the target serves every batch (an alias retargeted meanwhile
    does not move a stream already running)."""

    def __init__(self, session: Session, operand: str, claims: bool, make: Callable[[str], Stream]) -> None:
        self.claims = claims
        self._session = session
        self._operand = operand
        self._make = make
        self._inner: Stream | None = None

    def next_batch(self) -> Operation[list[Message]]:
        if self._inner is None:
            return self._first_batch()
        return self._inner.next_batch()

    def _first_batch(self) -> Operation[list[Message]]:
        target = yield from self._session.resolve_queue(self._operand)
        self._inner = self._make(target)
        return (yield from self._inner.next_batch())

    def close(self) -> Operation[None]:
        return _nothing_none() if self._inner is None else self._inner.close()


def _nothing() -> Operation[list[Message]]:
    return []
    yield  # a generator that yields no command


def _nothing_none() -> Operation[None]:
    return None
    yield
