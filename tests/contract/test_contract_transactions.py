"""Explicit transactions: claim-and-write atomicity, rollback, refusals inside a transaction."""

from __future__ import annotations

import pytest

from sansio_broker import BusyError, Message, TransactionError
from tests.contract.contract_support import QUIET, Facade, MakeBroker, Target, meta, rows, snapshot


class Boom(Exception):
    pass


def bodies(path: Target, queue: str) -> list[tuple[str, int]]:
    """``(body, claimed)`` of one queue, in ID order, as another connection sees them."""
    return [(b, c) for _, b, _, c in rows(path, queue)]


def max_ts(path: Target) -> int:
    return max(ts for _, _, ts, _ in rows(path))


def test_claim_and_write_commit_together(broker: Facade, target: Target) -> None:
    (task,) = broker.write_many("tasks", ["job"])
    with broker.transaction() as tx:
        assert tx is broker
        message = broker.claim("tasks")
        assert message == Message("job", task)
        result = broker.write("results", message.body + ":done")
        log = broker.queue("log").write("claimed job")
        # Own writes are visible inside; other connections see nothing before the commit.
        assert [m.body for m in broker.peek_many("results", 5)] == ["job:done"]
        assert rows(target, "results") == []
        assert rows(target, "tasks")[0][3] == 0
    assert rows(target) == [
        ("tasks", "job", task, 1),
        ("results", "job:done", result, 0),
        ("log", "claimed job", log, 0),
    ]


def test_exception_rolls_back_claim_and_write(broker: Facade, target: Target) -> None:
    (task,) = broker.write_many("tasks", ["job"])
    before = rows(target)
    last_ts = meta(target)["last_ts"]
    with pytest.raises(Boom), broker.transaction():
        assert broker.claim("tasks") == Message("job", task)
        broker.write("results", "job:done")
        broker.write_many("results", ["more", "rows"])
        broker.move("tasks", "elsewhere", message_id=task)
        raise Boom
    assert rows(target) == before
    assert meta(target)["last_ts"] == last_ts
    assert not broker.queue_exists("results")
    # The connection is usable again and the message is pending.
    assert broker.claim("tasks") == Message("job", task)


def test_transaction_spanning_several_operations(broker: Facade, target: Target) -> None:
    broker.write_many("in", ["a", "b", "c"])
    with broker.transaction():
        for message in broker.claim_many("in", 2):
            broker.write("out", message.body.upper())
        broker.move("in", "moved")
        assert broker.peek_many("out", 10)[0].body == "A"  # own writes are visible inside
    assert [(q, b, c) for q, b, _, c in rows(target)] == [
        ("in", "a", 1),
        ("in", "b", 1),
        ("moved", "c", 0),
        ("out", "A", 0),
        ("out", "B", 0),
    ]


def test_nested_transaction_refused(broker: Facade, target: Target) -> None:
    with broker.transaction():
        broker.write("q", "outer")
        with pytest.raises(TransactionError, match="nested"), broker.transaction():
            pass
        broker.write("q", "still outer")
    assert [b for _, b, _, _ in rows(target)] == ["outer", "still outer"]


def test_vacuum_inside_transaction_refused(broker: Facade, target: Target) -> None:
    broker.write("q", "a")
    broker.claim("q")
    with broker.transaction():
        with pytest.raises(TransactionError):
            broker.vacuum()
        with pytest.raises(TransactionError):
            broker.vacuum(compact=True)
        broker.write("q", "b")
    assert [c for *_, c in rows(target)] == [1, 0]
    assert broker.vacuum() == 1
    assert [(b, c) for _, b, _, c in rows(target)] == [("b", 0)]


def test_at_least_once_stream_inside_transaction_refused(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b"])
    with broker.transaction():
        with pytest.raises(TransactionError, match="commit_interval"):
            next(broker.stream("q", commit_interval=5))
        with pytest.raises(TransactionError):
            next(broker.queue("q").stream(commit_interval=3))
        # The transaction is still usable and commits normally.
        assert broker.claim("q").body == "a"  # type: ignore[union-attr]
        broker.write("q", "c")
    assert [(b, c) for _, b, _, c in rows(target)] == [("a", 1), ("b", 0), ("c", 0)]


def test_exactly_once_stream_inside_transaction_joins_it(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    with broker.transaction():
        for message in broker.stream("q"):
            broker.write("out", message.body)
            assert rows(target, "out") == []  # not committed yet
    assert [(q, b, c) for q, b, _, c in rows(target)] == [
        ("q", "a", 1),
        ("q", "b", 1),
        ("q", "c", 1),
        ("out", "a", 0),
        ("out", "b", 0),
        ("out", "c", 0),
    ]


def test_exactly_once_stream_inside_failed_transaction_rolls_back(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    before = rows(target)
    with pytest.raises(Boom), broker.transaction():
        for message in broker.stream("q", commit_interval=1):
            broker.write("out", message.body)
            if message.body == "b":
                raise Boom
    assert rows(target) == before
    # A queue's body stream, run to its end inside, rolls back too.
    with pytest.raises(Boom), broker.transaction():
        for body in broker.queue("q").stream():
            broker.write("out", body.upper())
        raise Boom
    assert rows(target) == before


def test_streams_stopped_early_inside_a_transaction_leave_it_open(broker: Facade, target: Target) -> None:
    broker.write_many("q", ["a", "b", "c"])
    with broker.transaction():
        stream = broker.stream("q")
        first = next(stream)
        stream.close()
        broker.write("out", first.body)  # the transaction goes on after the stream's end
        peeking = broker.stream("q", peek=True)
        peeked = next(peeking)
        peeking.close()
        assert [m.body for m in broker.stream("q", peek=True)] == ["b", "c"]  # its own claim is seen
        broker.write("out", "after peek " + peeked.body)
    assert [(q, b, c) for q, b, _, c in rows(target)] == [
        ("q", "a", 1),
        ("q", "b", 0),
        ("q", "c", 0),
        ("out", "a", 0),
        ("out", "after peek b", 0),
    ]


def test_another_broker_gets_busy_error_while_a_transaction_holds_the_lock(
    make_broker: MakeBroker, target: Target
) -> None:
    """SQLite: the database's write lock; PostgreSQL: the meta row (lock_timeout). Both after BROKER_BUSY_TIMEOUT."""
    holder = make_broker()
    other = make_broker(config={**QUIET, "BROKER_BUSY_TIMEOUT": "10"})
    holder.write("q", "x")
    with holder.transaction():
        holder.write("q", "in transaction")
        before = snapshot(target)
        with pytest.raises(BusyError, match="gave up after"):
            other.write("q", "blocked")
        assert snapshot(target) == before
        assert [m.body for m in other.peek_many("q", 10)] == ["x"]  # reads never wait
    assert other.write("q", "after") > 0
    assert [b for _, b, _, _ in rows(target)] == ["x", "in transaction", "after"]


def test_keyboard_interrupt_rolls_back(broker: Facade, target: Target) -> None:
    broker.write("q", "a")
    before = rows(target)
    with pytest.raises(KeyboardInterrupt), broker.transaction():
        broker.claim("q")
        broker.write("q", "b")
        raise KeyboardInterrupt
    assert rows(target) == before
    assert broker.read("q") == ["a"]


def test_transaction_with_nothing_inside_commits_cleanly(broker: Facade, target: Target) -> None:
    with broker.transaction():
        pass
    assert broker.write("q", "after") > 0
    assert [b for _, b, _, _ in rows(target)] == ["after"]


def test_many_transactions_in_a_row(broker: Facade) -> None:
    for i in range(30):
        with pytest.raises(Boom), broker.transaction():
            broker.write("q", f"rolled back {i}")
            raise Boom
        with broker.transaction():
            broker.write("q", f"kept {i}")
    assert broker.queue_stats("q") == ("q", 30, 30)
    assert broker.read("q", peek=True, all_messages=True) == [f"kept {i}" for i in range(30)]


# ------------------------------------------------------------ IDs and last_ts
def test_last_ts_equals_the_highest_id_after_writes(broker: Facade, target: Target) -> None:
    broker.write("q", "one")
    assert meta(target)["last_ts"] == max_ts(target)
    broker.write_many("q", [str(i) for i in range(50)])
    assert meta(target)["last_ts"] == max_ts(target)
    broker.write("other", "x")
    assert broker.broadcast("to all") == 2
    assert meta(target)["last_ts"] == max_ts(target)
    with broker.transaction():
        broker.write("q", "in a transaction")
    assert meta(target)["last_ts"] == max_ts(target)


def test_a_rolled_back_write_does_not_advance_last_ts(broker: Facade, target: Target) -> None:
    """Allocation commits or rolls back with the insert (the example allocated in autocommit)."""
    kept = broker.write("q", "kept")
    with pytest.raises(ZeroDivisionError), broker.transaction():
        broker.write("q", "rolled back")
        broker.write_many("q", ["also", "rolled back"])
        1 / 0  # noqa: B018
    assert meta(target)["last_ts"] == kept == max_ts(target)
    after = broker.write("q", "next")
    assert after > kept
    assert [b for _, b, _, _ in rows(target)] == ["kept", "next"]
