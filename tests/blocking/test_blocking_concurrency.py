"""Threads sharing one Broker, and a Broker carried across os.fork()."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.blocking import Broker
from tests.blocking.blocking_support import QUIET
from tests.support import internals
from tests.support.rawdb import rows

WRITERS = 8
CLAIMERS = 8
PER_WRITER = 40


def test_threads_write_and_claim_exactly_once(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    connections: list[sqlite3.Connection] = []
    connections_lock = threading.Lock()
    claimed: list[list[Message]] = [[] for _ in range(CLAIMERS)]
    written: list[list[int]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []
    writers_done = threading.Event()
    start = threading.Barrier(WRITERS + CLAIMERS)

    def remember_connection() -> None:
        with connections_lock:
            connections.append(internals.thread_sqlite_connection(broker))

    def writer(n: int) -> None:
        try:
            remember_connection()
            start.wait()
            for i in range(PER_WRITER):
                if i % 10 == 9:
                    written[n] += broker.write_many("q", [f"w{n}-{i}-a", f"w{n}-{i}-b"])
                else:
                    written[n].append(broker.write("q", f"w{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    def claimer(n: int) -> None:
        try:
            remember_connection()
            start.wait()
            while True:
                message = broker.claim("q")
                if message is not None:
                    claimed[n].append(message)
                elif writers_done.is_set() and broker.peek("q") is None:
                    return
                else:
                    time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    # claim_many(3) hands over up to three: keep every one of them.
    def claimer_many(n: int) -> None:
        try:
            remember_connection()
            start.wait()
            while True:
                batch = broker.claim_many("q", 3)
                claimed[n].extend(batch)
                if not batch:
                    if writers_done.is_set() and broker.peek("q") is None:
                        return
                    time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    threads += [threading.Thread(target=claimer_many if n % 2 == 0 else claimer, args=(n,)) for n in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads[:WRITERS]:
        thread.join(timeout=30)
    writers_done.set()
    for thread in threads[WRITERS:]:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    all_written = [i for ids in written for i in ids]
    all_claimed = [m for batch in claimed for m in batch]
    expected_count = WRITERS * (PER_WRITER + PER_WRITER // 10)
    assert len(all_written) == expected_count
    assert len(set(all_written)) == expected_count
    counts = Counter(m.id for m in all_claimed)
    assert sorted(counts) == sorted(all_written)
    assert max(counts.values()) == 1  # nothing handed to two claimers
    for ids in written:  # each writer's IDs increase
        assert ids == sorted(ids)
    for batch in claimed:  # each claimer receives messages oldest first
        assert [m.id for m in batch] == sorted(m.id for m in batch)
    # Every thread had its own connection (plus the constructing thread's).
    assert len(connections) == WRITERS + CLAIMERS
    assert len({id(c) for c in connections}) == WRITERS + CLAIMERS
    main_connection = internals.thread_sqlite_connection(broker)
    assert all(c is not main_connection for c in connections)
    assert len(rows(db_path)) == expected_count
    assert all(claimed_flag == 1 for *_, claimed_flag in rows(db_path))

    broker.close()
    for connection in [*connections, main_connection]:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")


def test_close_closes_connections_of_finished_threads(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    seen: list[sqlite3.Connection] = []

    def work() -> None:
        broker.write("q", "x")
        seen.append(internals.thread_sqlite_connection(broker))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    seen.append(internals.thread_sqlite_connection(broker))
    assert seen[0] is not seen[1]
    broker.close()
    for connection in seen:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")
    with pytest.raises(RuntimeError, match="closed"):
        broker.write("q", "after close")
    assert [b for _, b, _, _ in rows(db_path)] == ["x"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork semantics tested on Linux")
def test_fork_child_uses_new_connection(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    try:
        before = broker.write_many("q", ["p1", "p2"])
        assert broker.claim("q") == Message("p1", before[0])
        parent_connection = internals.thread_sqlite_connection(broker)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            status = 99
            try:
                os.close(read_end)
                child_connection = internals.thread_sqlite_connection(broker)
                if child_connection is parent_connection:
                    status = 10
                else:
                    written = broker.write("q", "from child")
                    got = broker.claim("q")
                    again = broker.claim("q")
                    if got is None or got.body != "p2":
                        status = 11
                    elif again is None or again != Message("from child", written):
                        status = 12
                    elif internals.thread_sqlite_connection(broker) is parent_connection:
                        status = 13
                    else:
                        broker.write("from_child", str(written))
                        broker.close()
                        status = 0
                os.write(write_end, b"done")
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.read() == b"done"
        _, wait_status = os.waitpid(pid, 0)
        assert os.WIFEXITED(wait_status)
        assert os.WEXITSTATUS(wait_status) == 0
        # The parent's broker and connection keep working, and see the child's work.
        assert internals.thread_sqlite_connection(broker) is parent_connection
        assert parent_connection.execute("SELECT 1").fetchone() == (1,)
        assert broker.queue_stats("q").pending == 0
        (child_id,) = broker.read("from_child")
        later = broker.write("q", "parent after fork")
        assert later > int(child_id)
        assert broker.claim("q") == Message("parent after fork", later)
        assert [b for _, b, _, _ in rows(db_path, "q")] == ["p1", "p2", "from child", "parent after fork"]
        with sqlite3.connect(db_path) as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        broker.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork semantics tested on Linux")
def test_fork_with_multiprocessing_fork_context(db_path: Path) -> None:
    import multiprocessing

    broker = Broker(db_path, config=QUIET)
    try:
        broker.write("q", "before fork")
        context = multiprocessing.get_context("fork")
        process = context.Process(target=_child_main, args=(broker, id(internals.thread_sqlite_connection(broker))))
        process.start()
        process.join(timeout=30)
        assert process.exitcode == 0
        assert broker.read("q", all_messages=True) == ["from mp child"]
        assert broker.read("done") == ["ok"]
    finally:
        broker.close()


def _child_main(broker: Broker, parent_connection_id: int) -> None:
    connection = internals.thread_sqlite_connection(broker)
    if id(connection) == parent_connection_id:
        sys.exit(3)
    if broker.read("q") != ["before fork"]:
        sys.exit(4)
    broker.write("q", "from mp child")
    broker.write("done", "ok")
    broker.close()


def _wait_child(pid: int) -> int:
    _, wait_status = os.waitpid(pid, 0)
    assert os.WIFEXITED(wait_status)
    return os.WEXITSTATUS(wait_status)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork semantics tested on Linux")
def test_fork_with_parent_read_in_progress(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    try:
        broker.write_many("q", ["a", "b"])
        cursor = internals.thread_sqlite_connection(broker).execute("SELECT body FROM messages")
        assert cursor.fetchone() == ("a",)  # the parent's connection is inside a read
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                broker.write("q", "child")
                status = 0 if broker.read("q", all_messages=True) == ["a", "b", "child"] else 2
            finally:
                os._exit(status)
        assert _wait_child(pid) == 0
        assert cursor.fetchall() == [("b",)]
        assert broker.read("q", all_messages=True) == []
        assert [b for _, b, _, _ in rows(db_path)] == ["a", "b", "child"]
    finally:
        broker.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork semantics tested on Linux")
def test_fork_while_parent_holds_write_lock_refuses_clearly_in_child(db_path: Path) -> None:
    # SQLite's per-process lock table, copied into the child, still shows the
    # parent's transaction: the child must get a clear error at once, not a
    # BusyError after every retry.
    broker = Broker(db_path, config={**QUIET, "BROKER_BUSY_TIMEOUT": "50"})
    try:
        broker.write("q", "a")
        go_read, go_write = os.pipe()
        with broker.transaction():
            broker.write("q", "in parent transaction")
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    os.close(go_write)
                    os.read(go_read, 1)  # wait until the parent has committed
                    try:
                        broker.write("q", "child")
                        status = 2
                    except TransactionError as exc:
                        status = 0 if "forked while" in str(exc) else 3
                finally:
                    os._exit(status)
        os.close(go_read)
        os.write(go_write, b"x")  # committed: the lock is free now
        os.close(go_write)
        assert _wait_child(pid) == 0
        assert [b for _, b, _, _ in rows(db_path)] == ["a", "in parent transaction"]
        broker.write("q", "parent after fork")  # the parent is unaffected
    finally:
        broker.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork semantics tested on Linux")
def test_fork_during_vacuum_does_not_keep_vacuum_lock(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sansio_broker.adapters import _driver

    children: list[int] = []
    release_read, release_write = os.pipe()
    real_sleep = _driver._sleep

    def sleep_and_fork(command: object) -> None:
        # Runs between vacuum batches, while the driver holds <db>.vacuum.lock.
        if not children:
            pid = os.fork()
            if pid == 0:
                os.read(release_read, 1)  # a long-lived worker
                os._exit(0)
            children.append(pid)
        real_sleep(command)  # type: ignore[arg-type]

    monkeypatch.setattr(_driver, "_sleep", sleep_and_fork)
    broker = Broker(db_path, config=QUIET)
    try:
        broker.write_many("q", ["a", "b", "c"])
        broker.claim_many("q", 2)
        assert broker.vacuum() == 2
        assert len(children) == 1
        broker.claim("q")
        assert broker.vacuum() == 1  # skipped (0) while the forked worker lives
    finally:
        broker.close()
        os.write(release_write, b"x")
        for pid in children:
            _wait_child(pid)
        os.close(release_read)
        os.close(release_write)
