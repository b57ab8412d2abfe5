"""``watch``: existing messages first, then new ones as they arrive, until SIGINT/SIGTERM (rc 0).

Built from the public API, since ``Queue.watch`` yields bodies only and the
output may need IDs (``-t``/``--json``):

- consume: ``queue.get_message()`` (waits; claims the oldest, with its ID);
- peek: a peeking ``Queue.watch(after=...)`` only as the wake-up, then
  ``peek_many(after=last printed ID)`` for what to print;
- ``--move DST``: the same wake-up on the source, then ``broker.move()``
  until it finds nothing (each move one transaction, as broker's watcher).

A message claimed but not printed (stdout closed, or the signal landed while
printing) goes back with ``return_messages``; broker loses it. SIGTERM is
turned into SIGINT, so both take the broker's interrupt-safe path.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

from sansio_broker import Message
from sansio_broker.adapters.blocking import Queue

from . import _io, _render
from ._commands import Context, _canonical
from ._run import Failure

PEEK_BATCH = 100


def _as_interrupt(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGINT)


def run_watch(c: Context) -> int:
    inv = c.inv
    if inv.dest is not None and inv.after is not None:
        raise Failure("--move drains ALL messages from source queue, incompatible with --after filtering")
    queue = _canonical(c, c.queue)
    dest = None if inv.dest is None else _canonical(c, inv.dest)
    if not inv.quiet:
        _io.err(_render.watch_banner(queue, peek=inv.peek, move_to=dest))
    if dest == queue:
        raise Failure("Cannot move messages to the same queue")
    # Both installed explicitly: a shell starts background jobs with SIGINT ignored (broker's watcher does the same).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    current: list[Message] = []  # claimed or moved, not yet printed
    try:
        for message in _messages(c, queue, dest, current):
            c.emit(message)
            current.clear()
    except _io.StdoutClosed:
        _give_back(c, queue, dest, current)
    except KeyboardInterrupt:
        _give_back(c, queue, dest, current)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    return 0


def _give_back(c: Context, queue: str, dest: str | None, current: list[Message]) -> None:
    if current and dest is None and not c.inv.peek:
        c.broker.return_messages(queue, current)


def _messages(c: Context, queue: str, dest: str | None, current: list[Message]) -> Iterator[Message]:
    broker = c.broker
    if dest is None and not c.inv.peek and c.after is None:
        handle = Queue(queue, broker)
        while True:
            message = handle.get_message()
            assert message is not None  # no timeout: it waits for one
            current.append(message)
            yield message
    checkpoint = 0 if c.after is None else c.after
    while True:
        if dest is not None:
            found = [m] if (m := broker.move(queue, dest)) is not None else []
            current.extend(found)
        elif c.inv.peek:
            found = broker.peek_many(queue, PEEK_BATCH, after_timestamp=checkpoint)
        else:
            found = [m] if (m := broker.claim(queue, after_timestamp=checkpoint)) is not None else []
            current.extend(found)
        for message in found:
            if c.inv.peek:
                checkpoint = message.id
            yield message
        if not found:
            # Wake up once something is pending after the checkpoint (a peeking watch never claims).
            with Queue(queue, broker).watch(peek=True, after=checkpoint) as wake:
                next(wake)
