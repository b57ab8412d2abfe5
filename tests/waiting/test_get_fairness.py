"""Waiters on one queue are served in the order they started waiting, and a burst reaches each once.

Every adapter (the contract ``broker`` facade). Waiters are started one after
the other, each once the broker reports the previous one waiting
(``still_waiting``), so arrival order is start order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.contract.contract_support import Facade, claimed_flags
from tests.waiting.waiting_support import outcome, start, still_waiting

WAITERS = 5
BURST = 50


def test_waiters_are_served_in_the_order_they_started_waiting(broker: Facade) -> None:
    q = broker.queue("q")
    waiters = []
    for _ in range(WAITERS):
        waiters.append(start(broker, lambda: q.target.get()))
        assert still_waiting(broker, *waiters)
    # One message at a time, without waiting for anyone to receive it.
    for i in range(WAITERS):
        q.write(f"m{i}")
    assert [outcome(w) for w in waiters] == [f"m{i}" for i in range(WAITERS)]
    assert q.size() == 0


def test_a_burst_is_handed_out_in_arrival_order(broker: Facade) -> None:
    q = broker.queue("q")
    waiters = []
    for _ in range(WAITERS):
        waiters.append(start(broker, lambda: q.target.get_message()))
        assert still_waiting(broker, *waiters)
    ids = q.write_many([f"m{i}" for i in range(WAITERS + 2)])
    got = [outcome(w) for w in waiters]
    assert [(m.body, m.id) for m in got] == [(f"m{i}", ids[i]) for i in range(WAITERS)]
    # Nobody waits any more: the rest of the burst stays pending.
    assert [m.body for m in q.peek_many(10)] == [f"m{WAITERS}", f"m{WAITERS + 1}"]


def test_fifo_holds_for_later_waiters_after_earlier_ones_were_served(broker: Facade) -> None:
    q = broker.queue("q")
    first = start(broker, lambda: q.target.get())
    assert still_waiting(broker, first)
    q.write("for first")
    assert outcome(first) == "for first"
    second = start(broker, lambda: q.target.get())
    assert still_waiting(broker, second)
    third = start(broker, lambda: q.target.get())
    assert still_waiting(broker, second, third)
    q.write("for second")
    assert outcome(second) == "for second"
    assert not third.done()
    q.write("for third")
    assert outcome(third) == "for third"


def test_a_burst_reaches_every_waiter_exactly_once(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    waiters = [start(broker, lambda: q.target.get_message()) for _ in range(BURST)]
    assert still_waiting(broker, *waiters)
    ids = q.write_many([f"m{i}" for i in range(BURST)])
    got = [outcome(w) for w in waiters]
    assert all(m is not None for m in got)
    counts = Counter(m.id for m in got)
    assert not [i for i, n in counts.items() if n > 1], "a message was handed to two waiters"
    assert sorted((m.id, m.body) for m in got) == [(ids[i], f"m{i}") for i in range(BURST)]
    assert q.size() == 0
    assert claimed_flags(db_path) == [1] * BURST
