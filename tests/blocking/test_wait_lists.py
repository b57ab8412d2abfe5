"""The waiting consumers' bookkeeping (adapters/_waiting.py), stepped by hand:
who is served next, what a dispatch must claim, what a leaving getter must give on."""

from __future__ import annotations

import pytest

from sansio_broker import Message
from sansio_broker.adapters._group import Member, State
from sansio_broker.adapters._waiting import CLOSED, HINT, Listener, Waits


class Waiter:
    """A waiter that records what it was woken with (or refuses, once it left)."""

    def __init__(self, left: bool = False) -> None:
        self.values: list[object] = []
        self.left = left

    def wake(self, value: object) -> bool:
        if self.left:
            return False
        self.values.append(value)
        return True


def getter(waits: Waits, queue: str = "q") -> tuple[Member[None], Waiter]:
    waiter = Waiter()
    member: Member[None] = Member(None, waiter)
    waits.join(queue, member)
    return member, waiter


def test_the_first_getter_starts_a_dispatch_and_later_ones_ask_it_to_look_again() -> None:
    waits = Waits()
    first, second = Member[None](None, Waiter()), Member[None](None, Waiter())
    assert waits.join("q", first) is True
    assert waits.join("q", second) is False  # one runs: it will look once more
    assert waits.wait_list("q").wanted == 2
    assert waits.dispatch_ended("q", claimed=0, wanted=1) is True  # asked again meanwhile
    assert waits.dispatch_ended("q", claimed=0, wanted=2) is False  # nothing more, nobody asked
    assert waits.hinted(["q"]) == ["q"]  # the next hint starts a new one


def test_messages_go_to_getters_in_the_order_they_came() -> None:
    waits = Waits()
    getters = [getter(waits) for _ in range(3)]
    for number in (1, 2):
        assert waits.hand_over("q", Message(f"m{number}", number))
    assert [w.values for _, w in getters] == [[Message("m1", 1)], [Message("m2", 2)], []]
    assert [m.state for m, _ in getters] == [State.DONE, State.DONE, State.WAITING]
    assert waits.waiting == 1


def test_a_getter_that_left_meanwhile_is_skipped_and_its_message_goes_to_the_next() -> None:
    waits = Waits()
    gone, gone_waiter = getter(waits)
    _, next_waiter = getter(waits)
    gone_waiter.left = True  # cancelled, not yet out of the list
    assert waits.hand_over("q", Message("m", 1))
    assert gone.state is State.GONE
    assert next_waiter.values == [Message("m", 1)]
    assert not waits.hand_over("q", Message("n", 2))  # nobody left: the caller gives it back


def test_leaving_before_a_message_came_withdraws_and_after_says_done() -> None:
    waits = Waits()
    early, _ = getter(waits)
    late, _ = getter(waits)
    assert waits.leave("q", early) is State.WITHDRAWN
    waits.hand_over("q", Message("m", 1))
    assert waits.leave("q", late) is State.DONE  # handed over: the caller must give it on
    assert late.answer == Message("m", 1)
    assert waits.waiting == 0 and waits.nobody_waits_on("q")


def test_a_full_claim_runs_the_dispatch_again_while_getters_wait() -> None:
    waits = Waits()
    getter(waits)
    getter(waits)
    getter(waits)
    waits.dispatch_ended("q", claimed=0, wanted=1)  # the joins' own look: nothing yet, asked again
    waits.hand_over("q", Message("m", 1))
    assert waits.dispatch_ended("q", claimed=1, wanted=1) is True  # all it asked for: maybe more
    assert waits.dispatch_ended("q", claimed=0, wanted=2) is False  # less: the queue ran dry
    waits.hand_over("q", Message("n", 2))
    waits.hand_over("q", Message("o", 3))
    assert waits.dispatch_ended("q", claimed=2, wanted=2) is False  # nobody is left to claim for


def test_a_failed_dispatch_fails_the_getters_it_claimed_for_and_the_later_ones_get_a_claim() -> None:
    waits = Waits()
    claimed_for = [getter(waits) for _ in range(2)]
    later, later_waiter = getter(waits)
    error = RuntimeError("disk I/O error")
    waits.fail("q", error, 2)
    assert [w.values for _, w in claimed_for] == [[error], [error]]
    assert later.state is State.WAITING and later_waiter.values == []
    assert waits.dispatch_ended("q", claimed=0, wanted=2) is True


def test_listeners_hear_hints_on_their_queues_only_and_keep_listening() -> None:
    waits = Waits()
    on_a, on_any = Listener(frozenset({"a"})), Listener(None)
    waits.listen(on_a)
    waits.listen(on_any)
    sleeping = Waiter()
    on_a.waiter = sleeping
    waits.hinted(["b"])
    assert (on_a.hinted, on_any.hinted, sleeping.values) == (False, True, [])
    waits.hinted(["a", "c"])
    assert on_a.hinted and sleeping.values == [HINT]
    on_a.hinted = on_any.hinted = False
    waits.hinted(None)  # any queue
    assert on_a.hinted and on_any.hinted
    waits.stop_listening(on_a)
    waits.stop_listening(on_a)  # twice is harmless
    assert waits.listeners == [on_any]


def test_a_hint_for_queues_nobody_waits_on_starts_nothing() -> None:
    waits = Waits()
    getter(waits, "a")
    waits.dispatch_ended("a", claimed=0, wanted=1)
    assert waits.hinted(["b"]) == []
    assert waits.hinted(None) == ["a"]


def test_close_wakes_every_waiter_and_ends_all_waiting() -> None:
    waits = Waits()
    members = [getter(waits, queue) for queue in ("a", "a", "b")]
    listener = Listener(None)
    waits.listen(listener)
    listener.waiter = sleeping = Waiter()
    woken = waits.close()
    assert len(woken) == 4 and sleeping in woken
    assert all(m.state is State.WITHDRAWN for m, _ in members)
    assert waits.closed and waits.waiting == 0
    assert waits.hinted(None) == []  # nothing starts after close
    assert waits.leave("a", members[0][0]) is State.WITHDRAWN
    assert CLOSED is not HINT


@pytest.mark.parametrize("count", [1, 600])
def test_a_dispatch_claims_one_message_per_getter_up_to_a_group(count: int) -> None:
    waits = Waits()
    for _ in range(count):
        getter(waits)
    assert waits.wait_list("q").wanted == min(count, 512)


def test_idle_lists_are_dropped_so_endless_queue_names_cannot_grow_them() -> None:
    waits = Waits()
    for number in range(100):
        member, _ = getter(waits, f"q{number}")
        waits.dispatch_ended(f"q{number}", claimed=0, wanted=1)
        waits.leave(f"q{number}", member)
    assert waits.hinted(None) == []
    assert waits._lists == {}
