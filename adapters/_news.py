"""How an engine hears that queues may have new messages, and tells others.

Every engine, whether or not anyone waits on it, tells the process-wide
signal of its file (:mod:`._signals`) after each commit that may have made
messages pending: a waiter on another broker object of this process, or on
another thread's or loop's engine, wakes at once. While someone waits on
this engine, it also listens: to that signal, and to a :class:`~._watcher.Watcher`
thread that notices other processes' commits. Both call ``deliver`` from
whatever thread they run in; the engine makes that thread-safe.

Written once for every engine; free of any runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sansio_broker import Config
from sansio_broker.driver import Session
from sansio_broker.driver import State as SessionState

from ._signals import LOG, FileSignal, Subscription, signal_for

Deliver = Callable[[frozenset[str] | None], object]
"""Called (from any thread) with the queues that may have changed (``None``: any)."""


class Watching(Protocol):
    """A thread that hears other processes' commits (:class:`~._watcher.Watcher`,
    or on PostgreSQL :class:`~._pglisten.PgListener`)."""

    def start(self) -> None: ...
    def waiting(self, active: bool) -> None: ...
    def stop(self) -> None: ...
    def forget_after_fork(self) -> None: ...


class News:
    """One engine's link to change news: told after its commits, listening while anyone waits.

    ``signal``: this process's signal of the database (looked up once it
    exists); ``watcher``: makes the thread that hears other processes, given
    where to deliver (made when a waiter first listens: a process that never
    waits skips its set-up cost).
    """

    __slots__ = ("_deliver", "_make_signal", "_make_watcher", "_signal", "_subscription", "_watcher", "listening")

    def __init__(
        self, deliver: Deliver, signal: Callable[[], FileSignal], watcher: Callable[[Deliver], Watching]
    ) -> None:
        self._deliver = deliver
        self._make_signal = signal
        self._make_watcher = watcher
        self._signal: FileSignal | None = None
        self._subscription: Subscription | None = None
        self._watcher: Watching | None = None
        self.listening = False

    def committed(self, session: Session) -> None:
        """After an operation on ``session``: tell the file's signal what may
        be pending now. Never raises: it stands between a commit and its caller.

        Inside an explicit transaction nothing is visible to others yet; the
        news waits for the commit.
        """
        if not session.has_changes or session.state is not SessionState.IDLE:
            return
        changes = session.take_changes()
        signal = self._signal
        if signal is None:
            try:
                signal = self._signal = self._make_signal()
            except OSError:  # the file is gone: nobody can be waiting on it
                return
        signal.changed(changes)

    def listen(self) -> None:
        """Someone waits: hear this process's commits and other processes' from now on.

        The watcher's first check after it starts hears "changed", so a
        commit made between a waiter's last look and this call is not missed.
        """
        if self.listening:
            return
        self.listening = True
        signal = self._signal
        if signal is None:
            signal = self._signal = self._make_signal()
        if self._subscription is None:
            self._subscription = signal.subscribe(self._deliver)
        watcher = self._watcher
        if watcher is None:
            watcher = self._watcher = self._make_watcher(self._deliver)
            watcher.start()
        watcher.waiting(True)

    def quiet(self) -> None:
        """Nobody waits any more: stop listening (the watcher sleeps; commits cost one test again)."""
        if not self.listening:
            return
        self.listening = False
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.cancel()
        if self._watcher is not None:
            self._watcher.waiting(False)

    def close(self) -> None:
        """The broker closes: stop listening and stop the watcher thread."""
        self.quiet()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def forget_after_fork(self) -> None:
        """In a forked child: the watcher thread and the subscription are the parent's."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.forget_after_fork()
        self._subscription = None
        self._signal = None
        self.listening = False


def file_news(path: str, config: Config, deliver: Deliver) -> News:
    """The news of a SQLite file: its signal, and a watcher of its ``data_version``."""
    return News(deliver, lambda: signal_for(path), lambda deliver: _file_watcher(path, config, deliver))


def _file_watcher(path: str, config: Config, deliver: Deliver) -> Watching:
    from sansio_broker.watching import WatchSettings

    from ._watcher import Watcher

    def changed() -> None:
        try:
            deliver(None)
        except Exception:
            LOG.exception("waiting consumers: could not pass on a change another process made")

    return Watcher(
        path,
        changed,
        poll_settings=WatchSettings.from_config(config),
        busy_timeout_ms=config.busy_timeout_ms,
    )
