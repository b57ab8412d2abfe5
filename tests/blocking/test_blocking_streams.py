"""At-least-once streams (commit_interval > 1): redelivery, commit, and the write lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from blocking_support import QUIET
from support.rawdb import rows

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.blocking import Broker, Queue


def claimed_flags(db_path: Path, queue: str = "q") -> list[int]:
    return [claimed for *_, claimed in rows(db_path, queue)]


def test_break_and_close_redelivers_the_whole_batch(broker: Broker, db_path: Path) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(7)])
    stream = broker.stream("q", commit_interval=5)
    assert [next(stream), next(stream)] == [Message("m0", ids[0]), Message("m1", ids[1])]
    stream.close()
    assert claimed_flags(db_path) == [0] * 7
    # The abandoned batch (all five, not just the two seen) comes again, in order.
    again = broker.stream("q", commit_interval=5)
    assert [next(again) for _ in range(5)] == [Message(f"m{i}", ids[i]) for i in range(5)]
    again.close()
    assert claimed_flags(db_path) == [0] * 7


def test_break_out_of_for_loop_redelivers(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", [f"m{i}" for i in range(3)])
    seen = []
    for message in broker.stream("q", commit_interval=5):
        seen.append(message.body)
        if len(seen) == 2:
            break
    assert seen == ["m0", "m1"]
    assert claimed_flags(db_path) == [0, 0, 0]
    assert [m.body for m in broker.stream("q", commit_interval=5)] == ["m0", "m1", "m2"]
    assert claimed_flags(db_path) == [1, 1, 1]


def test_earlier_batches_commit_when_the_next_is_requested(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", [f"m{i}" for i in range(8)])
    stream = broker.stream("q", commit_interval=5)
    first = [next(stream) for _ in range(5)]
    assert [m.body for m in first] == [f"m{i}" for i in range(5)]
    assert claimed_flags(db_path) == [0] * 8  # first batch not committed yet
    assert next(stream).body == "m5"  # asking for more commits the first batch
    assert claimed_flags(db_path) == [1] * 5 + [0] * 3
    stream.close()  # second batch rolled back
    assert claimed_flags(db_path) == [1] * 5 + [0] * 3
    assert [m.body for m in broker.stream("q", commit_interval=5)] == ["m5", "m6", "m7"]


def test_exhausting_the_stream_commits(broker: Broker, db_path: Path) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(7)])
    assert list(broker.stream("q", commit_interval=5)) == [Message(f"m{i}", ids[i]) for i in range(7)]
    assert claimed_flags(db_path) == [1] * 7
    assert list(broker.stream("q", commit_interval=5)) == []
    assert broker.queue_stats("q").pending == 0


def test_exception_in_loop_rolls_back(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        for message in broker.stream("q", commit_interval=5):
            if message.body == "b":
                raise Boom
    assert claimed_flags(db_path) == [0, 0, 0]
    assert broker.claim("q") == Message("a", rows(db_path)[0][2])  # nothing holds the lock any more
    assert claimed_flags(db_path) == [1, 0, 0]


def test_write_during_open_batch_fails_fast_then_works_after_close(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    started = time.monotonic()
    with pytest.raises(TransactionError, match="stream"):
        broker.write("other", "x")
    with pytest.raises(TransactionError):
        broker.write_many("other", ["x"])
    with pytest.raises(TransactionError):
        broker.claim("q")
    with pytest.raises(TransactionError), broker.transaction():
        pass
    with pytest.raises(TransactionError):
        broker.vacuum()
    assert time.monotonic() - started < 1.0  # refused at once, not after a busy timeout
    stream.close()
    assert broker.write("other", "x") > 0
    assert [(q, b) for q, b, _, _ in rows(db_path, "other")] == [("other", "x")]
    assert claimed_flags(db_path) == [0, 0]


def test_write_after_break_from_temporary_stream_is_kept(db_path: Path) -> None:
    with Broker(db_path, config=QUIET) as broker:
        broker.write_many("q", ["a", "b", "c"])
        for _message in broker.stream("q", commit_interval=5):
            break
        written = broker.write("results", "done")
        assert claimed_flags(db_path) == [0, 0, 0]
    # Reopened from disk: the write survived, the abandoned batch did not.
    assert [(q, b, ts) for q, b, ts, _ in rows(db_path, "results")] == [("results", "done", written)]
    assert claimed_flags(db_path) == [0, 0, 0]
    with Broker(db_path, config=QUIET) as broker:
        assert broker.read("q", all_messages=True) == ["a", "b", "c"]
        assert broker.read("results") == ["done"]


def test_other_threads_wait_for_the_batch_then_proceed(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("id", broker.write("other", "x")))
    thread.start()
    time.sleep(0.2)
    assert "id" not in result  # blocked on the write lock held by the batch
    assert [m.body for m in stream] == ["b"]  # exhausting commits and releases the lock
    thread.join(timeout=10)
    assert "id" in result
    assert claimed_flags(db_path) == [1, 1]


def test_queue_stream_at_least_once(broker: Broker, db_path: Path) -> None:
    q = Queue("q", broker)
    q.write_many(["a", "b", "c"])
    for _body in q.stream(commit_interval=3):
        break
    assert claimed_flags(db_path) == [0, 0, 0]
    assert list(q.stream(commit_interval=3)) == ["a", "b", "c"]
    assert claimed_flags(db_path) == [1, 1, 1]


def test_second_at_least_once_stream_on_same_thread_fails_fast(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    first = broker.stream("q", commit_interval=2)
    assert next(first).body == "a"
    second = broker.stream("q", commit_interval=2)
    started = time.monotonic()
    with pytest.raises(TransactionError):
        next(second)
    with pytest.raises(TransactionError):
        next(broker.stream("q"))  # an exactly-once stream needs the lock too
    assert time.monotonic() - started < 1.0
    assert [m.body for m in first] == ["b", "c"]
    assert claimed_flags(db_path) == [1, 1, 1]


def test_peek_while_batch_open_sees_own_claims(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b", "c"])
    stream = broker.stream("q", commit_interval=2)
    assert next(stream).body == "a"
    assert [m.body for m in broker.peek_many("q", 10)] == ["c"]  # same connection: a, b are claimed
    assert broker.queue_stats("q").pending == 1
    stream.close()
    assert [m.body for m in broker.peek_many("q", 10)] == ["a", "b", "c"]


def test_closing_the_broker_rolls_back_an_open_batch(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    broker.close()
    assert claimed_flags(db_path) == [0, 0]
    stream.close()  # closing the iterator afterwards is harmless
    with Broker(db_path, config=QUIET) as again:
        assert again.read("q", all_messages=True) == ["a", "b"]
