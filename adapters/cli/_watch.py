"""``watch``: existing messages first, then new ones as they arrive, until SIGINT/SIGTERM (rc 0).

``Queue.watch_messages`` (with IDs, for ``-t``/``--json``) does the waiting:
consume claims each message, ``--peek`` follows a checkpoint (``--after``, or
0: everything pending, then what arrives), ``--move DST`` forwards each message
before it is printed. Consuming only what is newer than ``--after`` claims by
that bound, with a peeking watch as the wake-up.

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
    """Claimed (consume), seen (``--peek``) or moved (``--move``) messages, as they arrive."""
    handle = Queue(queue, c.broker)
    if dest is not None:
        yield from handle.watch_messages(move_to=dest)
    elif c.inv.peek:
        yield from handle.watch_messages(peek=True, after=c.after or 0)
    elif c.after is None:
        for message in handle.watch_messages():
            current.append(message)
            yield message
    else:
        # Consume only what is newer than --after: claims by bound, woken by a peeking watch.
        while True:
            found = c.broker.claim(queue, after_timestamp=c.after)
            if found is None:
                with handle.watch(peek=True, after=c.after) as wake:
                    next(wake)
                continue
            current.append(found)
            yield found
