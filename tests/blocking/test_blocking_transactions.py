"""Explicit transactions: claim-and-write atomicity, refusals inside a transaction."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from blocking_support import QUIET
from support.rawdb import rows

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.blocking import Broker


class Boom(Exception):
    pass


def test_claim_and_write_commit_together(broker: Broker, db_path: Path) -> None:
    (task,) = broker.write_many("tasks", ["job"])
    with broker.transaction() as tx:
        assert tx is broker
        message = broker.claim("tasks")
        assert message == Message("job", task)
        result = broker.write("results", message.body + ":done")
        # Not visible to another connection before the commit.
        assert rows(db_path, "results") == []
        assert rows(db_path, "tasks")[0][3] == 0
    assert rows(db_path) == [("tasks", "job", task, 1), ("results", "job:done", result, 0)]


def test_exception_rolls_back_claim_and_write(broker: Broker, db_path: Path) -> None:
    (task,) = broker.write_many("tasks", ["job"])
    before = rows(db_path)
    with pytest.raises(Boom), broker.transaction():
        assert broker.claim("tasks") == Message("job", task)
        broker.write("results", "job:done")
        broker.write_many("results", ["more", "rows"])
        broker.move("tasks", "elsewhere", message_id=task)
        raise Boom
    assert rows(db_path) == before
    assert not broker.queue_exists("results")
    # The connection is usable again and the message is pending.
    assert broker.claim("tasks") == Message("job", task)


def test_transaction_spanning_several_operations(broker: Broker, db_path: Path) -> None:
    broker.write_many("in", ["a", "b", "c"])
    with broker.transaction():
        for message in broker.claim_many("in", 2):
            broker.write("out", message.body.upper())
        broker.move("in", "moved")
        assert broker.peek_many("out", 10)[0].body == "A"  # own writes are visible inside
    assert [(q, b, c) for q, b, _, c in rows(db_path)] == [
        ("in", "a", 1),
        ("in", "b", 1),
        ("moved", "c", 0),
        ("out", "A", 0),
        ("out", "B", 0),
    ]


def test_nested_transaction_refused(broker: Broker, db_path: Path) -> None:
    with broker.transaction():
        broker.write("q", "outer")
        with pytest.raises(TransactionError, match="nested"), broker.transaction():
            pass
        broker.write("q", "still outer")
    assert [b for _, b, _, _ in rows(db_path)] == ["outer", "still outer"]


def test_vacuum_inside_transaction_refused(broker: Broker, db_path: Path) -> None:
    broker.write("q", "a")
    broker.claim("q")
    with broker.transaction():
        with pytest.raises(TransactionError):
            broker.vacuum()
        with pytest.raises(TransactionError):
            broker.vacuum(compact=True)
    assert [c for *_, c in rows(db_path)] == [1]


def test_at_least_once_stream_inside_transaction_refused(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b"])
    with broker.transaction():
        with pytest.raises(TransactionError):
            broker.stream("q", commit_interval=5)
        broker.write("q", "c")
    assert [(b, c) for _, b, _, c in rows(db_path)] == [("a", 0), ("b", 0), ("c", 0)]


def test_exactly_once_stream_inside_transaction_joins_it(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    with broker.transaction():
        for message in broker.stream("q"):
            broker.write("out", message.body)
    assert [(q, b, c) for q, b, _, c in rows(db_path)] == [
        ("q", "a", 1),
        ("q", "b", 1),
        ("q", "c", 1),
        ("out", "a", 0),
        ("out", "b", 0),
        ("out", "c", 0),
    ]


def test_exactly_once_stream_inside_failed_transaction_rolls_back(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    before = rows(db_path)
    with pytest.raises(Boom), broker.transaction():
        for message in broker.stream("q", commit_interval=1):
            broker.write("out", message.body)
            if message.body == "b":
                raise Boom
    assert rows(db_path) == before


def test_transaction_blocks_other_threads_until_commit(db_path: Path) -> None:
    with Broker(db_path, config=QUIET) as broker:
        broker.write("q", "a")
        done = threading.Event()

        def other() -> None:
            broker.write("q", "from thread")
            done.set()

        with broker.transaction():
            broker.claim("q")
            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(0.2)
            assert not done.is_set()
        thread.join(timeout=10)
        assert done.is_set()
        assert [(b, c) for _, b, _, c in rows(db_path)] == [("a", 1), ("from thread", 0)]


def test_keyboard_interrupt_rolls_back(broker: Broker, db_path: Path) -> None:
    broker.write("q", "a")
    before = rows(db_path)
    with pytest.raises(KeyboardInterrupt), broker.transaction():
        broker.claim("q")
        broker.write("q", "b")
        raise KeyboardInterrupt
    assert rows(db_path) == before
    assert broker.read("q") == ["a"]


def test_transaction_with_nothing_inside_commits_cleanly(broker: Broker, db_path: Path) -> None:
    with broker.transaction():
        pass
    assert broker.write("q", "after") > 0
    assert [b for _, b, _, _ in rows(db_path)] == ["after"]
