"""Streams: exactly-once claims, at-least-once batches (redelivery, commit, the write lock), peeks."""

from __future__ import annotations

import time

import pytest

from sansio_broker import BrokerClosedError, Message, TransactionError
from tests.contract.contract_support import QUIET, Facade, MakeBroker, Target, claimed_flags, open_facade, rows

JOBS = [f"job{i}" for i in range(7)]


class Boom(Exception):
    pass


def claimed(path: Target, queue: str = "jobs") -> list[str]:
    """Bodies committed as claimed, as another connection sees them."""
    return [b for _, b, _, c in rows(path, queue) if c == 1]


# -------------------------------------------------------------- at least once
def test_break_and_close_redelivers_the_whole_batch(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(7)])
    stream = broker.stream("q", commit_interval=5)
    assert [next(stream), next(stream)] == [Message("m0", ids[0]), Message("m1", ids[1])]
    stream.close()
    assert claimed_flags(target) == [0] * 7
    # The abandoned batch (all five, not just the two seen) comes again, in order.
    again = broker.stream("q", commit_interval=5)
    assert [next(again) for _ in range(5)] == [Message(f"m{i}", ids[i]) for i in range(5)]
    again.close()
    assert claimed_flags(target) == [0] * 7


def test_break_out_of_for_loop_redelivers(broker: Facade, target: Target) -> None:
    broker.write_many("q", [f"m{i}" for i in range(3)])
    seen = []
    for message in broker.stream("q", commit_interval=5):
        seen.append(message.body)
        if len(seen) == 2:
            break
    assert seen == ["m0", "m1"]
    assert claimed_flags(target) == [0, 0, 0]
    assert [m.body for m in broker.stream("q", commit_interval=5)] == ["m0", "m1", "m2"]
    assert claimed_flags(target) == [1, 1, 1]


def test_break_after_a_committed_batch_redelivers_only_the_open_one(broker: Facade, target: Target) -> None:
    queue = broker.queue("jobs")
    queue.write_many(JOBS)
    seen = []
    for body in queue.stream(commit_interval=3):
        seen.append(body)
        if len(seen) == 5:
            break
    assert claimed(target) == JOBS[:3]  # first batch committed; the second rolled back
    assert list(queue.stream(commit_interval=3)) == JOBS[3:]


def test_earlier_batches_commit_when_the_next_is_requested(broker: Facade, target: Target) -> None:
    broker.write_many("q", [f"m{i}" for i in range(8)])
    stream = broker.stream("q", commit_interval=5)
    first = [next(stream) for _ in range(5)]
    assert [m.body for m in first] == [f"m{i}" for i in range(5)]
    assert claimed_flags(target) == [0] * 8  # first batch not committed yet
    assert next(stream).body == "m5"  # asking for more commits the first batch
    assert claimed_flags(target) == [1] * 5 + [0] * 3
    stream.close()  # second batch rolled back
    assert claimed_flags(target) == [1] * 5 + [0] * 3
    assert [m.body for m in broker.stream("q", commit_interval=5)] == ["m5", "m6", "m7"]


def test_queue_stream_batch_commits_when_the_next_one_is_requested(broker: Facade, target: Target) -> None:
    queue = broker.queue("jobs")
    queue.write_many(JOBS)
    stream = queue.stream(commit_interval=3)
    assert [next(stream) for _ in range(3)] == JOBS[:3]
    assert claimed(target) == []  # the batch is still open
    assert next(stream) == "job3"  # asking for more committed it
    assert claimed(target) == JOBS[:3]
    assert list(stream) == JOBS[4:]
    assert claimed(target) == JOBS  # exhausting commits the last batch


def test_exhausting_the_stream_commits(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(7)])
    assert list(broker.stream("q", commit_interval=5)) == [Message(f"m{i}", ids[i]) for i in range(7)]
    assert claimed_flags(target) == [1] * 7
    assert list(broker.stream("q", commit_interval=5)) == []
    assert broker.queue_stats("q").pending == 0


def test_exception_in_loop_rolls_back(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    with pytest.raises(Boom):
        for message in broker.stream("q", commit_interval=5):
            if message.body == "b":
                raise Boom
    assert claimed_flags(target) == [0, 0, 0]
    assert broker.claim("q") == Message("a", rows(target)[0][2])  # nothing holds the lock any more
    assert claimed_flags(target) == [1, 0, 0]
    assert broker.queue("q").read_all() == ["b", "c"]


def test_write_during_open_batch_fails_fast_then_works_after_close(broker: Facade, target: Target) -> None:
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
    for call in (
        lambda: broker.move("q", "other"),
        lambda: broker.delete("other"),
        lambda: broker.queue("q").write("x"),
    ):
        with pytest.raises(TransactionError):
            call()
    assert time.monotonic() - started < 1.0  # refused at once, not after a busy timeout
    stream.close()
    assert broker.write("other", "x") > 0
    assert [(q, b) for q, b, _, _ in rows(target, "other")] == [("other", "x")]
    assert claimed_flags(target) == [0, 0]


def test_a_write_inside_an_at_least_once_batch_fails_at_once(
    make_broker: MakeBroker, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "5000")
    monkeypatch.setenv("BROKER_AUTO_VACUUM", "0")
    broker = make_broker(config=None)
    queue = broker.queue("jobs")
    queue.write_many([f"job{i}" for i in range(10)])
    elapsed: list[float] = []
    with pytest.raises(TransactionError, match="stream") as info:
        for _body in queue.stream(commit_interval=5):
            start = time.monotonic()
            try:
                queue.write("result")
            finally:
                elapsed.append(time.monotonic() - start)
    assert "commit_interval=1" in str(info.value) or "transaction()" in str(info.value)
    assert elapsed and elapsed[0] < 1.0
    # The abandoned batch is rolled back (delivered again); the write never landed.
    assert queue.size() == 10
    assert queue.read_all() == [f"job{i}" for i in range(10)]
    assert "result" not in [b for _, b, _, _ in rows(target)]


def test_write_after_break_from_temporary_stream_is_kept(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        broker.write_many("q", ["a", "b", "c"])
        for _message in broker.stream("q", commit_interval=5):
            break
        written = broker.write("results", "done")
        assert claimed_flags(target) == [0, 0, 0]
    # Reopened from disk: the write survived, the abandoned batch did not.
    assert [(q, b, ts) for q, b, ts, _ in rows(target, "results")] == [("results", "done", written)]
    assert claimed_flags(target) == [0, 0, 0]
    with open_facade(adapter, target) as broker:
        assert broker.read("q", all_messages=True) == ["a", "b", "c"]
        assert broker.read("results") == ["done"]


def test_write_after_break_is_not_rolled_back_and_redelivery_follows_it(broker: Facade, target: Target) -> None:
    queue = broker.queue("jobs")
    queue.write_many(JOBS)
    seen = []
    for body in queue.stream(commit_interval=5):
        seen.append(body)
        break
    assert seen == ["job0"]
    written = queue.write("after the break")
    broker.write("elsewhere", "also after")
    # The write committed on its own: nothing rolled it back.
    assert [(b, ts) for q, b, ts, _ in rows(target) if q == "jobs" and b == "after the break"] == [
        ("after the break", written)
    ]
    assert [b for q, b, _, _ in rows(target) if q == "elsewhere"] == ["also after"]
    # The abandoned batch is delivered again, in order, followed by the new write.
    assert list(queue.stream(commit_interval=5)) == [*JOBS, "after the break"]


def test_queue_stream_at_least_once(broker: Facade, target: Target) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b", "c"])
    for _body in q.stream(commit_interval=3):
        break
    assert claimed_flags(target) == [0, 0, 0]
    assert list(q.stream(commit_interval=3)) == ["a", "b", "c"]
    assert claimed_flags(target) == [1, 1, 1]


def test_second_stream_while_a_batch_is_open_fails_fast(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    first = broker.stream("q", commit_interval=2)
    assert next(first).body == "a"
    second = broker.stream("q", commit_interval=2)
    started = time.monotonic()
    with pytest.raises(TransactionError):
        next(second)
    with pytest.raises(TransactionError):
        next(broker.stream("q"))  # an exactly-once stream needs the lock too
    with pytest.raises(TransactionError):
        next(broker.queue("q").stream(commit_interval=2))
    assert time.monotonic() - started < 1.0
    assert [m.body for m in first] == ["b", "c"]
    assert claimed_flags(target) == [1, 1, 1]


def test_reads_while_batch_open_see_own_claims(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    stream = broker.stream("q", commit_interval=2)
    assert next(stream).body == "a"
    # Reads see the batch's own (uncommitted) claims, and never wait for its lock.
    assert [m.body for m in broker.peek_many("q", 10)] == ["c"]
    assert broker.peek("q") == Message("c", rows(target)[2][2])
    assert broker.queue_stats("q").pending == 1
    assert broker.queue("q").size() == 1
    assert claimed_flags(target) == [0, 0, 0]  # other connections see nothing yet
    stream.close()
    assert [m.body for m in broker.peek_many("q", 10)] == ["a", "b", "c"]


def test_closing_the_broker_rolls_back_an_open_batch(adapter: str, target: Target) -> None:
    with open_facade(adapter, target) as broker:
        broker.write_many("q", ["a", "b"])
        stream = broker.stream("q", commit_interval=5)
        assert next(stream).body == "a"
        broker.close()
        assert claimed_flags(target) == [0, 0]
    with open_facade(adapter, target) as again:
        assert again.read("q", all_messages=True) == ["a", "b"]


def test_closing_a_stream_after_its_broker_closed_returns_at_once(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    broker.close()
    started = time.monotonic()
    refusal: BrokerClosedError | None = None
    try:
        stream.close()
    except BrokerClosedError as exc:  # the async adapters' aclose() says so
        refusal = exc
    assert time.monotonic() - started < 5.0
    if broker.adapter == "blocking":
        assert refusal is None  # the blocking iterator closes silently
    assert claimed_flags(target) == [0, 0]


# -------------------------------------------------------------- exactly once
def test_stream_commit_interval_one_claims_each_before_handing_over(broker: Facade, target: Target) -> None:
    ids = broker.write_many("q", [f"m{i}" for i in range(5)])
    stream = broker.stream("q")  # commit_interval=1
    assert next(stream) == Message("m0", ids[0])
    assert next(stream) == Message("m1", ids[1])
    # Exactly once: what was handed over is committed, even before the stream ends.
    assert claimed_flags(target) == [1, 1, 0, 0, 0]
    stream.close()
    assert claimed_flags(target) == [1, 1, 0, 0, 0]
    assert list(broker.stream("q", commit_interval=1)) == [Message(f"m{i}", ids[i]) for i in range(2, 5)]
    assert all(claimed == 1 for *_, claimed in rows(target))


def test_exactly_once_stream_allows_writes_between_messages(broker: Facade, target: Target) -> None:
    queue = broker.queue("jobs")
    queue.write_many(JOBS)
    seen = []
    for body in queue.stream():
        seen.append(body)
        assert claimed(target) == seen
        # Writes from the consumer are fine: nothing is held between messages.
        broker.write("results", body)
        if len(seen) == 3:
            break
    assert claimed(target) == JOBS[:3]
    assert [b for _, b, _, _ in rows(target, "results")] == JOBS[:3]
    messages = list(queue.messages())
    assert [m.body for m in messages] == JOBS[3:]
    assert all(isinstance(m, Message) for m in messages)


def test_at_most_one_message_without_all_messages(broker: Facade, target: Target) -> None:
    queue = broker.queue("jobs")
    queue.write_many(JOBS)
    assert list(queue.stream(all_messages=False)) == ["job0"]
    assert list(queue.stream(all_messages=False, peek=True)) == ["job1"]
    ids = [m.id for m in queue.peek_many(10)]
    assert list(broker.stream_read("jobs", exact_timestamp=ids[2])) == ["job3"]
    assert claimed(target) == ["job0", "job3"]


# ---------------------------------------------------------------------- peek
def test_peek_stream_pages_through_without_claiming(make_broker: MakeBroker, target: Target) -> None:
    broker = make_broker(config={**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "4"})
    ids = broker.write_many("q", [f"m{i}" for i in range(11)])
    assert [m.id for m in broker.stream("q", peek=True)] == ids
    assert [m.id for m in broker.stream("q", peek=True, after_timestamp=ids[8])] == ids[9:]
    broker.claim("q")
    assert [m.id for m in broker.stream("q", peek=True, include_claimed=True)] == ids
    assert [m.id for m in broker.stream("q", peek=True)] == ids[1:]
    assert claimed(target, "q") == ["m0"]
