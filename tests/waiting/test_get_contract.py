"""get, get_message, watch and broker.get on every adapter: what a caller gets, and what stays queued.

Each test runs once per adapter (the contract suite's ``broker`` facade); a
call that waits runs in a task or thread of its own (``waiting_support``), so
the test can write while it waits. Nothing here is timed: ``still_waiting``
waits until the broker reports the started calls waiting and checks that none
has ended, and every wait that should end is bounded by a generous hang guard.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import (
    BrokerClosedError,
    InvalidInputError,
    InvalidTypeError,
    Message,
    QueueNameError,
    QueueNameTypeError,
)
from tests.contract.contract_support import Facade, MakeBroker, bodies, claimed_flags
from tests.waiting.waiting_support import SETTLE, error_of, outcome, run, start, still_waiting, watch


def pending(broker: Facade, queue: str = "q") -> list[str]:
    """The bodies still pending in ``queue``, oldest first."""
    return bodies(broker.queue(queue).peek_many(1000))


# ------------------------------------------------------------------------ get
def test_get_returns_the_oldest_message_and_claims_it(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b", "c"])
    assert run(broker, lambda: q.target.get()) == "a"
    assert run(broker, lambda: q.target.get()) == "b"
    assert pending(broker) == ["c"]
    assert claimed_flags(db_path) == [1, 1, 0]


def test_get_message_returns_the_message_with_its_id(broker: Facade) -> None:
    q = broker.queue("q")
    ids = q.write_many(["a", "b"])
    first = run(broker, lambda: q.target.get_message())
    assert isinstance(first, Message)
    assert (first.id, first.body) == (ids[0], "a")
    assert run(broker, lambda: q.target.get_message(timeout=0)) == Message("b", ids[1])
    assert run(broker, lambda: q.target.get_message(timeout=0)) is None


def test_get_waits_for_a_message_written_later(broker: Facade) -> None:
    q = broker.queue("q")
    waiting = start(broker, lambda: q.target.get())
    assert still_waiting(broker, waiting), "get returned on an empty queue"
    q.write("later")  # from the test's thread (blocking) / the runner task (async)
    assert outcome(waiting) == "later"
    assert pending(broker) == []


def test_get_message_with_a_timeout_gets_a_message_written_later(broker: Facade) -> None:
    q = broker.queue("q")
    waiting = start(broker, lambda: q.target.get_message(timeout=60))
    assert still_waiting(broker, waiting)
    message_id = q.write("later")
    assert outcome(waiting) == Message("later", message_id)


def test_get_is_woken_by_another_broker_object_on_the_same_file(broker: Facade, make_broker: MakeBroker) -> None:
    other = make_broker()  # a second broker object of this process, same file
    q = broker.queue("q")
    waiting = start(broker, lambda: q.target.get())
    assert still_waiting(broker, waiting)
    other.write("q", "from the other broker")
    assert outcome(waiting) == "from the other broker"
    assert pending(broker) == []


def test_a_waiter_is_not_given_another_queues_message(broker: Facade) -> None:
    on_a = start(broker, lambda: broker.queue("a").target.get())
    on_b = start(broker, lambda: broker.queue("b").target.get())
    assert still_waiting(broker, on_a, on_b)
    broker.write("b", "for b")
    assert outcome(on_b) == "for b"
    assert not on_a.done()
    broker.write("a", "for a")
    assert outcome(on_a) == "for a"


def test_get_with_a_timeout_on_an_empty_queue_returns_none(broker: Facade) -> None:
    q = broker.queue("q")
    assert run(broker, lambda: q.target.get(timeout=0.05)) is None
    assert run(broker, lambda: q.target.get_message(timeout=0.05)) is None
    # Nothing was left behind: a message written now is there for the next caller.
    q.write("next")
    assert run(broker, lambda: q.target.get(timeout=0)) == "next"


def test_timeout_zero_is_one_try(broker: Facade) -> None:
    q = broker.queue("q")
    assert run(broker, lambda: q.target.get(timeout=0)) is None
    q.write_many(["a", "b"])
    assert run(broker, lambda: q.target.get(timeout=0)) == "a"
    assert run(broker, lambda: q.target.get(timeout=0.0)) == "b"
    assert run(broker, lambda: q.target.get(timeout=0)) is None


BAD_TIMEOUTS: list[tuple[Any, type[Exception]]] = [
    (-1, InvalidInputError),
    (-0.001, InvalidInputError),
    (float("nan"), InvalidInputError),
    (math.inf, InvalidInputError),  # None is "forever"; inf is refused rather than guessed
    (-math.inf, InvalidInputError),
    (10**400, InvalidInputError),  # an int no float holds
    (True, InvalidTypeError),
    ("1", InvalidTypeError),
    (b"1", InvalidTypeError),
]
BAD_IDS = ["-1", "-0.001", "nan", "inf", "-inf", "huge-int", "True", "str", "bytes"]


@pytest.mark.parametrize(("timeout", "error"), BAD_TIMEOUTS, ids=BAD_IDS)
def test_a_bad_timeout_is_refused_before_anything_waits_or_is_claimed(
    broker: Facade, db_path: Path, timeout: Any, error: type[Exception]
) -> None:
    q = broker.queue("q")
    # An empty queue: a call that accepted the timeout would wait (or return None).
    for call in (
        lambda: q.target.get(timeout=timeout),
        lambda: q.target.get_message(timeout=timeout),
        lambda: broker.target.get(["q", "r"], timeout=timeout),
    ):
        exc = error_of(broker, call)
        assert isinstance(exc, error), repr(exc)
    # A queue with a message: refused all the same, and the message stays pending.
    q.write("kept")
    for call in (
        lambda: q.target.get(timeout=timeout),
        lambda: q.target.get_message(timeout=timeout),
        lambda: broker.target.get(["q"], timeout=timeout),
    ):
        exc = error_of(broker, call)
        assert isinstance(exc, error), repr(exc)
    assert pending(broker) == ["kept"]
    assert claimed_flags(db_path) == [0]


# ----------------------------------------------------------------- broker.get
def test_broker_get_takes_from_the_first_queue_in_the_order_given(broker: Facade) -> None:
    broker.write("low", "l1")
    broker.write("high", "h1")
    broker.write("low", "l2")
    broker.write("high", "h2")
    get = lambda: broker.target.get(["high", "low"])  # noqa: E731
    assert [run(broker, get) for _ in range(4)] == [("high", "h1"), ("high", "h2"), ("low", "l1"), ("low", "l2")]
    assert run(broker, lambda: broker.target.get(["high", "low"], timeout=0)) is None


def test_broker_get_takes_from_a_lower_priority_queue_when_only_it_has_one(broker: Facade) -> None:
    broker.write("low", "only")
    assert run(broker, lambda: broker.target.get(["high", "low"], timeout=0)) == ("low", "only")
    assert pending(broker, "low") == [] and pending(broker, "high") == []


def test_broker_get_waits_on_several_queues_for_whichever_is_written(broker: Facade) -> None:
    waiting = start(broker, lambda: broker.target.get(["a", "b", "c"]))
    assert still_waiting(broker, waiting)
    broker.write("b", "to b")
    assert outcome(waiting) == ("b", "to b")
    # Another waiter; this time the write goes to the last queue named.
    waiting = start(broker, lambda: broker.target.get(["a", "b", "c"], timeout=60))
    assert still_waiting(broker, waiting)
    broker.write("c", "to c")
    assert outcome(waiting) == ("c", "to c")
    for name in ("a", "b", "c"):
        assert pending(broker, name) == []


def test_broker_get_with_a_timeout_on_empty_queues_returns_none(broker: Facade) -> None:
    assert run(broker, lambda: broker.target.get(["a", "b"], timeout=0.05)) is None
    assert run(broker, lambda: broker.target.get(["a"], timeout=0)) is None


@pytest.mark.parametrize(
    ("queues", "error"),
    [
        ([], InvalidInputError),
        ((), InvalidInputError),
        ("high", InvalidTypeError),  # a bare string is not a list of queue names
        (None, InvalidTypeError),
        (["ok", "bad name"], QueueNameError),
        (["ok", ""], QueueNameError),
        (["-leading-hyphen"], QueueNameError),
        (["ok", 3], QueueNameTypeError),
    ],
    ids=["empty-list", "empty-tuple", "bare-string", "none", "space", "empty-name", "hyphen", "int-name"],
)
def test_broker_get_refuses_bad_queue_lists_before_waiting(broker: Facade, queues: Any, error: type[Exception]) -> None:
    broker.write("ok", "kept")
    exc = error_of(broker, lambda: broker.target.get(queues))
    assert isinstance(exc, error), repr(exc)
    assert pending(broker, "ok") == ["kept"]


def test_invalid_queue_names_are_refused(broker: Facade) -> None:
    for name in ("bad name", "", ".dot", "-hyphen"):
        with pytest.raises(QueueNameError):
            broker.queue(name)


# ---------------------------------------------------------------------- watch
def test_watch_consumes_in_order_and_claims_each_message(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b"])
    watching = watch(q, 4)
    assert still_waiting(broker, watching), "the watch ended before it saw four messages"
    q.write("c")
    q.write("d")
    assert outcome(watching) == ["a", "b", "c", "d"]
    assert pending(broker) == []
    assert claimed_flags(db_path) == [1, 1, 1, 1]


def test_leaving_a_consuming_watch_claims_nothing_more(broker: Facade) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b"])
    assert outcome(watch(q, 1)) == ["a"]
    q.write("c")
    time.sleep(SETTLE)  # time for a watch that did not stop to take "b" or "c"
    # The loop was left after "a": "b" and the later "c" are still there, nobody claims them.
    assert pending(broker) == ["b", "c"]
    broker.close()


def test_watch_peek_starts_at_the_end_of_the_queue(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    q.write_many(["old1", "old2"])
    watching = watch(q, 2, peek=True)
    assert still_waiting(broker, watching)
    q.write("new1")
    q.write("new2")
    assert outcome(watching) == ["new1", "new2"]
    # Peeking claims nothing.
    assert pending(broker) == ["old1", "old2", "new1", "new2"]
    assert claimed_flags(db_path) == [0, 0, 0, 0]


@pytest.mark.parametrize("as_str", [False, True], ids=["int-id", "str-id"])
def test_watch_peek_after_an_id_yields_later_messages_old_and_new(broker: Facade, as_str: bool) -> None:
    q = broker.queue("q")
    ids = q.write_many(["m0", "m1", "m2"])
    after = str(ids[0]) if as_str else ids[0]
    watching = watch(q, 4, peek=True, after=after)
    assert still_waiting(broker, watching), "the watch ended before it saw four messages"
    q.write("m3")
    q.write("m4")
    # It advances: each message once, in order, none before ``after``.
    assert outcome(watching) == ["m1", "m2", "m3", "m4"]
    assert pending(broker) == ["m0", "m1", "m2", "m3", "m4"]


def test_watch_peek_skips_messages_claimed_meanwhile(broker: Facade) -> None:
    q = broker.queue("q")
    ids = q.write_many(["m0", "m1", "m2"])
    assert q.claim(message_id=ids[1]) == Message("m1", ids[1])
    assert outcome(watch(q, 1, peek=True, after=ids[0])) == ["m2"]


def test_two_peeking_watches_each_see_every_message(broker: Facade) -> None:
    q = broker.queue("q")
    first = watch(q, 3, peek=True)
    second = watch(q, 3, peek=True)
    assert still_waiting(broker, first, second)
    q.write_many(["a", "b", "c"])
    assert outcome(first) == outcome(second) == ["a", "b", "c"]
    assert pending(broker) == ["a", "b", "c"]


def test_watch_with_a_bad_after_is_refused(broker: Facade) -> None:
    q = broker.queue("q")
    q.write("a")
    for after, error in (("not-an-id", InvalidInputError), (-1, InvalidInputError), (1.5, InvalidTypeError)):
        try:
            got = outcome(watch(q, 1, peek=True, after=after))
        except InvalidInputError as exc:
            assert isinstance(exc, error), repr(exc)
        else:
            raise AssertionError(f"after={after!r}: the watch yielded {got!r}")


def test_watch_move_to_forwards_each_message_before_yielding_it(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    q.write_many(["a", "b"])
    watching = watch(q, 4, move_to="dest")
    assert still_waiting(broker, watching), "the watch ended before it saw four messages"
    q.write("c")
    q.write("d")
    assert outcome(watching) == ["a", "b", "c", "d"]
    # Moved, not claimed: pending in the destination, with their IDs.
    assert pending(broker, "q") == []
    assert pending(broker, "dest") == ["a", "b", "c", "d"]
    assert claimed_flags(db_path, "dest") == [0, 0, 0, 0]


def test_watch_messages_yields_ids_and_follows_aliases(broker: Facade) -> None:
    broker.add_alias("w", "q")
    q = broker.queue("q")
    ids = q.write_many(["m0", "m1"])
    watching = watch(broker.queue("@w"), 2, method="watch_messages", peek=True, after=ids[0])
    assert still_waiting(broker, watching)
    later = q.write("m2")
    assert outcome(watching) == [Message("m1", ids[1]), Message("m2", later)]


def test_watch_move_to_through_aliases_and_its_refusals(broker: Facade) -> None:
    broker.add_alias("w", "q")
    broker.add_alias("d", "dest")
    broker.queue("q").write("a")
    assert outcome(watch(broker.queue("@w"), 1, move_to="@d")) == ["a"]
    assert pending(broker, "dest") == ["a"]
    q = broker.queue("q")
    for kwargs, error in (
        ({"peek": True, "move_to": "x"}, InvalidInputError),
        ({"move_to": "bad name"}, QueueNameError),
    ):
        try:
            got = outcome(watch(q, 1, **kwargs))
        except InvalidInputError as exc:
            assert isinstance(exc, error), repr(exc)
        else:
            raise AssertionError(f"{kwargs}: the watch yielded {got!r}")


# ---------------------------------------------------------------------- close
def test_close_wakes_every_waiter(broker: Facade) -> None:
    q = broker.queue("q")
    gets = [start(broker, lambda: q.target.get()) for _ in range(5)]
    messages = [start(broker, lambda: q.target.get_message(timeout=60)) for _ in range(3)]
    several = [start(broker, lambda: broker.target.get(["q", "r"])) for _ in range(3)]
    consuming = [watch(q, 100) for _ in range(3)]
    peeking = [watch(q, 100, peek=True) for _ in range(3)]
    waiters = [*gets, *messages, *several, *consuming, *peeking]
    assert still_waiting(broker, *waiters)
    broker.close()
    for future in [*gets, *messages, *several]:
        with pytest.raises(BrokerClosedError):
            outcome(future)
    # Every watch loop ended, having seen nothing.
    for future in [*consuming, *peeking]:
        assert outcome(future) == []
    # A get started after the close does not wait either.
    with pytest.raises(BrokerClosedError):
        run(broker, lambda: q.target.get())


def test_close_after_messages_were_delivered_to_waiters(broker: Facade, db_path: Path) -> None:
    q = broker.queue("q")
    served = [start(broker, lambda: q.target.get()) for _ in range(3)]
    assert still_waiting(broker, *served)
    q.write_many(["a", "b", "c"])
    assert sorted(outcome(w) for w in served) == ["a", "b", "c"]
    broker.close()
    assert claimed_flags(db_path) == [1, 1, 1]
