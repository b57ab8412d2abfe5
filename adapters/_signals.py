"""In-process change signals: one per database file of this process.

SQLite's ``PRAGMA data_version`` does not change for a connection's own
commits, so waiters in this process would otherwise learn of this process's
writes only from the cross-process watcher's next poll. Instead, after an
operation that can make a message pending has committed, its engine calls
``signal_for(path).changed(queues)``, and every engine with waiters on that
file (any broker object of this process, sharing the file) is woken at once.
See docs/architecture.md, "Waiting consumers".

**Hints, not facts.** A wake says "these queues (``None``: any queue) may
have changed". Correctness comes from the claim, never from the wake, and a
subscriber must tolerate:

* spurious wakes: a subscription cancelled while :meth:`FileSignal.changed`
  runs may be called once more, and a file whose inode number was reused
  after deletion shares its predecessor's signal;
* missed wakes: a subscription made while ``changed`` runs may miss that one
  hint, and an interrupt landing inside ``changed`` skips the subscribers not
  yet called. The cross-process watcher's next check is the safety net.

**Threads and interrupts.** ``changed``, ``subscribe`` and ``cancel`` run on
any thread, including the blocking adapter's main thread, where a
``KeyboardInterrupt`` may land on any line (the fault kit in ``tests/faults``
injects one at every line). A ``with lock:`` whose exit is interrupted leaks
the lock, so nothing here takes a lock: each change of shared state is one
atomic operation on a dict (``d[k] = v`` as ``setdefault``, ``d.pop(k, None)``,
``list(d.values())``) or one ``next()`` of an ``itertools.count``, as in
``BrokerCore`` (sansio_broker/core.py).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable

__all__ = ["FileSignal", "Subscription", "Wake", "signal_for", "signal_named"]

# The logger of adapters/_sync.py (``_sync.LOG``), fetched by name so this
# module imports nothing of the adapters: engines and drivers may import it.
LOG = logging.getLogger("sansio_broker")

Wake = Callable[[frozenset[str] | None], object]
"""A subscriber: called with the queues that may have changed (``None``: any).

It runs in the thread that committed, right after its COMMIT, so it must be
quick and thread-safe (release a lock, ``loop.call_soon_threadsafe``, trio's
``token.run_sync_soon``). An exception it raises is logged and dropped.
"""


class Subscription:
    """A subscriber's token: :meth:`cancel` stops its wakes.

    Made only by :meth:`FileSignal.subscribe`.
    """

    __slots__ = ("_key", "_signal", "wake")

    def __init__(self, signal: FileSignal, key: int, wake: Wake) -> None:
        self._signal = signal
        self._key = key
        self.wake = wake

    def cancel(self) -> None:
        """Stop the wakes; idempotent, so a clean-up cut short can simply run again.

        One atomic ``pop``: an interrupt lands either before it (still
        subscribed) or after it (cancelled). A ``changed`` already running in
        another thread may still call the wake once (a hint).
        """
        self._signal._subscribers.pop(self._key, None)


class FileSignal:
    """The change signal of one database file, shared by every broker of this process on it.

    Get it with :func:`signal_for`, never by constructing one: two brokers
    on one file must hold the same object to wake each other.
    """

    __slots__ = ("_ids", "_subscribers")

    def __init__(self) -> None:
        # Keyed by a number from ``_ids`` (``next`` is atomic): an insertion-
        # ordered dict whose entries are added and removed by single operations.
        self._subscribers: dict[int, Subscription] = {}
        self._ids = itertools.count()

    def subscribe(self, wake: Wake) -> Subscription:
        """Call ``wake`` on every later :meth:`changed` until the token is cancelled.

        The token is registered and handed back in one line (``setdefault``
        returns it), so an interrupt either lands before the registration
        (nothing subscribed, nothing to cancel) or not at all: no subscription
        is ever left without a token that can cancel it.
        """
        token = Subscription(self, next(self._ids), wake)
        return self._subscribers.setdefault(token._key, token)

    def changed(self, queues: Iterable[str] | None = None) -> None:
        """Wake every subscriber: ``queues`` (``None``: any queue) may have changed.

        Runs after every commit that can make a message pending, so with no
        subscriber it is one test of one dict. It never raises an
        ``Exception``: nothing that can fail may stand between a commit and
        its caller. A subscriber's exception is logged to the ``sansio_broker``
        logger and the others are still called; a ``BaseException`` (an
        interrupt) goes on, like any interrupt, and the subscribers not yet
        called miss this hint.
        """
        if not self._subscribers:
            return
        self._wake_all(queues)

    def _wake_all(self, queues: Iterable[str] | None) -> None:
        # Apart from changed() so its common case stays one test.
        hint: frozenset[str] | None = None
        if queues is not None:
            try:
                hint = frozenset((queues,)) if isinstance(queues, str) else frozenset(queues)
            except Exception:
                # Unreadable queues: the broadest hint is still a correct one.
                LOG.exception("change signal: could not read the changed queues %r", queues)
        # A snapshot (one atomic step): subscribe/cancel in other threads meanwhile are harmless.
        for token in list(self._subscribers.values()):
            try:
                token.wake(hint)
            except Exception:
                LOG.exception("change signal: a subscriber failed (%r)", token.wake)


_REGISTRY: dict[tuple[int, int] | str, FileSignal] = {}
"""Every file's signal, by ``(st_dev, st_ino)``.

Entries are never removed (but in a forked child): a signal is one small
object per file this process has opened, and removing one while a broker
still held it would let a later broker on that file get a different one.
"""


def signal_for(path: str | os.PathLike[str]) -> FileSignal:
    """The signal of the database file at ``path``.

    Keyed by the file's identity, not its name, so every path to one file (a
    symlink, a relative path, another spelling) gives the same signal. The
    file must exist (``OSError`` otherwise): a broker creates its file when it
    opens, before anyone can wait, so engines look their signal up after
    that. ``setdefault`` is atomic, so two threads asking at once for a new
    file's signal get the same object.
    """
    info = os.stat(path)
    key = (info.st_dev, info.st_ino)
    found = _REGISTRY.get(key)
    if found is None:
        found = _REGISTRY.setdefault(key, FileSignal())
    return found


def signal_named(name: str) -> FileSignal:
    """The signal of a database that is no file (a PostgreSQL schema), by a
    name every broker on it spells alike (its URL and schema)."""
    found = _REGISTRY.get(name)
    if found is None:
        found = _REGISTRY.setdefault(name, FileSignal())
    return found


def _after_fork_in_child() -> None:
    """Forget the parent's subscribers: their threads and event loops do not exist here.

    A broker object that lives on in the child still holds its old signal;
    emptied, it wakes nobody, so such a broker looks its signal up again
    (``signal_for``) to share one with the child's new brokers. Hooks run
    in registration order, so an adapter that does that in its own
    ``after_in_child`` hook must import this module before registering it
    (a top-level import does), or the lookup would find the registry not yet
    cleared.
    """
    for signal in list(_REGISTRY.values()):
        signal._subscribers.clear()
    _REGISTRY.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
