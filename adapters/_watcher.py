"""The cross-process watcher: notices other connections' commits to one database file.

SQLite pushes no news of a commit, but ``PRAGMA data_version`` changes, for
a connection, whenever any *other* connection (another process, or another
connection of this process) committed. One daemon thread per broker, with a
connection of its own, checks it on the schedule of
``sansio_broker/watching.py`` and calls ``on_change()`` when it moved: a
hint that wakes the broker's waiters, who then try their claims. See
docs/architecture.md, "Waiting consumers".

**Two modes.** Polling (everywhere): the schedule alone decides, with a
ceiling of a few milliseconds while anyone waits. File events (Linux, when
inotify is available): the thread also sleeps on an inotify watch of the
database's directory. SQLite writes the ``-wal`` (or the database and its
``-journal``) with ``write(2)`` on every commit, so an event means "someone
may be committing": the thread checks at once and bursts for a few
milliseconds (the commit becomes visible a moment after its first write).
Idle, it checks once a second, a safety net in case an event is ever missed.
Any inotify failure falls back to polling.

**Threads and interrupts.** :meth:`Watcher.waiting` and :meth:`Watcher.stop`
run on any thread, including the blocking adapter's main thread, where a
``KeyboardInterrupt`` may land on any line. As in ``adapters/_signals.py``,
nothing there takes a lock: each change of shared state is one atomic
operation (an attribute assignment, one ``d[k] = v``, one ``next()``, one
``setdefault``) and the thread is woken by writing one byte to a pipe.

**Hints, not facts.** ``on_change`` may be called with nothing new to claim:
the first check after :meth:`Watcher.start` always calls it (a commit landing
before the thread read its first ``data_version`` would otherwise be lost),
and so does the first check after a pause in waiting when anything committed
meanwhile. It is never skipped for a commit seen by a check.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import math
import os
import pathlib
import random
import select
import socket
import sqlite3
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sansio_broker.watching import WatchSchedule, WatchSettings

__all__ = ["FILE_EVENT_SETTINGS", "Watcher"]

LOG = logging.getLogger("sansio_broker")

EVENT_CHECK_GAP = 0.0005
"""The least time between two checks that file events ask for (a busy writer sends many)."""

FILE_EVENT_SETTINGS = WatchSettings(burst_interval=0.0005, burst_window=0.003, idle_ceiling=1.0, growth=2.0, jitter=0.2)
"""The schedule when inotify reports writes: a short burst after each event, idle checks once a second.

The burst covers the moment between a writer's first ``write(2)`` and its
commit becoming visible (all frames written, and synced under
``synchronous=FULL``); the back-off after it catches slower commits. The
1 s ceiling bounds the wake-up if an event is ever missed and makes an idle
waiting process cost about one check a second. Measured on a 2-core VM
(another process committing every 0.3 s, ``synchronous=FULL``): median
0.4 ms from its commit to ``on_change``, about 19 checks (1.4-1.8 ms of
CPU) per commit, 0.02% of a core while waiting idle; polling with the
default 6 ms ceiling: median 3-3.7 ms, 1.5-2% of a core.
"""

JOIN_TIMEOUT = 5.0
"""How long :meth:`Watcher.stop` waits for the thread (busy in ``on_change`` or a locked database)."""

# inotify(7): the mask bits used, and each record's fixed part (int wd; uint32 mask, cookie, len).
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
WATCH_MASK = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
EVENT_HEADER = struct.Struct("iIII")
READ_SIZE = 65536
MAX_READS = 64
"""Reads per wake-up at most: a flood of events cannot keep the thread from checking."""

SELECT_FD_LIMIT = 1024
"""``FD_SETSIZE``: ``select.select`` refuses larger descriptors, so those wait with ``poll`` (ms resolution)."""

_FORKED_LEFTOVERS: list[sqlite3.Connection] = []
"""Connections inherited from the parent by a forked child, kept so they are never closed.

Closing a connection across ``fork()`` can checkpoint and delete a WAL the
parent still uses; SQLite's rule is to never touch it in the child.
"""


class Watcher:
    """Calls ``on_change()`` on its own thread when another connection committed to ``path``.

    ``path`` is the broker's database file (it must exist when the thread
    first checks: the watcher never creates it; a missing file is logged
    and retried). ``poll_settings`` is the schedule in polling mode
    (default ``WatchSettings()``); ``file_events=False`` forces polling.

    Lifecycle: :meth:`start` (idempotent, lazy: a watcher nobody starts
    costs two file descriptors), :meth:`waiting` to say whether anyone waits
    (nobody: no checks, the thread sleeps until woken), :meth:`stop`
    (idempotent, final: :meth:`start` after :meth:`stop` does nothing, so a
    waiter racing a close never fails here). ``checks`` counts
    ``data_version`` checks (read-only, for tests and benchmarks).
    """

    def __init__(
        self,
        path: str,
        on_change: Callable[[], object],
        *,
        poll_settings: WatchSettings | None = None,
        file_events: bool = True,
        busy_timeout_ms: int = 5000,
        name: str = "sansio-broker-watcher",
    ) -> None:
        self._path = os.path.realpath(path)  # SQLite puts the -wal next to the file a symlink names
        self._on_change = on_change
        self._poll_settings = poll_settings if poll_settings is not None else WatchSettings()
        self._file_events = file_events
        self._busy_timeout = busy_timeout_ms / 1000
        self._name = name
        self.checks = 0
        # Shared with the callers' threads, each changed by one atomic operation:
        self._requests: dict[int, bool] = {}  # waiting() calls by number; the thread applies the latest
        self._request_ids = itertools.count(1)
        self._stop_requested = False
        self._runner: dict[str, threading.Thread] = {}  # the one thread that runs (setdefault picks it)
        self._wake = _WakePipe()
        # Owned by the thread:
        self._connection: sqlite3.Connection | None = None
        self._inotify: int | None = None
        self._uses_file_events = False
        self._version: int | None = None
        self._error_logged = False

    @property
    def uses_file_events(self) -> bool:
        """True while the thread sleeps on inotify events (False before it set up, and after it ended)."""
        return self._uses_file_events

    def start(self) -> None:
        """Start the thread, unless it runs (or ran: a stopped watcher stays stopped).

        Concurrent calls may each start a thread; the first to claim the
        runner's slot (one ``setdefault``) runs, the others end at once. An
        interrupt before the thread started leaves the slot free, so the next
        call starts one.
        """
        if self._stop_requested or self._runner:
            return
        threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def waiting(self, active: bool) -> None:
        """``True``: a caller waits (a burst of checks begins); ``False``: nobody waits (checks stop).

        The last call wins (calls are numbered as they begin): the request is
        one dict assignment and the wake-up one byte written to the pipe.
        Never raises (but an interrupt); does nothing once stopped.
        """
        if self._stop_requested:
            return
        self._requests[next(self._request_ids)] = active
        self._wake.wake()

    def stop(self) -> None:
        """Stop the thread and wait (at most ``JOIN_TIMEOUT``) for it to close its connection and inotify fd.

        Idempotent. The wake-up pipe is closed when the watcher is garbage
        collected, not here: a ``waiting()`` racing this call in another
        thread could otherwise write its byte into whatever file reused the
        descriptor's number.
        """
        self._stop_requested = True
        self._wake.wake()
        thread = self._runner.get("thread")
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's thread, connection and descriptors so :meth:`start` starts afresh.

        The inherited connection is never closed (see ``_FORKED_LEFTOVERS``);
        the child's copies of the inotify and pipe descriptors are closed
        (the parent keeps its own) and a new pipe is made, so the processes
        never read each other's events or wake-ups. Call it only in the
        child, before any other thread uses the watcher.
        """
        if self._connection is not None:
            _FORKED_LEFTOVERS.append(self._connection)
        self._connection = None
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            _close_quietly(inotify)
        self._uses_file_events = False
        self._version = None
        self._requests = {}
        self._runner = {}
        self._wake.close()
        self._wake = _WakePipe()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        me = threading.current_thread()
        if self._runner.setdefault("thread", me) is not me:
            return  # a concurrent start() won
        if self._stop_requested:  # after the claim: a stop() that missed it set this first
            return
        try:
            self._serve()
        except Exception:
            LOG.exception("watcher of %s: stopped by an unexpected error", self._path)
        finally:
            self._close_resources()

    def _serve(self) -> None:
        """Sleep until woken, due, or told of a write; check when due; report changes."""
        wake = self._wake
        if self._file_events:
            self._inotify = _open_inotify(os.path.dirname(self._path))
        self._uses_file_events = self._inotify is not None
        names = _watched_names(os.path.basename(self._path))
        schedule = self._new_schedule()
        applied = 0  # the number of the last waiting() call applied
        due: float | None = None  # monotonic time of the next check; None: nobody waits
        self._check()  # the first data_version: always reported (see the module's docstring)
        last_check = time.monotonic()
        while not self._stop_requested:
            inotify = self._inotify if due is not None else None  # idle: events wait in the kernel's queue
            timeout = None if due is None else max(0.0, due - time.monotonic())
            ready = _wait_readable(wake.fileno(), inotify, timeout)
            if self._stop_requested:
                break
            if ready[0]:
                wake.drain()
            now = time.monotonic()
            applied, wanted = self._take_request(applied)
            if wanted is True:
                self._error_logged = False  # log a failing check once per burst
                due = now + schedule.activity(now)
            elif wanted is False:
                schedule.idle()
                due = None
            check = due is not None and now >= due
            if inotify is not None and ready[1]:
                written, lost = _read_events(inotify, names)
                if lost:  # the directory went away (deleted, unmounted): poll from now on
                    LOG.debug("watcher of %s: the inotify watch was removed; polling", self._path)
                    self._inotify = None
                    self._uses_file_events = False
                    _close_quietly(inotify)
                    schedule = self._new_schedule()
                    if due is not None:
                        due = now + schedule.activity(now)
                elif written and due is not None:
                    # Someone is writing: check now and burst (local_commit opens a
                    # window while anyone waits, which is what a write hint needs).
                    # At most one check per EVENT_CHECK_GAP however many events come:
                    # a busy writer (this process's own, often) must not keep the
                    # thread checking, and the GIL, busy.
                    schedule.local_commit(now)
                    soonest = last_check + EVENT_CHECK_GAP
                    if now >= soonest:
                        check = True
                    else:
                        due = min(due, soonest)
            if check:
                changed = self._check()
                now = last_check = time.monotonic()
                delay = schedule.checked(now, changed)
                due = None if delay is None else now + delay

    def _new_schedule(self) -> WatchSchedule:
        settings = FILE_EVENT_SETTINGS if self._inotify is not None else self._poll_settings
        return WatchSchedule(settings, random=random.random)

    def _take_request(self, applied: int) -> tuple[int, bool | None]:
        """The latest ``waiting()`` call not yet applied (``None``: none), and its number."""
        requests = self._requests
        if not requests:
            return applied, None
        numbers = list(requests)  # one atomic step: callers' inserts meanwhile are harmless
        latest = max(numbers)
        wanted = requests[latest]
        for number in numbers:
            requests.pop(number, None)
        if latest <= applied:  # a call that began before one already applied
            return applied, None
        return latest, wanted

    def _check(self) -> bool:
        """Read ``data_version``; on a change, call ``on_change``. Errors are logged, never raised."""
        self.checks += 1
        try:
            if self._connection is None:
                self._connection = self._connect()
            row = self._connection.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            if not self._error_logged:
                self._error_logged = True
                LOG.warning("watcher of %s: cannot read data_version (retrying): %s", self._path, exc)
            return False
        version = int(row[0])
        if version == self._version:
            return False
        self._version = version
        try:
            self._on_change()
        except Exception:
            LOG.exception("watcher of %s: on_change failed (%r)", self._path, self._on_change)
        return True

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: a missing file is an error, never a new empty database.
        uri = pathlib.Path(self._path).as_uri() + "?mode=rw"
        return sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)

    def _close_resources(self) -> None:
        self._uses_file_events = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:
                LOG.exception("watcher of %s: closing its connection failed", self._path)
        inotify, self._inotify = self._inotify, None
        if inotify is not None:
            _close_quietly(inotify)


class _WakePipe:
    """A self-pipe: any thread writes a byte, the watcher's thread wakes from its wait.

    A socket pair on Windows, where ``select`` takes only sockets. Both ends
    stay open until the object is collected (``weakref.finalize``): never
    closing them while a writer may still hold the number.
    """

    def __init__(self) -> None:
        self.wake: Callable[[], None]
        self.drain: Callable[[], None]
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._read_fd = reader.fileno()
            self.wake = functools.partial(_send_quietly, writer)
            self.drain = functools.partial(_drain_socket, reader)
            self._finalizer = weakref.finalize(self, _close_sockets, reader, writer)
        else:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            self._read_fd = read_fd
            self.wake = functools.partial(_write_quietly, write_fd)
            self.drain = functools.partial(_drain_fd, read_fd)
            self._finalizer = weakref.finalize(self, _close_fds, read_fd, write_fd)

    def fileno(self) -> int:
        return self._read_fd

    def close(self) -> None:
        self._finalizer()


def _write_quietly(fd: int) -> None:
    try:
        os.write(fd, b"x")
    except BlockingIOError:
        pass  # the pipe is full: the thread has wake-ups enough
    except OSError:
        LOG.debug("watcher: could not write its wake-up byte", exc_info=True)


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _send_quietly(sock: socket.socket) -> None:  # pragma: no cover - Windows only
    try:
        sock.send(b"x")
    except BlockingIOError:
        pass
    except OSError:
        LOG.debug("watcher: could not send its wake-up byte", exc_info=True)


def _drain_socket(sock: socket.socket) -> None:  # pragma: no cover - Windows only
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass


def _close_fds(*fds: int) -> None:
    for fd in fds:
        _close_quietly(fd)


def _close_sockets(*socks: socket.socket) -> None:  # pragma: no cover - Windows only
    for sock in socks:
        sock.close()


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _wait_readable(wake_fd: int, inotify: int | None, timeout: float | None) -> tuple[bool, bool]:
    """Sleep until ``wake_fd`` or ``inotify`` is readable or ``timeout`` passed: (wake readable, inotify readable)."""
    fds = [wake_fd] if inotify is None else [wake_fd, inotify]
    if max(fds) < SELECT_FD_LIMIT or not hasattr(select, "poll"):
        readable = select.select(fds, [], [], timeout)[0]
    else:  # a descriptor select() cannot take; poll() rounds the timeout up to a millisecond
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        millis = None if timeout is None else math.ceil(timeout * 1000)
        readable = [fd for fd, _ in poller.poll(millis)]
    return wake_fd in readable, inotify is not None and inotify in readable


def _watched_names(name: str) -> frozenset[bytes]:
    """The file names in the directory whose writes may be a commit to the database ``name``."""
    raw = os.fsencode(name)
    return frozenset({raw, raw + b"-wal", raw + b"-journal"})


@functools.cache
def _libc() -> Any:
    """The C library, with the two inotify functions typed (``OSError``/``AttributeError`` if absent)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_init1.restype = ctypes.c_int
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_add_watch.restype = ctypes.c_int
    return libc


def _open_inotify(directory: str) -> int | None:
    """A non-blocking inotify descriptor watching ``directory``, or ``None`` (logged at debug) where that fails."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = _libc()
    except (OSError, AttributeError) as exc:
        LOG.debug("watcher: no inotify (%s); polling", exc)
        return None
    fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))  # IN_NONBLOCK | IN_CLOEXEC
    if fd < 0:
        LOG.debug("watcher: inotify_init1 failed (%s); polling", os.strerror(ctypes.get_errno()))
        return None
    if libc.inotify_add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
        LOG.debug("watcher: cannot watch %s (%s); polling", directory, os.strerror(ctypes.get_errno()))
        _close_quietly(fd)
        return None
    return fd


def _read_events(fd: int, names: frozenset[bytes]) -> tuple[bool, bool]:
    """Drain the inotify queue: (was one of ``names`` written, was the watch removed).

    A queue overflow counts as a write: events were lost, one may have been ours.
    """
    written = lost = False
    for _ in range(MAX_READS):
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            break
        offset = 0
        while offset + EVENT_HEADER.size <= len(data):
            _wd, mask, _cookie, length = EVENT_HEADER.unpack_from(data, offset)
            start = offset + EVENT_HEADER.size
            name = data[start : start + length].split(b"\0", 1)[0]
            offset = start + length
            if mask & IN_Q_OVERFLOW or name in names:
                written = True
            if mask & IN_IGNORED:
                lost = True
        if len(data) < READ_SIZE - 4096:  # surely drained (a record is at most 16 + NAME_MAX + 1 bytes)
            break
    return written, lost
