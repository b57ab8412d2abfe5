"""The cross-process watcher (adapters/_watcher.py): commits by other connections and processes wake it.

Real database files made by the blocking broker, real connections, real
subprocesses; both modes (inotify file events, and polling). Waits are hang
guards only; the few fixed pauses give a wrong watcher time to misbehave
(a spurious call, a check while nobody waits), never a deadline to meet.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sansio_broker.adapters import _watcher
from sansio_broker.adapters._watcher import Watcher
from sansio_broker.adapters.blocking import Broker
from sansio_broker.watching import WatchSettings
from tests.blocking.blocking_support import QUIET

HANG_GUARD = 30.0  # seconds; never reached unless something hangs
SETTLE = 0.3  # seconds during which a correct watcher does nothing
LINUX = sys.platform.startswith("linux")


class Calls:
    """An ``on_change`` that counts its calls and lets a test wait for the next one."""

    def __init__(self, fail: bool = False) -> None:
        self.count = 0
        self.fail = fail
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()
        if self.fail:
            raise RuntimeError("on_change failed on purpose")

    def wait_beyond(self, count: int) -> bool:
        """Wait (hang-guarded) until more than ``count`` calls happened."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count > count, HANG_GUARD)


def wait_until(condition: Callable[[], bool]) -> bool:
    """Hang-guarded wait for a condition only the watcher's thread can make true."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A broker's database with its schema and one message, and no ``-wal`` file (yet)."""
    path = str(tmp_path / "broker.db")
    with Broker(path, config=QUIET) as broker:
        broker.write("q", "first")
    # The last connection to close (after reading) checkpoints the WAL into the file and deletes it.
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT COUNT(*) FROM messages").fetchone() == (1,)
    connection.close()
    assert not os.path.exists(path + "-wal")
    return path


@pytest.fixture(params=[True, False], ids=["file-events", "polling"])
def file_events(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def make_watcher(db: str, file_events: bool) -> Iterator[Callable[[Calls], Watcher]]:
    """Start a watcher on ``db`` in the mode under test, once its first check has reported (it always does)."""
    made: list[Watcher] = []

    def make(calls: Calls) -> Watcher:
        watcher = Watcher(db, calls, file_events=file_events, name="test-watcher")
        made.append(watcher)
        watcher.start()
        assert calls.wait_beyond(0), "the first check did not report"
        assert watcher.uses_file_events is (file_events and LINUX)
        return watcher

    yield make
    for watcher in made:
        watcher.stop()


def commit(path: str, body: str = "more") -> None:
    """One INSERT committed by a connection of its own (closed afterwards)."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(
            "INSERT INTO messages (queue, body, ts) VALUES ('q', ?, (SELECT MAX(ts) + 1 FROM messages))", (body,)
        )
    finally:
        connection.close()


SUBPROCESS_COMMIT = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("INSERT INTO messages (queue, body, ts) VALUES ('q', 'remote', (SELECT MAX(ts) + 1 FROM messages))")
connection.close()
"""


# ============================================================ changes seen


def test_a_commit_by_another_connection_calls_on_change(make_watcher: Callable[[Calls], Watcher], db: str) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    commit(db)
    assert calls.wait_beyond(1)


def test_a_commit_by_another_process_calls_on_change(make_watcher: Callable[[Calls], Watcher], db: str) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    subprocess.run([sys.executable, "-c", SUBPROCESS_COMMIT, db], check=True, timeout=HANG_GUARD)
    assert calls.wait_beyond(1)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM messages WHERE body = 'remote'").fetchone() == (1,)


def test_the_blocking_brokers_writes_from_this_process_call_on_change(
    make_watcher: Callable[[Calls], Watcher], db: str
) -> None:
    # The watcher started with no -wal; the broker's first write (another connection) is seen.
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    with Broker(db, config=QUIET) as broker:
        for n in range(3):
            seen = calls.count
            broker.write("q", f"local {n}")
            assert calls.wait_beyond(seen)


def test_no_call_while_nobody_commits(make_watcher: Callable[[Calls], Watcher], db: str) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    commit(db)
    assert calls.wait_beyond(1)
    checks = watcher.checks
    time.sleep(SETTLE)
    assert calls.count == 2  # nothing committed since: no spurious call
    assert wait_until(lambda: watcher.checks > checks)  # though it still checks (a waiter waits)


def test_a_waiting_call_before_start_is_applied(db: str, file_events: bool) -> None:
    calls = Calls()
    watcher = Watcher(db, calls, file_events=file_events)
    try:
        watcher.waiting(True)
        watcher.start()
        assert calls.wait_beyond(0)
        commit(db)
        assert calls.wait_beyond(1)
    finally:
        watcher.stop()


@pytest.mark.skipif(not LINUX, reason="inotify")
def test_file_events_alone_report_a_commit_and_only_the_databases_files_count(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A schedule that never checks on its own within the test: only events can.
    hour = WatchSettings(burst_interval=3600.0, burst_window=0.001, idle_ceiling=3600.0)
    monkeypatch.setattr(_watcher, "FILE_EVENT_SETTINGS", hour)
    calls = Calls()
    watcher = Watcher(db, calls)
    try:
        watcher.start()
        assert calls.wait_beyond(0)
        assert watcher.uses_file_events
        watcher.waiting(True)
        time.sleep(SETTLE)  # events queued while nobody waited (its own connection made the -wal) are read
        checks = watcher.checks
        (tmp_path / "broker.db-shm-not").write_text("x")  # neither the database, its -wal nor its -journal
        (tmp_path / "other.db-wal").write_text("x")
        time.sleep(SETTLE)
        assert watcher.checks == checks
        commit(db)  # its writes (and the connection's close) are events: the check after them sees it
        assert calls.wait_beyond(1)
    finally:
        watcher.stop()


# ============================================================ nobody waits: no checks


def test_nobody_waiting_means_no_checks_and_changes_meanwhile_are_reported_on_resume(
    make_watcher: Callable[[Calls], Watcher], db: str
) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    checks = watcher.checks
    assert wait_until(lambda: watcher.checks > checks)

    watcher.waiting(False)
    time.sleep(SETTLE)  # a check already running when the request came may still finish
    checks = watcher.checks
    commit(db)  # with file events, the write is in the queue; without, nobody polls
    time.sleep(SETTLE)
    assert watcher.checks == checks
    assert calls.count == 1

    watcher.waiting(True)
    assert calls.wait_beyond(1)  # the commit made while nobody waited


def test_the_last_waiting_call_wins(make_watcher: Callable[[Calls], Watcher], db: str) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    for _ in range(50):
        watcher.waiting(True)
        watcher.waiting(False)
    time.sleep(SETTLE)
    checks = watcher.checks
    commit(db)
    time.sleep(SETTLE)
    assert watcher.checks == checks


# ============================================================ failures


def test_on_change_raising_is_logged_and_the_watcher_goes_on(
    make_watcher: Callable[[Calls], Watcher], db: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(fail=True)
    with caplog.at_level(logging.ERROR, logger="sansio_broker"):
        watcher = make_watcher(calls)
        watcher.waiting(True)
        for n in range(1, 3):
            commit(db)
            assert calls.wait_beyond(n)  # called again after each failure

        def failures() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "on_change failed" in r.getMessage()]

        assert wait_until(lambda: len(failures()) >= 3)  # logged just after the call raised
    assert all(r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in failures())


def test_a_missing_file_is_logged_and_retried_never_created(
    tmp_path: Path, file_events: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "later.db")
    calls = Calls()
    watcher = Watcher(path, calls, file_events=file_events)
    try:
        with caplog.at_level(logging.WARNING, logger="sansio_broker"):
            watcher.start()
            watcher.waiting(True)
            assert wait_until(lambda: any("cannot read data_version" in r.getMessage() for r in caplog.records))
        assert not os.path.exists(path)
        assert calls.count == 0
        with Broker(path, config=QUIET) as broker:
            broker.write("q", "first")
        assert calls.wait_beyond(0)
    finally:
        watcher.stop()


# ============================================================ stop, fds, fork


def watcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "test-watcher"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_stop_is_idempotent_joins_the_thread_and_closes_what_it_opened(db: str, file_events: bool) -> None:
    calls = Calls()
    gc.collect()  # earlier tests' watchers: their pipes close when collected
    before = open_fds()
    watcher = Watcher(db, calls, file_events=file_events, name="test-watcher")
    constructed = open_fds()  # its wake-up pipe
    watcher.start()
    watcher.start()
    assert calls.wait_beyond(0)
    assert len(watcher_threads()) == 1
    assert open_fds() > constructed  # the connection (and inotify)

    watcher.stop()
    assert watcher_threads() == []
    assert open_fds() == constructed
    assert not watcher.uses_file_events
    watcher.stop()
    watcher.waiting(True)

    # start() after stop() is refused: nothing runs, nothing is reported.
    watcher.start()
    assert watcher_threads() == []
    commit(db)
    time.sleep(SETTLE)
    assert calls.count == 1
    assert open_fds() == constructed

    del watcher
    gc.collect()
    assert open_fds() == before


def test_stop_before_start_and_stop_from_on_change(db: str) -> None:
    idle = Watcher(db, Calls(), name="test-watcher")
    idle.stop()
    idle.start()
    assert watcher_threads() == []

    stopped = threading.Event()
    holder: list[Watcher] = []

    def stop_me() -> None:
        holder[0].stop()  # on the watcher's own thread: no join of itself
        stopped.set()

    watcher = Watcher(db, stop_me, name="test-watcher")
    holder.append(watcher)
    watcher.start()
    assert stopped.wait(HANG_GUARD)
    assert wait_until(lambda: watcher_threads() == [])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_starts_afresh_and_the_parent_goes_on(
    make_watcher: Callable[[Calls], Watcher], db: str
) -> None:
    calls = Calls()
    watcher = make_watcher(calls)
    watcher.waiting(True)
    pid = os.fork()
    if pid == 0:  # the child: only this thread exists
        code = 1
        try:
            child_calls = Calls()
            watcher._on_change = child_calls  # the child's broker would wake its own waiters
            watcher.forget_after_fork()
            watcher.start()
            watcher.waiting(True)
            if child_calls.wait_beyond(0):
                commit(db, "from the child")
                code = 0 if child_calls.wait_beyond(1) else 2
            watcher.stop()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent saw the child's commit, and still sees the next one.
    assert calls.wait_beyond(1)
    seen = calls.count
    commit(db)
    assert calls.wait_beyond(seen)
