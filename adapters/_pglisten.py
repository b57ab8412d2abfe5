"""How a broker on PostgreSQL hears other connections' changes: LISTEN.

Every change that makes messages pending (a write, a move, a give-back, a
rename) sends ``pg_notify(channel, queue)`` in the same statement, ours and
simplebroker-pg's alike, so the notification arrives exactly when the
change is committed. One :class:`PgListener` per broker, started the first
time anyone waits, holds one connection of its own in autocommit mode,
``LISTEN``\\ s on the schema's channel and passes each batch of queue names
to the engine (``deliver``), which claims for its waiters.

Notifications are hints, as file signals are (see :mod:`._signals`): a
connection lost and made again, or a sender that does not notify, could
miss one. So after (re)connecting it delivers ``None`` ("any queue may have
changed"), and while anyone waits it delivers ``None`` every
``fallback_seconds`` without notifications: the polling fallback.

Imported only when a broker on PostgreSQL first waits.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from sansio_broker import Config, DatabaseError
from sansio_broker.postgres import PostgresDialect

from ._news import News
from ._pg import describe
from ._pgsync import connect
from ._signals import LOG, signal_named
from ._watcher import JOIN_TIMEOUT, _WakePipe

Deliver = Callable[[frozenset[str] | None], object]

FALLBACK_SECONDS = 1.0
"""While anyone waits: at least this often, re-check every waited queue."""

RECONNECT_SECONDS = (0.05, 0.2, 1.0, 2.0)
"""Pauses between attempts to (re)connect, the last one repeated."""


class PgListener:
    """A thread that LISTENs on one channel and delivers the payloads (queue names).

    The same lifecycle as :class:`~._watcher.Watcher`: :meth:`start` (lazy,
    idempotent), :meth:`waiting` (whether the fallback polls),
    :meth:`stop` (final), :meth:`forget_after_fork`.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        listen: str,
        deliver: Deliver,
        label: str,
        *,
        fallback_seconds: float = FALLBACK_SECONDS,
    ) -> None:
        self._connect = connect
        self._listen = listen
        self._deliver = deliver
        self._label = label
        self._fallback = fallback_seconds
        self._active = False
        self._stop_requested = False
        self._runner: dict[str, threading.Thread] = {}  # the one thread that runs (setdefault picks it)
        self._wake = _WakePipe()
        self._connection: psycopg.Connection[Any] | None = None  # owned by the thread
        self.deliveries = 0  # batches delivered (read-only, for tests)

    def start(self) -> None:
        if self._stop_requested or self._runner:
            return
        threading.Thread(target=self._run, name="sansio-broker-pg-listener", daemon=True).start()

    def waiting(self, active: bool) -> None:
        if self._stop_requested:
            return
        self._active = active
        self._wake.wake()

    def stop(self) -> None:
        self._stop_requested = True
        self._wake.wake()
        thread = self._runner.get("thread")
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's connection is never closed here (closing
        would say goodbye on the parent's socket); the thread starts afresh."""
        self._connection = None
        self._runner = {}
        self._wake.close()
        self._wake = _WakePipe()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        me = threading.current_thread()
        if self._runner.setdefault("thread", me) is not me or self._stop_requested:
            return
        try:
            self._serve()
        except Exception:
            LOG.exception("listener of %s: stopped by an unexpected error", self._label)
        finally:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()

    def _serve(self) -> None:
        failures = 0
        while not self._stop_requested:
            try:
                self._listen_once()
                failures = 0
            except (psycopg.Error, DatabaseError) as exc:  # DatabaseError: connecting failed (see _pgsync.connect)
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.close()
                if failures == 0:
                    LOG.warning("listener of %s: lost its connection (reconnecting): %s", self._label, exc)
                pause = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                self._sleep(pause)

    def _listen_once(self) -> None:
        """Connect, LISTEN, then deliver notifications until stopped (or an error)."""
        connection = self._connection = self._connect()
        connection.execute(self._listen)
        self._tell(None)  # whatever changed before we listened
        wake = self._wake
        quiet_since = time.monotonic()
        while not self._stop_requested:
            timeout = None
            if self._active:
                timeout = max(0.0, quiet_since + self._fallback - time.monotonic())
            ready, _, _ = select.select([connection.fileno(), wake.fileno()], [], [], timeout)
            if self._stop_requested:
                return
            if wake.fileno() in ready:
                wake.drain()
            if connection.fileno() in ready:
                queues = frozenset(n.payload for n in connection.notifies(timeout=0))
                if queues:
                    quiet_since = time.monotonic()
                    self._tell(queues)
                    continue
            if self._active and time.monotonic() >= quiet_since + self._fallback:
                quiet_since = time.monotonic()
                self._tell(None)
            elif not self._active:
                quiet_since = time.monotonic()

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` unless stopped first."""
        if not self._stop_requested:
            ready, _, _ = select.select([self._wake.fileno()], [], [], seconds)
            if ready:
                self._wake.drain()

    def _tell(self, queues: frozenset[str] | None) -> None:
        self.deliveries += 1
        try:
            self._deliver(queues)
        except Exception:
            LOG.exception("listener of %s: could not pass on a change", self._label)


def postgres_news(dsn: str, config: Config, deliver: Deliver) -> News:
    """The news of a PostgreSQL schema: this process's signal of it, and a
    LISTEN thread hearing every connection's notifications."""
    schema = config.backend_schema
    label = describe(dsn, schema)

    def listener(deliver: Deliver) -> PgListener:
        return PgListener(lambda: connect(dsn, label), PostgresDialect(schema).LISTEN, deliver, label)

    return News(deliver, lambda: signal_named(f"{dsn}#{schema}"), listener)
